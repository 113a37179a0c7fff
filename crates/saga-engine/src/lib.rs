//! sagad's execution engine: accepts new sagas, drives each one step by step against its participant
//! services, and writes every outcome to the saga log.
//!
//! # Layout
//! - [`Engine`]: the entry point the gRPC layer calls (`start`, `status`, `list`, `history`, `stats`, `watch`,
//!   the operator actions `abort`, `retry` and `resolve`, and `drain` on shutdown).
//! - `executor`: the per-saga loop — ask the core what to do, call the participant, commit the
//!   transition, repeat.
//! - `committer`: group commit — one task writes every executor's transitions and every start, in
//!   batches.
//! - [`Participants`]: gRPC clients to participant services and the mapping of their answers onto
//!   refusal / transient errors.
//! - `recovery`: the recovery loop (claims due and orphaned sagas), the lease heartbeat, the watch
//!   refresher, retention.
//! - [`SagaWatch`] (`watch`): hands every committed saga to the `WatchSaga` streams watching it.
//! - [`Clock`]: now on the database clock; `lease`: an executor's local lease deadline.
//! - [`Metrics`]: the Prometheus metrics the engine records, for sagad to serve.

mod clock;
mod committer;
mod engine;
mod error;
mod executor;
mod lease;
mod metrics;
mod participants;
mod recovery;
mod watch;

pub use clock::Clock;
pub use engine::{Engine, EngineSettings, Resolve, StartRequest};
pub use error::EngineError;
pub use metrics::Metrics;
pub use participants::{InvalidEndpoint, Participants};
pub use watch::SagaWatch;
