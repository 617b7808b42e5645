//! The admin HTTP listener (`[admin] listen`): `/metrics` for Prometheus, `/healthz` (the
//! process answers) and `/readyz` (the store takes writes and the daemon is not shutting down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Debug, Clone)]
pub(super) struct Admin {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    /// Set once shutdown has begun.
    pub draining: Arc<AtomicBool>,
}

/// Serves the admin routes on `listener` until `stop`.
pub(super) async fn serve(
    admin: Admin,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(admin);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        admin.metrics.render(),
    )
}

async fn ready(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    if admin.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !admin.store.health().borrow().is_writable() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store refuses writes\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}
