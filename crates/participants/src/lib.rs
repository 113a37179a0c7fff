//! Demo participant services (billing, device, payment) built on the `saga-participant` SDK. Each keeps
//! real rows in its own tables so tests can check business invariants: no money created or lost, no
//! device without a paid order.
//!
//! # Layout
//! - [`Service`] (`service`): which demo service, its default address, its barrier name.
//! - `billing`, `device`, `payment`: one [`saga_participant::StepHandler`] each, dispatching on the action.
//! - `faults`: makes a chosen saga's step refuse, fail or hang, driven by the saga payload.
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

pub use service::Service;
pub use startup::{DEFAULT_DATABASE_URL, DemoServices, RunError, Settings, StartupError, migrate};
