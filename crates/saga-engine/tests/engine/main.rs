//! The engine against a scripted participant over real gRPC and a real PostgreSQL saga log.
//!
//! # Layout
//! - `harness`: the scripted participant and the engines under test.
//! - `executor`: retries, refusals, deadlines, parking, shutdown, lease takeovers.
//! - `edges`: crashes, clocks, leases, overload and bad data at the edges (issue 9).

mod edges;
mod executor;
mod harness;
