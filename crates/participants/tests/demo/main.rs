//! The demo participants against real PostgreSQL, over gRPC, each test on a fresh database.

mod app;
mod bad_requests;
mod billing;
mod binary;
mod definitions;
mod device;
mod faults;
mod gateway;
mod migrations;
mod order;
mod payment;
mod purchase;
mod support;
mod withdrawal;
