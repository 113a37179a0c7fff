//! The sagad service: typed configuration, the `saga.v1.SagaCoordinator` gRPC API with health and
//! reflection, and graceful shutdown. Saga logic lives in `saga-engine`; this crate wires it to the world.
//!
//! # Layout
//! - [`settings`]: defaults → TOML file → `SAGAD_*` environment.
//! - [`definitions`]: loading and validating `definitions/*.yaml`.
//! - `api`: the coordinator service; input validation at the edge.
//! - `status`: the one table that maps errors to gRPC statuses.
//! - [`app`]: `Application::build(settings)` binds, `run_until_stopped(token)` serves (port 0 in tests).
//! - [`telemetry`]: tracing subscriber set-up.

mod api;
pub mod app;
pub mod definitions;
mod page_token;
pub mod settings;
mod status;
pub mod telemetry;

pub use app::{Application, StartupError};
pub use settings::Settings;
