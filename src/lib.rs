//! xpool: a daemon that owns a pool of Huawei Cloud PrivateNumber numbers and hands out masked
//! numbers over gRPC.
//!
//! `platform` is the wire contract (crate `xpool-platform`, shared with the simulator in
//! `xpool-sim`), `upstream` the client that calls the platform, `store` the sled store, `alloc`
//! the pure allocation rules, `lifecycle` the binding lifecycle (two-phase bind, release, expiry,
//! reconciliation), `calls` the call log, `jobs` background work, `grpc` the API, `pushes` the
//! receiver of the platform's pushes, `metrics` the Prometheus metrics, `mask` party numbers for
//! log lines, and `daemon` start-up and shutdown. [`run`] starts it all. The simulator and the
//! load generator are not part of this library: the binary (`src/main.rs`, `src/cli/`) composes
//! them.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod auth;
pub mod calls;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod grpc;
pub mod jobs;
pub mod lifecycle;
pub mod mask;
pub mod metrics;
pub mod pushes;
pub mod store;
pub mod tls;
pub mod upstream;

/// The platform's wire contract, shared with the simulator (crate `xpool-platform`).
pub use xpool_platform as platform;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
pub use crate::daemon::Daemon;
use crate::lifecycle::{Clock, SystemClock};

/// Builds the daemon, recovers, and serves on `listener` until `shutdown` completes: health goes
/// NOT_SERVING, in-flight requests get the configured grace period, background jobs stop, and
/// the store is closed. The binary binds its port only after recovery instead (see
/// [`Daemon`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with an injected wall clock (tests that move time).
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let daemon = Daemon::build(config, clock).await?;
    daemon.recover().await;
    daemon.run(listener, shutdown).await
}
