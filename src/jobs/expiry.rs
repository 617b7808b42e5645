//! The expiry scheduler: sleeps until the earliest deadline (one seek in the store's expiry
//! index), wakes early when a sooner deadline is written, and works in bounded rounds so a burst
//! of deadlines cannot starve binds.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lifecycle::{Clock, ExpiryPolicy, Pool};

/// Longest sleep between checks, so a moved wall clock is noticed soon.
const MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Expiry {
    pub pool: Arc<Pool>,
    pub clock: Arc<dyn Clock>,
    pub policy: ExpiryPolicy,
}

impl Expiry {
    /// Expires everything already overdue (start-up: bindings whose deadline passed while the
    /// daemon was down go first), for at most `budget`. Returns how many expired.
    pub async fn catch_up(&self, budget: Duration) -> usize {
        let until = tokio::time::Instant::now() + budget;
        let mut total = 0;
        while tokio::time::Instant::now() < until {
            match self
                .pool
                .expire_round(&self.policy, self.clock.now_ms())
                .await
            {
                Ok(round) => {
                    total += round.expired;
                    if !round.more {
                        break;
                    }
                }
                Err(e) => {
                    if !e.is_store_unavailable() {
                        tracing::warn!(error = %e, "expiry round failed");
                    }
                    break;
                }
            }
        }
        total
    }

    pub async fn run(self, cancel: CancellationToken) {
        let deadlines = Arc::clone(self.pool.deadlines());
        loop {
            let sleep = match self
                .pool
                .expire_round(&self.policy, self.clock.now_ms())
                .await
            {
                Ok(round) if round.more => Duration::ZERO,
                Ok(round) => {
                    if round.expired > 0 {
                        tracing::info!(expired = round.expired, "bindings expired");
                    }
                    round.next_due_ms.map_or(MAX_SLEEP, |t| {
                        Duration::from_millis((t - self.clock.now_ms()).max(0) as u64)
                            .min(MAX_SLEEP)
                    })
                }
                Err(e) => {
                    if !e.is_store_unavailable() {
                        tracing::warn!(error = %e, "expiry round failed; retrying");
                    }
                    MAX_SLEEP
                }
            };
            if sleep.is_zero() {
                // More is due: let binds in between rounds.
                tokio::task::yield_now().await;
                if cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = deadlines.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }
}
