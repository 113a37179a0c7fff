//! Demo participant services (billing, device, payment, withdrawal) built on the `saga-participant` SDK.
//! Each keeps real rows in its own PostgreSQL schema so tests can check business invariants: no money
//! created or lost, no device without a paid order, no balance left frozen.
//!
//! # Layout
//! - [`Service`] (`service`): which demo service, its default address, its actions and migrations.
//! - `billing`, `device`, `payment`, `withdrawal`: one [`saga_participant::Router`] each, an `async fn`
//!   per action; `device`'s container runtime, `payment`'s provider and `withdrawal`'s bank are
//!   simulated in submodules.
//! - `faults`: makes a chosen saga's step refuse, fail, hang, wait or lose its answer, driven by the saga
//!   payload.
//! - [`Settings`], [`DemoServices`] (`startup`): connect, migrate, bind, serve; what the
//!   `demo-participants` binary and in-process tests both use.
//!
//! # Usage
//! ```no_run
//! use participants::{DemoServices, Service, Settings};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let services = DemoServices::build(Settings::ephemeral("postgres://postgres@127.0.0.1:5432/demo")).await?;
//! let billing = services.local_addr(Service::Billing);
//! services.run_until_stopped(CancellationToken::new()).await?;
//! # Ok(())
//! # }
//! ```

mod billing;
mod device;
mod faults;
mod payment;
mod service;
mod startup;
mod withdrawal;

pub use service::Service;
pub use startup::{DEFAULT_DATABASE_URL, DemoServices, RunError, Settings, StartupError, migrate};
