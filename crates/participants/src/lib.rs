//! Demo participant services built on the `saga-participant` SDK: billing, device, payment and withdrawal
//! for the first four flows; gateway (payment_create); app and notification (app_upload); customer,
//! inventory, sales and notification (order_creation). Each keeps real rows in its own PostgreSQL schema
//! so tests can check business invariants: no money created or lost, no device without a paid order, no
//! balance left frozen, no stored package without a published app, no stock held for a cancelled order.
//!
//! # Layout
//! - [`Service`] (`service`): which demo service, its default address, its actions and migrations.
//! - `billing`, `device`, `payment`, `withdrawal`, `gateway`, `app`, `notification`, `customer`,
//!   `inventory`, `sales`: one [`saga_participant::Router`] each, an `async fn` per action;
//!   `device`'s container runtime, `payment`'s provider, `withdrawal`'s bank and `gateway`'s payment
//!   channel are simulated in submodules, and `app` keeps its packages as files (`app::storage`).
//! - `input`: payload checks the services share.
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
//! let storage = std::env::temp_dir().join("demo-storage");
//! let settings = Settings::ephemeral("postgres://postgres@127.0.0.1:5432/demo", storage);
//! let services = DemoServices::build(settings).await?;
//! let billing = services.local_addr(Service::Billing);
//! services.run_until_stopped(CancellationToken::new()).await?;
//! # Ok(())
//! # }
//! ```

mod app;
mod billing;
mod customer;
mod device;
mod faults;
mod gateway;
mod input;
mod inventory;
mod notification;
mod payment;
mod sales;
mod service;
mod startup;
mod withdrawal;

pub use app::StorageError;
pub use service::Service;
pub use startup::{DEFAULT_DATABASE_URL, DemoServices, RunError, Settings, StartupError, migrate};
