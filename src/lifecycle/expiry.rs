//! Expiry rounds over every app: bindings leave ACTIVE at their deadline, in bounded rounds.
//!
//! The platform expires AXB, AXE and AXYB bindings itself (their lifetime was sent at bind
//! time): xpool marks them EXPIRED once the deadline plus a clock-skew grace has passed, and
//! optionally sends a defensive unbind that treats "not found" as success. AX bindings never
//! expire on the platform, so xpool unbinds them itself at the deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinError, JoinSet};

use super::Pool;
use super::app::StagedExpiry;
use super::error::PoolError;
use crate::platform::Mode;
use crate::store::BindingRecord;

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

impl ExpiryPolicy {
    /// When expiry acts on `rec` (wall-clock ms): at its deadline for AX bindings, which xpool
    /// unbinds itself, after the skew grace for the modes the platform expires; `None` without
    /// a deadline.
    pub fn acts_at(&self, rec: &BindingRecord) -> Option<i64> {
        let deadline = rec.expires_at_ms?;
        Some(if rec.mode == Mode::Ax {
            deadline
        } else {
            deadline.saturating_add(self.skew_grace_ms)
        })
    }
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

/// AX bindings one expiry round unbinds on the platform at the same time.
const EXPIRE_CONCURRENCY: usize = 256;

/// Bindings marked EXPIRED in one transaction. The transaction holds the app's index lock and
/// the log's lock while it runs (some 10 µs per binding), so Binds wait at most about that long
/// behind one batch.
pub(super) const BATCH: usize = 64;

/// Batches staged and not yet known to be in sled. With this many, the round waits until the
/// oldest is in sled (that one only: see [`AppPool::finish_expiry`]) and then stages the next,
/// so it stages while the log writes the batches before and its applier applies them. A Bind's
/// write staged behind them waits for the log to write them (not for their sled applies), so
/// this bounds what a burst adds to a Bind's wait. With the round waiting for its oldest batch
/// alone, three cleared a burst of 200k in 11.3–11.6 s, against 12.1–12.5 s for two and
/// 11.5–12.3 s for two when the round waited for every batch synced, with the same Bind p99
/// during it; four were a little sooner again, and the Bind p99 varied more (BENCHMARKS.md,
/// "Scenario 5: the applier at a lower priority, and each batch waiting for its own apply").
///
/// [`AppPool::finish_expiry`]: super::app::AppPool::finish_expiry
pub(super) const BATCHES_IN_FLIGHT: usize = 3;

impl Round {
    /// Counts one finished AX expiry task (which logged its own failure).
    fn count(&mut self, done: Result<bool, JoinError>) {
        match done {
            Ok(true) => self.expired += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "expiry task failed; retried later"),
        }
    }

    fn due_later(&mut self, at: i64) {
        self.next_due_ms = Some(self.next_due_ms.map_or(at, |t| t.min(at)));
    }
}

