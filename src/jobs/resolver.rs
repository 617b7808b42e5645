//! Retries what a lost answer left open: PENDING reservations whose outcome the platform could
//! not be asked about, and RELEASING bindings whose unbind failed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lifecycle::Pool;

#[derive(Debug)]
pub struct Resolver {
    pub pool: Arc<Pool>,
    pub every: Duration,
}

impl Resolver {
    pub async fn run(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // start-up already resolved once
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let open = self.pool.recover().await;
                    if open > 0 {
                        tracing::info!(open, "bindings still unresolved; retrying later");
                    }
                }
            }
        }
    }
}
