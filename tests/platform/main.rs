//! The platform client against the simulator, on 127.0.0.1:0: every operation of every mode,
//! every platform rule of binding-api.md §4 with its documented result code, authentication,
//! the circuit breaker, the fault controls, a property test of the simulator's invariants, and
//! what the simulator pushes to a customer's server (notifications.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod common;

mod auth;
mod ax;
mod axb;
mod axe;
mod axyb;
mod faults;
mod invariants;
mod options;
mod pushes;
mod requests;
