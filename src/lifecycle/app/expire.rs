//! Taking bindings out of service at their deadline.
//!
//! AX bindings go one at a time: the platform never expires them, so each is unbound there
//! first (`release`). The bindings the platform expires itself (AXB, AXE, AXYB) and X-mode ones
//! need only a local write, so a burst of them goes in batches: one transaction (one log record)
//! and one index pass per batch, and one wait for durability for all of a round's batches.

use super::AppPool;
use crate::lifecycle::error::PoolError;
use crate::lifecycle::expiry::ExpiryPolicy;
use crate::lifecycle::records;
use crate::platform::Mode;
use crate::store::{BindingRecord, BindingState, Staged};

/// What one batch's transaction did, decided but not yet durable.
#[derive(Debug, Default)]
pub(in crate::lifecycle) struct ExpiredBatch {
    /// Each binding taken out of service, as it was before and as it left, with whether a
    /// defensive unbind must spare its AX subscription (see [`AppPool::shares_subscription`]).
    expired: Vec<(BindingRecord, BindingRecord, bool)>,
    /// Of those, the records deleted in the same write (no retention).
    deleted: usize,
}

/// A batch staged by [`AppPool::stage_expiry`]; [`AppPool::finish_expiry`] completes it.
pub(in crate::lifecycle) type StagedExpiry = Staged<ExpiredBatch>;

impl AppPool {
    /// Takes one ACTIVE AX binding past its deadline out of service: unbound on the platform,
    /// then EXPIRED. `rec` was read before: the binding is checked again in the first write,
    /// so one released, or given a later deadline, meanwhile is left alone (and not unbound).
    /// Whether it expired.
    pub(in crate::lifecycle) async fn expire_ax(
        &self,
        rec: BindingRecord,
        policy: &ExpiryPolicy,
        now_ms: i64,
    ) -> Result<bool, PoolError> {
        debug_assert_eq!(rec.mode, Mode::Ax);
        let still_due = |current: &BindingRecord| {
            current.state == BindingState::Active
                && policy.acts_at(current).is_some_and(|t| t <= now_ms)
        };
        let (_, expired) = self
            .release_if(&rec, BindingState::Expired, still_due)
            .await?;
        Ok(expired)
    }

    /// Marks the bindings of `due` that are still ACTIVE and due at `now_ms` EXPIRED, in one
    /// transaction, and gives their slots back in one pass over the index (under its lock, in
    /// step with the write, as [`AppPool::write`] does). `due` was read before: each binding is
    /// checked again inside the transaction, so one released, or given a later deadline,
    /// meanwhile is left alone. Not for AX bindings (see [`AppPool::expire_ax`]).
    ///
    /// Nothing of it may be acted on outside the index until the returned write is durable:
    /// pass it to [`AppPool::finish_expiry`].
    pub(in crate::lifecycle) fn stage_expiry(
        &self,
        due: &[BindingRecord],
        policy: &ExpiryPolicy,
        now_ms: i64,
    ) -> Result<StagedExpiry, PoolError> {
        // Read before the write, from durable state, as a single expiry does.
        let spares_ax = |rec: &BindingRecord| {
            policy.defensive_unbind && self.client.is_some() && self.shares_subscription(rec)
        };
        let spares: Vec<bool> = due.iter().map(spares_ax).collect();
        let now = self.clock.now_ms();
        let keep_ms = self.cool_down_kept_ms();
        self.stage_write(
            |tx, _| {
                let mut batch = ExpiredBatch::default();
                for (rec, only_yb) in due.iter().zip(spares) {
                    let Some(current) = tx.get_binding(&rec.id)? else {
                        continue;
                    };
                    let still_due = policy.acts_at(&current).is_some_and(|t| t <= now_ms);
                    if current.state != BindingState::Active || !still_due {
                        continue;
                    }
                    let next = BindingRecord {
                        state: BindingState::Expired,
                        updated_at_ms: now,
                        released_at_ms: Some(now),
                        ..current.clone()
                    };
                    tx.replace_binding(&current, &next)?;
                    // With no retention, the record goes in this same write.
                    batch.deleted += usize::from(self.retention.at_leave(tx, &next, keep_ms)?);
                    batch.expired.push((current, next, only_yb));
                }
                Ok(batch)
            },
            |index, batch| {
                index.begin_bulk();
                for (current, _, _) in &batch.expired {
                    index.vacate(&records::occupant(current), Some(now), now);
                }
                index.end_bulk(now);
            },
        )
    }

    /// Waits until a batch staged by [`AppPool::stage_expiry`] is durable, queues the defensive
    /// unbinds of its bindings (with `defensive_unbind`), then waits until sled holds it too.
    /// Returns how many expired.
    ///
    /// A write is answered once it is durable, before the log's applier thread applies it to
    /// sled; the expiry round waits for the apply as well, so that a burst goes at the pace of
    /// the applies. Going at the pace of the syncs cleared a burst of 200k a tenth sooner but
    /// packed the applies tighter among the Binds: their p50 and p99 during it rose by a tenth
    /// to a fifth (BENCHMARKS.md, scenario 5). It waits for this batch's apply only, not for
    /// the batches synced after it, which the applier takes next while the round stages more.
    pub(in crate::lifecycle) async fn finish_expiry(
        &self,
        staged: StagedExpiry,
        defensive_unbind: bool,
    ) -> Result<usize, PoolError> {
        let record = staged.log_record();
        let batch = staged.await?;
        self.retention.count(batch.deleted);
        let expired = batch.expired.len();
        if defensive_unbind && let Some(client) = &self.client {
            for (_, left, only_yb) in batch.expired {
                // Best effort: the platform has expired it already, or will; "not found" is
                // success.
                self.cleanup.push(&self.name, client, &left, only_yb);
            }
        }
        match record {
            Some(record) => record.applied().await?,
            // A leader's write (cluster mode) is answered once the local copy has it, which
            // sled may not hold yet.
            None => self.store.settled().await?,
        }
        Ok(expired)
    }
}
