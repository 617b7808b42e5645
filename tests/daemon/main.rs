//! The daemon (`xpool::run`) against the simulator, on 127.0.0.1:0: each mode through the gRPC
//! API, allocation rules, idempotency, bad input, concurrency, faults, crashes and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

mod chaos;
mod concurrency;
mod connections;
mod crash;
mod expiry;
mod faults;
mod hung;
mod input;
mod lifecycle_signals;
mod modes;
mod reconcile;
mod reconcile_runs;
mod storage;
