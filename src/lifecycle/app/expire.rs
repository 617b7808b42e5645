//! Expiry: bindings leave ACTIVE at their deadline, and UpdateBinding moves deadlines.
//!
//! The platform expires AXB, AXE and AXYB bindings itself (their lifetime was sent at bind
//! time): xpool marks them EXPIRED once the deadline plus a clock-skew grace has passed, and
//! optionally sends a defensive unbind that treats "not found" as success. AX bindings never
//! expire on the platform, so xpool unbinds them itself at the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinError, JoinSet};

use super::AppPool;
use crate::lifecycle::Pool;
use crate::lifecycle::error::PoolError;
use crate::platform::Mode;
use crate::platform::wire::{AxbModifyRequest, AxeModifyRequest, TimeUnit};
use crate::store::{BindingId, BindingRecord, BindingState};

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
                if let Err(e) = &result {
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

impl AppPool {
    /// Takes one ACTIVE binding past its deadline out of service.
    async fn expire(
        self: &Arc<Self>,
        rec: BindingRecord,
        defensive_unbind: bool,
    ) -> Result<(), PoolError> {
        if rec.mode == Mode::Ax {
            // The platform never expires AX bindings: unbind it ourselves.
            self.release(&rec, BindingState::Expired).await?;
            return Ok(());
        }
        let only_yb = self.shares_subscription(&rec);
        let expired = self.transition(&rec.id, BindingState::Expired, |_| {})?;
        self.store.flush().await?;
        if defensive_unbind && let Some(client) = &self.client {
            // Best effort: the platform has expired it already, or will; "not found" is success.
            self.cleanup.push(&self.name, client, expired, only_yb);
        }
        Ok(())
    }

    /// Gives an ACTIVE binding a new lifetime counted from now (0 = none), on the platform where
    /// the mode allows it, and moves its deadline in the store.
    pub(in crate::lifecycle) async fn update_ttl(
        &self,
        id: BindingId,
        ttl_seconds: u64,
    ) -> Result<BindingRecord, PoolError> {
        let rec = self
            .store
            .get_binding(&id)?
            .ok_or_else(|| PoolError::NotFound(format!("no binding {id}")))?;
        if rec.state != BindingState::Active {
            return Err(PoolError::FailedPrecondition(
                format!("binding {id} is {:?}, not active", rec.state).to_lowercase(),
            ));
        }
        if rec.mode == Mode::Axyb {
            return Err(PoolError::FailedPrecondition(
                "AXYB bindings cannot be modified on the platform; unbind and bind again".into(),
            ));
        }
        self.rules
            .check_ttl(ttl_seconds)
            .map_err(|why| PoolError::invalid("ttl_seconds", why))?;
        if let (Some(client), Some(sub)) = (&self.client, rec.subscription_id.clone()) {
            let result = match rec.mode {
                Mode::Axb => {
                    let req = AxbModifyRequest {
                        subscription_id: sub,
                        duration: Some(ttl_seconds),
                        ..Default::default()
                    };
                    client.axb_modify(&req).await
                }
                Mode::Axe => {
                    let req = AxeModifyRequest {
                        subscription_id: Some(sub),
                        time_unit: Some(TimeUnit::Minutes),
                        bind_expired_time: Some(ttl_seconds / 60),
                        ..Default::default()
                    };
                    client.axe_modify(&req).await
                }
                // AX bindings have no lifetime on the platform: the deadline is ours alone.
                _ => Ok(()),
            };
            result.map_err(|e| self.upstream_error(&e))?;
        }
        let now = self.clock.now_ms();
        let updated = self.transition_in_place(&id, |b| {
            b.ttl_seconds = ttl_seconds;
            b.expires_at_ms =
                (ttl_seconds > 0).then(|| now.saturating_add(ttl_seconds as i64 * 1000));
        })?;
        self.store.flush().await?;
        self.deadlines.notify_one();
        Ok(updated)
    }
}
