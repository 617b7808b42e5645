//! The receiver of what the platform pushes (notifications.md): call events, CDRs, number status
//! and SMS, POSTed to the URLs set per app in the platform's console, on one HTTP listener
//! (`[callbacks] listen`).
//!
//! Any path takes any kind, told apart by content (§8.1); `/callin`, `/events`, `/cdr`,
//! `/numstatus` and `/sms` take only their own kind. A push is stored through the call log
//! ([`CallLog`]) and answered 200 only once that is durable; when the store cannot take it the
//! answer is 503, so the platform retries (§6). An X-mode Block `callin` is answered at once with
//! where to connect the caller, from the bindings in memory.
//!
//! - `receive`: the path of every push — peer, method, body, kind, app, signature — to its kind's
//!   handler.
//! - `apps`: which configured app a push is for, and whether its signature is good enough.
//! - `signature`: the `X-AKSK` / `X-WSSE` UsernameToken.
//! - `calls`: call events, and the answer to an X-mode callin; `records`: CDRs, number status
//!   and SMS.
//! - `reply`: answers, outcomes (counted in `xpool_pushes_total`) and rate-limited warnings.
//! - `forward`: cluster mode, a push about an app another replica leads sent on to it.

mod apps;
mod calls;
mod forward;
mod receive;
mod records;
mod reply;
mod signature;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calls::CallLog;
use crate::config::{CallbacksConfig, Config};
use crate::lifecycle::Pool;
use crate::metrics::Metrics;

use apps::PushApps;
pub use forward::{FORWARDED_BY, Forwarding, PushRoute, PushRouter};
use reply::Warnings;

/// The receiver's state, shared by every request.
#[derive(Debug)]
pub struct Receiver {
    settings: CallbacksConfig,
    apps: PushApps,
    pool: Arc<Pool>,
    calls: Arc<CallLog>,
    metrics: Arc<Metrics>,
    /// The daemon's tasks: a callin's event is stored on one after the answer went out, and the
    /// daemon's stop waits for it (bounded) before closing the store.
    tasks: TaskTracker,
    warnings: Warnings,
    /// Cluster mode: pushes about apps another replica leads go there (`forward`).
    forwarding: Option<Forwarding>,
}

impl Receiver {
    /// A receiver for the apps of `config`, storing through `calls`.
    pub fn new(
        config: &Config,
        pool: Arc<Pool>,
        calls: Arc<CallLog>,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
    ) -> Receiver {
        Receiver {
            settings: config.callbacks.clone(),
            apps: PushApps::new(&config.apps),
            pool,
            calls,
            metrics,
            tasks,
            warnings: Warnings::default(),
            forwarding: None,
        }
    }

    /// Cluster mode: pushes about apps another replica leads are forwarded to it.
    pub fn forwarding(mut self, forwarding: Forwarding) -> Receiver {
        self.forwarding = Some(forwarding);
        self
    }
}

/// Serves `receiver` on `listener` until `stop`; then refuses new connections and waits for
/// the pushes in flight.
pub async fn serve(
    receiver: Arc<Receiver>,
    listener: TcpListener,
    tls: Option<(Arc<crate::tls::ServerTls>, std::time::Duration)>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let app = Router::new()
        .fallback(receive::receive)
        .with_state(receiver)
        .into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some((tls, handshake_timeout)) => {
            // `tap_io` only so that the peer's address reaches the handlers.
            let listener = tls::TlsListener::new(listener, tls, handshake_timeout)?.tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
        None => {
            // Answers (a callin's above all) go out at once, not after the peer's delayed ACK
            // of the previous one (Nagle).
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    }
}
