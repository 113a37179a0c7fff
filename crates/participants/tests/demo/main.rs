//! The demo participants against real PostgreSQL, over gRPC, each test on a fresh database.

mod billing;
mod binary;
mod device;
mod faults;
mod payment;
mod purchase;
mod support;
