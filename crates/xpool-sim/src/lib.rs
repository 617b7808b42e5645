//! A simulator of the Huawei Cloud PrivateNumber platform (binding-api.md, notifications.md), so
//! xpool and its tests run without a Huawei account.
//!
//! It authenticates like the platform (AKSK and WSSE UsernameTokens, clock skew, nonce replay,
//! an IP blacklist after repeated failures), keeps each app's bindings in memory with the platform's limits and
//! expiry, and answers with the platform's result codes and JSON shapes from
//! [`xpool_platform::wire`]. Unauthenticated controls under `/sim/` let tests inspect bindings,
//! move the binding clock, inject faults, read per-app statistics and change numbers, and play
//! what the platform pushes to the customer's server: calls through the bindings (or, in X mode,
//! routed by the customer's answer) with their events and CDRs, number status and SMS, signed,
//! retried and batched as the platform does ([`xpool_platform::push`]).

mod auth;
mod ax;
mod axb;
mod axe;
mod axyb;
mod call;
mod config;
mod controls;
mod faults;
mod guard;
mod limits;
mod nonces;
mod numstatus;
mod params;
mod push;
mod reply;
mod server;
mod sms;
mod state;
mod terms;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{
    AuthSettings, PushSettings, PushSigning, SimAppConfig, SimConfig, SimConfigError, SimNumber,
};

/// Serves the simulator on `listener` until `shutdown` completes.
///
/// The configuration is validated first (an invalid one is an `InvalidInput` error). When
/// `shutdown` completes the server stops accepting, releases requests held by the
/// lost-response fault, waits for in-flight requests to finish and stops the push job (pushes
/// still due are dropped, as the simulator keeps nothing).
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
    // The push job: retries and CDR batches as they fall due; ends with `cancel`.
    let pusher = tokio::spawn(push::run(Arc::clone(&sim), cancel.clone()));
    let service = server::router(sim).into_make_service_with_connect_info::<SocketAddr>();
    let stop = cancel.clone();
    // Answers go out at once, not after the peer's delayed ACK of the previous one (Nagle).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.cancel();
        })
        .await;
    cancel.cancel();
    if let Err(e) = pusher.await {
        tracing::error!(error = %e, "the simulator's push job failed");
    }
    result
}
