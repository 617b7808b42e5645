//! A failed disk is reported, not hidden: while the store refuses writes, health says
//! NOT_SERVING (so load balancers and Kubernetes stop sending calls), recovery is retried on a
//! back-off, and once the store takes writes again health says SERVING — no restart needed.
//! One log line per change of state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use super::health::Health as GrpcHealth;
use crate::metrics::{Metrics, ReasonLabel};
use crate::store::{Health, Store};

/// The first retry of a failed store, doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Follows the store's health until `stop`.
pub(super) async fn watch_store(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    health: GrpcHealth,
    stop: CancellationToken,
) {
    let mut changes = store.health();
    loop {
        let failed = loop {
            let now = changes.borrow_and_update().clone();
            if !now.is_writable() {
                break now;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        };
        let (reason, cause) = match &failed {
            Health::Full(cause) => ("full", cause.as_str()),
            Health::Failed(cause) => ("failed", cause.as_str()),
            Health::Writable => ("failed", ""),
        };
        metrics.store_writable.set(0);
        metrics
            .store_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::error!(
            cause,
            "the store failed a write: refusing writes, health NOT_SERVING; recovering"
        );
        health.set(ServingStatus::NotServing).await;
        let since = Instant::now();
        let mut delay = RETRY_FIRST;
        let mut attempts = 0u32;
        let kept = loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            attempts += 1;
            match store.recover().await {
                Ok(kept) => break kept,
                Err(e) => {
                    tracing::debug!(error = %e, attempts, "the store is still failing");
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        };
        tracing::info!(
            after = ?since.elapsed(),
            attempts,
            kept_writes = kept,
            "the store takes writes again: health SERVING"
        );
        metrics.store_writable.set(1);
        metrics.store_recoveries.inc();
        health.set(ServingStatus::Serving).await;
    }
}
