//! A simulator of the Huawei Cloud PrivateNumber binding API (binding-api.md), so xpool and its
//! tests run without a Huawei account.
//!
//! It authenticates like the platform (AKSK and WSSE UsernameTokens, clock skew, nonce replay,
//! an IP blacklist after repeated failures), keeps each app's bindings in memory with the platform's limits and
//! expiry, and answers with the platform's result codes and JSON shapes from
//! [`xpool_platform::wire`]. Unauthenticated controls under `/sim/` let tests inspect bindings,
//! move the binding clock, inject faults, read per-app statistics and change numbers.

mod auth;
mod ax;
mod axb;
mod axe;
mod axyb;
mod config;
mod controls;
mod faults;
mod guard;
mod limits;
mod nonces;
mod params;
mod reply;
mod server;
mod state;
mod terms;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{AuthSettings, SimAppConfig, SimConfig, SimConfigError, SimNumber};

/// Serves the simulator on `listener` until `shutdown` completes.
///
/// The configuration is validated first (an invalid one is an `InvalidInput` error). When
/// `shutdown` completes the server stops accepting, releases requests held by the
/// lost-response fault and waits for in-flight requests to finish.
pub async fn serve(
    config: SimConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let cancel = CancellationToken::new();
    let sim = Arc::new(state::Sim::new(config, cancel.clone()));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, apps = sim.apps.len(), "platform simulator listening");
    }
    let service = server::router(sim).into_make_service_with_connect_info::<SocketAddr>();
    let stop = cancel.clone();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.cancel();
        })
        .await;
    cancel.cancel();
    result
}
