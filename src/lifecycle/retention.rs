//! Retention: a binding that left service (RELEASED or EXPIRED) still holds the real numbers of
//! its parties, so it is deleted once its time is up, and its request id is forgotten on a
//! schedule of its own. Both count from when the binding left service (its `released_at_ms`);
//! a binding that holds its slot is never touched and keeps its request id.
//!
//! - A request id is remembered for `request_ms`: a Bind repeating it gets that binding, in the
//!   state it is in. Forgetting it takes it out of the record too, so the record cannot bring the
//!   mapping back; a later Bind with it starts a new binding.
//! - A record is deleted `released_ms` after it left service, with every index entry of it, but
//!   not before the longest cool-down any app configures (AX numbers, AXE extensions) has ended:
//!   after a restart, the record is what puts its number or extension back into cool-down.
//! - A record deleted while its request id is still remembered leaves the request mapping as a
//!   tombstone: the request id stays taken (a Bind with it is refused with FAILED_PRECONDITION,
//!   since the binding it names is gone) until `request_ms` has passed.
//! - With `released_ms` 0, a binding whose slot has no cool-down is deleted in the transaction
//!   that takes it out of service; the rest is done by rounds of the retention job
//!   ([`Pool::retention_round`]), in bounded transactions through the store's log.
//! - In cluster mode each replica's rounds cover the apps it leads, each written under the
//!   app's term to etcd; the other replicas' copies follow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Pool;
use super::error::PoolError;
use crate::store::{BindingRecord, Lane, StoreError, Tx};

/// How long bindings that left service and their request ids are kept (the `[store]` config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A record is deleted this long after its binding left service (0: at once).
    pub released_ms: i64,
    /// A request id is remembered this long after its binding left service.
    pub request_ms: i64,
}

impl RetentionPolicy {
    pub fn new(released: Duration, request_ids: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        RetentionPolicy {
            released_ms: ms(released),
            request_ms: ms(request_ids),
        }
    }
}

/// What one retention round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionRound {
    /// Records deleted.
    pub deleted: usize,
    /// Request ids forgotten.
    pub forgotten: usize,
    /// More is due now: run another round soon.
    pub more: bool,
}

/// Which records a retention round deletes (one app's, or every app's) and where it writes.
struct Scope<'a, 't> {
    app: Option<&'a str>,
    lane: Lane<'t>,
}

/// Entries one round reads from each index at most.
const ROUND_LIMIT: usize = 1000;

/// Bindings one transaction deletes (or request ids it forgets) at most, so that a backlog
/// goes out in small log records with Binds' writes in between.
const CHUNK: usize = 100;

/// The policy and what it has deleted, shared by the pool and its apps.
#[derive(Debug, Clone)]
pub(super) struct Retention {
    pub(super) policy: RetentionPolicy,
    /// Records deleted since start-up (in release transactions and in rounds).
    deleted: Arc<AtomicU64>,
}

impl Retention {
    pub(super) fn new(policy: RetentionPolicy) -> Self {
        Retention {
            policy,
            deleted: Arc::default(),
        }
    }

    /// In the transaction that takes `left` out of service: deletes it at once if its time is
    /// already up (retention 0 and no cool-down to keep, `cool_down_ms` being its slot's). Returns
    /// whether it did; count it with [`Retention::count`] once the write is durable.
    pub(super) fn at_leave(
        &self,
        tx: &Tx<'_>,
        left: &BindingRecord,
        cool_down_ms: i64,
    ) -> Result<bool, StoreError> {
        if self.policy.released_ms > 0 || cool_down_ms > 0 {
            return Ok(false);
        }
        tx.purge_binding(&left.id, self.policy.request_ms > 0)
    }

    pub(super) fn count(&self, deleted: usize) {
        self.deleted.fetch_add(deleted as u64, Ordering::Relaxed);
    }

    pub(super) fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::Relaxed)
    }
}

