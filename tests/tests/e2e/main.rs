//! Every end-to-end test in one test binary: one build and link instead of one per file, and one list
//! of scenarios (`cargo test -p e2e-tests --test e2e -- --list`). Each module is a scenario; run one
//! with `cargo test -p e2e-tests --test e2e chaos`, one test with its full name (`chaos::…`). The
//! helpers they share live in the `e2e_tests` library (`tests/src`).
//!
//! # Layout
//! - The flows, each end to end: `purchase_plan`, `payment_create`, `payment_refund`, `withdrawal`,
//!   `device_creation`, `order_creation`, `app_upload`, `cross_language` (a TypeScript participant).
//! - Observing it: `metrics` (Prometheus, promtool, alert rules), `stats` (GetStats), `traces` (OTLP,
//!   one trace per saga).
//! - Failure and recovery: `failure_semantics`, `preconditions`, `start_wait`, `edges`, `replicas`,
//!   `chaos`, `invariants` (a few hundred random sagas, then the business invariants).
//! - sagad's edge: `bad_input`, `edge_limits`, `fuzz_edge`, `security`, `grpcurl_tls`,
//!   `participant_tls`, `startup` (start-up errors, signals and the shutdown drain).
//! - Tools and files: `sagactl`, `conformance`, `definitions`, `deploy`, `readme` (README.md executed).

mod app_upload;
mod bad_input;
mod chaos;
mod conformance;
mod cross_language;
mod definitions;
mod deploy;
mod device_creation;
mod edge_limits;
mod edges;
mod failure_semantics;
mod fuzz_edge;
mod grpcurl_tls;
mod invariants;
mod metrics;
mod order_creation;
mod participant_tls;
mod payment_create;
mod payment_refund;
mod preconditions;
mod purchase_plan;
mod readme;
mod replicas;
mod sagactl;
mod security;
mod start_wait;
mod startup;
mod stats;
mod traces;
mod withdrawal;
