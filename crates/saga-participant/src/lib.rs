//! SDK for saga participant services: implement the business work of each action, get gRPC wiring and
//! exactly-once effects for free.
//!
//! The coordinator delivers every step at least once (retries, crashes, replicas) and may send a
//! compensation before, during or instead of the forward step. [`ParticipantService`] runs each
//! [`StepHandler`] call inside an idempotency barrier kept in the participant's own PostgreSQL database,
//! in the same transaction as the business work, so repeats return the first answer and a compensation
//! that overtook its step fences that step off.
//!
//! # Layout
//! - [`Router`] (`router`): one `async fn` per action and direction; what a participant author writes.
//! - [`StepHandler`], [`StepOutput`] (`handler`): the trait a router implements, for
//!   handlers that dispatch some other way.
//! - [`StepCall`] (`call`): one decoded step request, with typed payload accessors that refuse bad input.
//! - [`StepError`] and [`Refusal`] (`error`): refusal or transient, and the gRPC status each becomes.
//! - [`migrate`] (`barrier`): the `saga_barrier` table and the claim/replay rules.
//! - [`ParticipantService`] (`service`): the `saga.v1.SagaParticipant` gRPC service.
//! - [`StepConnections`] (`connections`): the connections its step transactions run on.
//! - [`serve`] (`server`): serves it with `grpc.health.v1` on a listener the caller bound;
//!   [`serve_with_tls`] with [`TlsFiles`] serves TLS, optionally requiring client certificates (mTLS).
//!
//! # Usage
//! A complete participant is `examples/inventory.rs` (also in the README): an `async fn` per action,
//! a [`Router`] naming them, [`migrate`], then [`serve`] a [`ParticipantService`].
//!
//! ```no_run
//! use saga_participant::{ParticipantService, Router, StepCall, StepError, StepOutput};
//! use sqlx::{PgConnection, PgPool};
//! use tokio::net::TcpListener;
//! use tokio_util::sync::CancellationToken;
//!
//! async fn reserve(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
//!     sqlx::query("UPDATE stock SET reserved = reserved + 1 WHERE sku = $1")
//!         .bind(call.str("sku")?)
//!         .execute(&mut *tx)
//!         .await?;
//!     Ok(StepOutput::new())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = PgPool::connect("postgres://postgres@127.0.0.1:5432/stock").await?;
//! saga_participant::migrate(&pool).await?;
//! let listener = TcpListener::bind("0.0.0.0:50070").await?;
//! let service = ParticipantService::new("stock", pool, Router::new().execute("Reserve", reserve));
//! saga_participant::serve(listener, service, CancellationToken::new()).await?;
//! # Ok(())
//! # }
//! ```

mod barrier;
mod call;
mod connections;
mod error;
mod handler;
mod router;
mod server;
mod service;

pub use barrier::migrate;
pub use call::{IDEMPOTENCY_KEY_HEADER, StepCall, TRACEPARENT_HEADER};
pub use connections::StepConnections;
pub use error::{BoxError, Refusal, StepError, UnknownRefusal};
pub use handler::{StepHandler, StepOutput, output};
pub use router::{Action, ActionFn, ActionFuture, Router};
pub use saga_core::Direction;
pub use server::{ServeError, TlsFileError, TlsFiles, serve, serve_with_tls};
pub use service::ParticipantService;
