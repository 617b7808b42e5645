//! Scheduled reconciliation: every app, every interval, through the pool's [`Reconciler`] (which
//! also serves on-demand runs, so the two never overlap).

use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::Reconciler;

impl Reconciler {
    /// Reconciles every app every `every` until the daemon shuts down.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let cancel = self.cancel().clone();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.run_once(None, Vec::new(), false).await {
                        tracing::warn!(error = %e, "scheduled reconciliation failed");
                    }
                }
            }
        }
    }
}
