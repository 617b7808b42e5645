//! The retention job: deletes bindings that left service and forgets their request ids once
//! their time is up (see `lifecycle::retention`), in bounded rounds, on the injected clock.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lifecycle::{Clock, Pool};

/// Time between rounds while nothing more is due. A round that finds nothing costs two index
/// seeks; what is due is deleted within about this long.
const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Retention {
    pub pool: Arc<Pool>,
    pub clock: Arc<dyn Clock>,
}

impl Retention {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let pause = match self.pool.retention_round(self.clock.now_ms()).await {
                Ok(round) => {
                    if round.deleted > 0 || round.forgotten > 0 {
                        tracing::debug!(
                            deleted = round.deleted,
                            forgotten = round.forgotten,
                            "retention: bindings deleted, request ids forgotten"
                        );
                    }
                    if round.more { Duration::ZERO } else { EVERY }
                }
                Err(e) => {
                    if !e.is_store_unavailable() {
                        tracing::warn!(error = %e, "retention round failed; retrying");
                    }
                    EVERY
                }
            };
            if pause.is_zero() {
                // A backlog: let other work in between rounds.
                tokio::task::yield_now().await;
                if cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Time between the call log's retention rounds: records are kept for days, so a minute late
/// is nothing, and a round that finds nothing due costs three seeks.
const CALL_LOG_EVERY: Duration = Duration::from_secs(60);

/// The call log's retention: calls, messages and change-feed entries past their time.
#[derive(Debug, Clone)]
pub struct CallLogRetention {
    pub calls: Arc<crate::calls::CallLog>,
}

impl CallLogRetention {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            match self.calls.prune().await {
                Ok(round) if round != Default::default() => tracing::debug!(
                    calls = round.calls,
                    messages = round.messages,
                    changes = round.changes,
                    "retention: call log records deleted"
                ),
                Ok(_) => {}
                Err(e) => {
                    if !e.is_store_unavailable() {
                        tracing::warn!(error = %e, "call log retention round failed; retrying");
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(CALL_LOG_EVERY) => {}
            }
        }
    }
}