impl Pool {
    /// Expires what is due at `now_ms`, within the policy's batch size and time budget.
    ///
    /// While a round finds more due than it can take, the apps' defensive unbinds wait (see
    /// `cleanup`): a burst of expiries goes first, the courtesy calls after it.
    pub async fn expire_round(
        &self,
        policy: &ExpiryPolicy,
        now_ms: i64,
    ) -> Result<Round, PoolError> {
        let started = Instant::now();
        let apps = self.served();
        let due = if self.store.takes_leader_writes() {
            // Cluster mode: only the apps led here, so that others' cannot fill the batch.
            self.store
                .due_bindings_of(now_ms, policy.batch_size, |app| apps.contains_key(app))?
        } else {
            self.store.due_bindings(now_ms, policy.batch_size)?
        };
        let full_batch = due.len() == policy.batch_size;
        let mut round = Round::default();
        // AX bindings are unbound on the platform one by one, concurrently; the others are
        // written in batches per app.
        let mut unbinding = JoinSet::new();
        let mut batches: HashMap<&str, Vec<BindingRecord>> = HashMap::new();
        let mut staged = VecDeque::new();
        let mut failed = None;
        for id in due {
            if started.elapsed() > policy.round_budget {
                round.more = true;
                break;
            }
            // Read without waiting for sled to hold the batches just made durable: the
            // transaction that expires it checks the binding again. That second read is the
            // cheap one: this one has brought the record into sled's cache, outside the log's
            // lock. A round that sorted bindings by app and mode without reading them (from
            // values in the `expiry` entries) left the transaction's read to do that under the
            // lock, and its bursts took longer in all five alternating pairs; a raw read here
            // won the time back and saved only the decode (BENCHMARKS.md, "Scenario 5: the
            // round's first read of each binding").
            let Some(rec) = self.store.peek_binding(&id)? else {
                continue;
            };
            let Some((name, app)) = apps.get_key_value(rec.app.as_str()) else {
                continue;
            };
            let Some(acts_at) = policy.acts_at(&rec) else {
                continue;
            };
            if acts_at > now_ms {
                round.due_later(acts_at);
                continue;
            }
            if rec.mode == Mode::Ax {
                if unbinding.len() >= EXPIRE_CONCURRENCY
                    && let Some(done) = unbinding.join_next().await
                {
                    round.count(done);
                }
                unbinding.spawn(expire_ax(Arc::clone(app), rec, policy.clone(), now_ms));
                continue;
            }
            let batch = batches.entry(name).or_default();
            batch.push(rec);
            if batch.len() == BATCH {
                let batch = std::mem::take(batch);
                if let Err(e) = stage(app, &batch, policy, now_ms, &mut staged).await {
                    failed = Some(e);
                    break;
                }
                // A batch staged one binding at a time (see `stage`) counts as many.
                while staged.len() >= BATCHES_IN_FLIGHT && failed.is_none() {
                    finish_oldest(&mut staged, policy, &mut round, &mut failed).await;
                }
                if failed.is_some() {
                    break;
                }
            }
        }
        if failed.is_none() {
            for (name, batch) in batches.into_iter().filter(|(_, b)| !b.is_empty()) {
                if let Err(e) = stage(&apps[name], &batch, policy, now_ms, &mut staged).await {
                    failed = Some(e);
                    break;
                }
            }
        }
        finish(&mut staged, policy, &mut round, &mut failed).await;
        while let Some(done) = unbinding.join_next().await {
            round.count(done);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // A full batch may hide more due bindings behind it, unless nothing in it could be acted
        // on yet (all inside their skew grace): then wait for the earliest of those instead of
        // reading the same batch again at once.
        round.more |= full_batch && round.expired > 0;
        self.expiring
            .send_if_modified(|busy| std::mem::replace(busy, round.more) != round.more);
        if !round.more
            && let Some(next) = self.store.next_deadline_ms()?.filter(|t| *t > now_ms)
        {
            round.due_later(next);
        }
        Ok(round)
    }
}

/// Stages one batch of `app`'s due bindings, and lets other work run before the next. A
/// batch that fails for a reason of its own (not the store's) is staged again one binding at a
/// time, so that one binding that cannot be written holds back only itself.
async fn stage(
    app: &Arc<super::AppPool>,
    batch: &[BindingRecord],
    policy: &ExpiryPolicy,
    now_ms: i64,
    staged: &mut VecDeque<(Arc<super::AppPool>, StagedExpiry)>,
) -> Result<(), PoolError> {
    match app.stage_expiry(batch, policy, now_ms) {
        Ok(s) => staged.push_back((Arc::clone(app), s)),
        Err(e) if e.is_store_unavailable() => return Err(e),
        Err(e) => {
            tracing::warn!(app = %app.name(), error = %e, "expiry batch failed; one at a time");
            for rec in batch {
                match app.stage_expiry(std::slice::from_ref(rec), policy, now_ms) {
                    Ok(s) => staged.push_back((Arc::clone(app), s)),
                    Err(e) if e.is_store_unavailable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(app = %app.name(), id = %rec.id, error = %e, "expiry failed; retried later");
                    }
                }
            }
        }
    }
    tokio::task::yield_now().await;
    Ok(())
}

/// Waits for every `staged` batch to be durable, oldest first (see [`finish_oldest`]).
async fn finish(
    staged: &mut VecDeque<(Arc<super::AppPool>, StagedExpiry)>,
    policy: &ExpiryPolicy,
    round: &mut Round,
    failed: &mut Option<PoolError>,
) {
    while !staged.is_empty() {
        finish_oldest(staged, policy, round, failed).await;
    }
}

/// Waits for the oldest `staged` batch to be durable and counts it into `round`; the first
/// failure goes to `failed`.
async fn finish_oldest(
    staged: &mut VecDeque<(Arc<super::AppPool>, StagedExpiry)>,
    policy: &ExpiryPolicy,
    round: &mut Round,
    failed: &mut Option<PoolError>,
) {
    let Some((app, batch)) = staged.pop_front() else {
        return;
    };
    match app.finish_expiry(batch, policy.defensive_unbind).await {
        Ok(n) => round.expired += n,
        Err(e) => _ = failed.get_or_insert(e),
    }
}

/// One AX binding's expiry, as a task of its own; whether it expired.
async fn expire_ax(
    app: Arc<super::AppPool>,
    rec: BindingRecord,
    policy: ExpiryPolicy,
    now_ms: i64,
) -> bool {
    let id = rec.id;
    match app.expire_ax(rec, &policy, now_ms).await {
        Ok(expired) => expired,
        Err(e) => {
            if !e.is_store_unavailable() {
                tracing::warn!(app = %app.name(), %id, error = %e, "expiry failed; retried later");
            }
            false
        }
    }
}
