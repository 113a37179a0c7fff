//! The sagad service: typed configuration, the `saga.v1.SagaCoordinator` gRPC API with health and
//! reflection, and graceful shutdown. Saga logic lives in `saga-engine`; this crate wires it to the world.
//!
//! # Layout
//! - [`settings`]: defaults → TOML file → `SAGAD_*` environment.
//! - [`definitions`]: loading and validating `definitions/*.yaml`.
//! - `api`: the coordinator service; input validation at the edge (`text`: NUL and echo limits;
//!   `labels`: a saga's business keys; `stats`: `GetStats`' window and thresholds; `watch_quota`: open
//!   watches per principal).
//! - `auth`: principals from `auth.tokens_file`, the layer that authenticates calls and checks verbs.
//! - `limits`: the layer that bounds message size and call duration.
//! - `tls`: TLS on the API (re-read on change through `reload`) and to participants.
//! - `status`: the one table that maps errors to gRPC statuses.
//! - [`app`]: `Application::build(settings)` binds, `run_until_stopped(token)` serves (port 0 in tests).
//! - `metrics`: the Prometheus endpoint (`GET /metrics` on `metrics_addr`).

mod api;
pub mod app;
mod auth;
pub mod definitions;
mod labels;
mod limits;
mod metrics;
mod page_token;
mod reload;
pub mod settings;
mod stats;
mod status;
mod text;
mod tls;
mod watch_quota;

pub use auth::PrincipalsError;
pub use tls::TlsError;

pub use app::{Application, StartupError};
pub use settings::Settings;
