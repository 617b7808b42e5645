//! The daemon (`xpool::run`) against the simulator, on 127.0.0.1:0: each mode through the gRPC
//! API, allocation rules, idempotency, bad input, error details, concurrency, faults, crashes and
//! shutdown; the receiver of the simulator's pushes; the contract as clients see it (lint, a
//! generated Python client, the README's commands, the example clients of `examples/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

mod api;
mod auth;
mod call_options;
mod calls_api;
mod chaos;
mod cli;
mod concurrency;
mod connections;
mod contract;
mod crash;
mod errors;
mod expiry;
mod faults;
mod hung;
mod input;
mod lifecycle_signals;
mod limits;
mod logs;
mod metrics;
mod modes;
mod pushes;
mod reconcile;
mod reconcile_runs;
mod retention;
mod storage;
mod tls;
