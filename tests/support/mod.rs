//! The one test support module, shared by both test binaries (`#[path]`-included from each
//! `main.rs`): the config builder, the simulator and daemon harnesses, gRPC helpers and the
//! checks that compare the daemon with the platform.
//!
//! Every use of the simulator and of `xpool::platform` goes through the two re-exports below, so
//! moving the simulator to its own crate changes one line here.

pub use xpool::platform;
pub use xpool_sim as simulator;

mod process;
mod running;

pub mod checks;
pub mod daemon;
pub mod grpc;
pub mod setup;
pub mod sim;

pub use checks::*;
pub use daemon::Daemon;
pub use grpc::*;
pub use process::xpool_serve;
pub use setup::{App, Setup};
pub use sim::Sim;

/// Party number `i`: `+86139` and eight digits.
pub fn party(i: u32) -> String {
    format!("+86139{i:08}")
}