impl Pool {
    /// Forgets the request ids and deletes the bindings whose time is up at `now_ms`, at most
    /// `ROUND_LIMIT` of each, in transactions of `CHUNK`.
    ///
    /// On a single node every app's records go, through the local log (those of apps no
    /// longer configured too). In cluster mode each replica purges the apps it leads, each
    /// in its own term's writes to etcd (the others' copies follow).
    pub async fn retention_round(&self, now_ms: i64) -> Result<RetentionRound, PoolError> {
        if !self.store.takes_leader_writes() {
            return self.retention_round_of(None, Lane::Local, now_ms).await;
        }
        let mut total = RetentionRound::default();
        for app in self.apps() {
            let Some(term) = app.term() else { continue };
            let round = self
                .retention_round_of(Some(app.name()), Lane::Leader(term), now_ms)
                .await?;
            total.deleted += round.deleted;
            total.forgotten += round.forgotten;
            total.more |= round.more;
        }
        Ok(total)
    }

    /// [`Pool::retention_round`] of `app` (every app: `None`), written on `lane`.
    async fn retention_round_of(
        &self,
        app: Option<&str>,
        lane: Lane<'_>,
        now_ms: i64,
    ) -> Result<RetentionRound, PoolError> {
        let policy = self.retention.policy;
        let scope = Scope { app, lane };
        let (forgotten, more_requests) = self
            .forget_requests(&scope, now_ms.saturating_sub(policy.request_ms))
            .await?;
        let kept_ms = policy.released_ms.max(self.cool_down_kept_ms);
        let remembered = |left: i64| left.saturating_add(policy.request_ms) > now_ms;
        let (deleted, more_records) = self
            .delete_records(&scope, now_ms.saturating_sub(kept_ms), remembered)
            .await?;
        self.retention.count(deleted);
        Ok(RetentionRound {
            deleted,
            forgotten,
            more: more_requests || more_records,
        })
    }

    /// Forgets the request ids of bindings that left service at or before `until_ms`; returns
    /// how many, and whether more may be due.
    async fn forget_requests(
        &self,
        scope: &Scope<'_, '_>,
        until_ms: i64,
    ) -> Result<(usize, bool), PoolError> {
        let due = self
            .store
            .remembered_until(until_ms, ROUND_LIMIT, scope.app)?;
        let mut forgotten = 0;
        for chunk in due.chunks(CHUNK) {
            forgotten += self
                .store
                .commit_in(scope.lane, |tx| {
                    let mut n = 0;
                    for (left, id) in chunk {
                        n += usize::from(tx.forget_request(*left, id)?);
                    }
                    Ok::<_, StoreError>(n)
                })
                .await?;
            tokio::task::yield_now().await;
        }
        Ok((forgotten, due.len() == ROUND_LIMIT && forgotten > 0))
    }

    /// Deletes the bindings that left service at or before `until_ms`, keeping the request id
    /// of those for which `remembered(left at)` holds as a tombstone; returns how many, and
    /// whether more may be due.
    async fn delete_records(
        &self,
        scope: &Scope<'_, '_>,
        until_ms: i64,
        remembered: impl Fn(i64) -> bool,
    ) -> Result<(usize, bool), PoolError> {
        let due = self.store.left_until(until_ms, ROUND_LIMIT, scope.app)?;
        let mut deleted = 0;
        for chunk in due.chunks(CHUNK) {
            deleted += self
                .store
                .commit_in(scope.lane, |tx| {
                    let mut n = 0;
                    for (left, id) in chunk {
                        n += usize::from(tx.purge_binding(id, remembered(*left))?);
                    }
                    Ok::<_, StoreError>(n)
                })
                .await?;
            tokio::task::yield_now().await;
        }
        Ok((deleted, due.len() == ROUND_LIMIT && deleted > 0))
    }

    /// Bindings deleted by retention since start-up.
    pub fn retention_deleted(&self) -> u64 {
        self.retention.deleted()
    }
}
