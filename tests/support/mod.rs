//! The one test support module, shared by both test binaries (`#[path]`-included from each
//! `main.rs`): the config builder, the simulator and daemon harnesses, gRPC helpers, the
//! checks that compare the daemon with the platform, and the checks of error details.
//!
//! Every use of the simulator and of `xpool::platform` goes through the two re-exports below, so
//! moving the simulator to its own crate changes one line here.

pub use xpool::platform;
pub use xpool_sim as simulator;

pub mod process;
mod running;

pub mod certs;
pub mod checks;
pub mod daemon;
pub mod errors;
pub mod grpc;
pub mod setup;
pub mod sim;
pub mod watch;

pub use checks::*;
pub use daemon::Daemon;
pub use errors::*;
pub use grpc::*;
pub use process::{DaemonProcess, LogDump, listening_addr, xpool_serve};
pub use setup::{App, Setup};
pub use sim::Sim;
pub use watch::{WATCH_WAIT, Watching};

/// Party number `i`: `+86139` and eight digits.
/// A loopback port nobody listens on now, for a listener the daemon binds itself (the admin
/// listener, or a receiver the simulator must reach at the same URL across restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn party(i: u32) -> String {
    format!("+86139{i:08}")
}

/// Party A from `(first, count)` and, if `b` is given, a different party B from its range
/// (ranges small enough that Binds collide).
pub fn random_parties(
    a: (u32, u32),
    b: Option<(u32, u32)>,
    rng: &mut rand::rngs::StdRng,
) -> (String, String) {
    use rand::Rng as _;
    let pick =
        |(base, n): (u32, u32), rng: &mut rand::rngs::StdRng| party(base + rng.random_range(0..n));
    let a = pick(a, rng);
    let b = match b {
        None => String::new(),
        Some(range) => loop {
            let b = pick(range, rng);
            if b != a {
                break b;
            }
        },
    };
    (a, b)
}

/// The settings of the property tests that start servers: few cases, each of which is slow, and
/// no failure files written into the tree.
pub fn server_proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: 24,
        failure_persistence: None,
        ..Default::default()
    }
}

/// Runs one case of a property test on a runtime of its own; boxed, since the futures of a debug
/// build are large for a test thread's stack.
pub fn block_on<F: std::future::Future>(case: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Box::pin(case))
}
