//! Deleting what the call log no longer keeps: calls and messages older than
//! `retention_days`, feed entries older than `watch_retention_hours`. Run by the retention job.

use super::CallLog;
use crate::lifecycle::PoolError;
use crate::store::Lane;

/// Records deleted per write.
const BATCH: usize = 500;

/// What one round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLogRound {
    pub calls: usize,
    pub messages: usize,
    pub changes: usize,
}

impl CallLog {
    /// Deletes everything past its retention, in batches; what it deleted.
    ///
    /// On a single node every app's records go, through the local log. In cluster mode each
    /// replica deletes those of the apps it leads, under each app's term (the others' copies
    /// follow), so the feed entries the leaders write to etcd do not pile up there.
    pub async fn prune(&self) -> Result<CallLogRound, PoolError> {
        if !self.store.takes_leader_writes() {
            return self.prune_of(None, Lane::Local).await;
        }
        let mut total = CallLogRound::default();
        for app in self.pool.apps() {
            let Some(term) = app.term() else { continue };
            let round = self.prune_of(Some(app.name()), Lane::Leader(term)).await?;
            total.calls += round.calls;
            total.messages += round.messages;
            total.changes += round.changes;
        }
        Ok(total)
    }

    /// [`CallLog::prune`] of `app` (every app: `None`), written on `lane`.
    async fn prune_of(&self, app: Option<&str>, lane: Lane<'_>) -> Result<CallLogRound, PoolError> {
        let now = self.clock.now_ms();
        let day_ms = 24 * 3600 * 1000_i64;
        let calls_until = now.saturating_sub(self.settings.retention_days as i64 * day_ms);
        let changes_until =
            now.saturating_sub(self.settings.watch_retention_hours as i64 * 3600 * 1000);
        let mut round = CallLogRound::default();
        loop {
            let old = self.store.calls_seen_before(calls_until, BATCH, app)?;
            if old.is_empty() {
                break;
            }
            self.store
                .commit_in(lane, |tx| old.iter().try_for_each(|c| tx.delete_call(c)))
                .await?;
            round.calls += old.len();
        }
        loop {
            let old = self.store.messages_seen_before(calls_until, BATCH, app)?;
            if old.is_empty() {
                break;
            }
            self.store
                .commit_in(lane, |tx| old.iter().try_for_each(|m| tx.delete_message(m)))
                .await?;
            round.messages += old.len();
        }
        loop {
            let old = self.store.changes_before(changes_until, BATCH, app)?;
            if old.is_empty() {
                break;
            }
            self.store
                .commit_in(lane, |tx| {
                    old.iter().try_for_each(|seq| tx.delete_change(*seq))
                })
                .await?;
            round.changes += old.len();
        }
        Ok(round)
    }
}
