//! Expiry rounds over every app: bindings leave ACTIVE at their deadline, in bounded rounds.
//!
//! The platform expires AXB, AXE and AXYB bindings itself (their lifetime was sent at bind
//! time): xpool marks them EXPIRED once the deadline plus a clock-skew grace has passed, and
//! optionally sends a defensive unbind that treats "not found" as success. AX bindings never
//! expire on the platform, so xpool unbinds them itself at the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinError, JoinSet};

use super::Pool;
use super::error::PoolError;
use crate::platform::Mode;

/// How expiry behaves (the `[expiry]` config section).
#[derive(Debug, Clone)]
pub struct ExpiryPolicy {
    /// Wait this long past a deadline before marking a platform-expired binding EXPIRED.
    pub skew_grace_ms: i64,
    /// Also unbind upstream bindings the platform expires itself.
    pub defensive_unbind: bool,
    /// Bindings per round.
    pub batch_size: usize,
    /// Longest one round may run before yielding to other work.
    pub round_budget: Duration,
}

/// What one expiry round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub expired: usize,
    /// More bindings are due now: run another round soon.
    pub more: bool,
    /// The earliest wall-clock ms at which something (known now) becomes due.
    pub next_due_ms: Option<i64>,
}

/// Bindings one expiry round takes out of service at the same time.
const EXPIRE_CONCURRENCY: usize = 256;

impl Round {
    /// Counts one finished expiry task (which logged its own failure).
    fn count(&mut self, done: Result<bool, JoinError>) {
        match done {
            Ok(true) => self.expired += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "expiry task failed; retried later"),
        }
    }
}

impl Pool {
    /// Expires what is due at `now_ms`, within the policy's batch size and time budget.
    pub async fn expire_round(
        &self,
        policy: &ExpiryPolicy,
        now_ms: i64,
    ) -> Result<Round, PoolError> {
        let started = Instant::now();
        let due = self.store.due_bindings(now_ms, policy.batch_size)?;
        let full_batch = due.len() == policy.batch_size;
        let mut round = Round::default();
        // Bindings are expired concurrently, so that their durable writes share group commits
        // (one at a time, a burst would be paced by one log sync per binding).
        let mut running = JoinSet::new();
        for id in due {
            if started.elapsed() > policy.round_budget {
                round.more = true;
                break;
            }
            let Some(rec) = self.store.get_binding(&id)? else {
                continue;
            };
            let Ok(app) = self.app(&rec.app) else {
                continue;
            };
            let Some(deadline) = rec.expires_at_ms else {
                continue;
            };
            let acts_at = if rec.mode == Mode::Ax {
                deadline
            } else {
                deadline + policy.skew_grace_ms
            };
            if acts_at > now_ms {
                round.next_due_ms = Some(round.next_due_ms.map_or(acts_at, |t| t.min(acts_at)));
                continue;
            }
            if running.len() >= EXPIRE_CONCURRENCY
                && let Some(done) = running.join_next().await
            {
                round.count(done);
            }
            let (app, defensive_unbind) = (Arc::clone(app), policy.defensive_unbind);
            running.spawn(async move {
                let result = app.expire(rec, defensive_unbind).await;
                if let Err(e) = &result
                    && !e.is_store_unavailable()
                {
                    tracing::warn!(app = %app.name(), %id, error = %e, "expiry failed; retried later");
                }
                result.is_ok()
            });
        }
        while let Some(done) = running.join_next().await {
            round.count(done);
        }
        // A full batch may hide more due bindings behind it, unless nothing in it could be acted
        // on yet (all inside their skew grace): then wait for the earliest of those instead of
        // reading the same batch again at once.
        round.more |= full_batch && round.expired > 0;
        if !round.more
            && let Some(next) = self.store.next_deadline_ms()?.filter(|t| *t > now_ms)
        {
            round.next_due_ms = Some(round.next_due_ms.map_or(next, |t| t.min(next)));
        }
        Ok(round)
    }
}
