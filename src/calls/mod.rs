//! The call log: what the platform pushes about calls and messages (call events, CDRs, SMS),
//! stored once each (deduplicated), linked to the binding it belongs to and kept for a retention
//! period; and the change feed that `Watch` streams (binding changes, number status changes,
//! call events), numbered so that a client can resume where it stopped.
//!
//! The receiver (`crate::pushes`) writes here; the gRPC layer reads. Writes are durable when
//! they return (a group-commit sync, like Binds), so a push is answered 200 only once its
//! records are on disk.

mod read;
mod record;
mod retention;
mod segments;
#[cfg(test)]
mod tests;
mod types;

use std::sync::Arc;

pub use retention::CallLogRound;
pub use types::*;

use crate::lifecycle::{AppPool, Clock, Pool, PoolError};
use crate::platform::push::{CallEvent, FeeInfo, SmsEvent};
use crate::store::{BindingId, Lane, Store};

/// A callin the receiver answered before storing it: whom the answer connected.
#[derive(Debug, Clone, Copy)]
struct Answered {
    routed: Option<BindingId>,
}

/// How long the log keeps what it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLogSettings {
    /// Call records (events and CDRs) and messages, counted from when they were first seen.
    pub retention_days: u64,
    /// Entries of the change feed; a resume token older than this is `OUT_OF_RANGE`.
    pub watch_retention_hours: u64,
}

impl Default for CallLogSettings {
    fn default() -> Self {
        CallLogSettings {
            retention_days: 31,
            watch_retention_hours: 24,
        }
    }
}

/// The call log over the daemon's store.
#[derive(Debug)]
pub struct CallLog {
    store: Arc<Store>,
    pool: Arc<Pool>,
    clock: Arc<dyn Clock>,
    settings: CallLogSettings,
}

impl CallLog {
    pub fn new(
        store: Arc<Store>,
        pool: Arc<Pool>,
        clock: Arc<dyn Clock>,
        settings: CallLogSettings,
    ) -> Self {
        CallLog {
            store,
            pool,
            clock,
            settings,
        }
    }

    /// Stores one call event of app `app` (any event type, the X-mode Block `callin` too),
    /// merged into its call (by `sessionId`), linked to its binding. A repeated event (same
    /// session and event type) is stored once: `Stored::Duplicate`.
    pub async fn record_event(&self, app: &str, event: &CallEvent) -> Result<Stored, PoolError> {
        self.write_event(app, event, None).await
    }

    /// Stores an X-mode Block `callin` that was answered already, linked to `routed`, the
    /// binding the answer connected (`None`: answered close, no binding). Nobody waits for it
    /// (the platform had its answer), so it asks for no sync of its own: it becomes durable
    /// with the next write someone waits for, or the log's background write.
    pub async fn record_answered_callin(
        &self,
        app: &str,
        event: &CallEvent,
        routed: Option<BindingId>,
    ) -> Result<Stored, PoolError> {
        self.write_event(app, event, Some(Answered { routed }))
            .await
    }

    /// Stores the CDRs of one push (already parsed one by one: the receiver counts the entries
    /// it could not parse). `app` is the app the push was for, when the receiver knows it (a
    /// verified signature); otherwise each CDR's `appKey` decides. A CDR that names no call
    /// (no `sessionId` and no `icid`) or no known app is skipped and counted.
    pub async fn record_fees(
        &self,
        app: Option<&str>,
        fees: &[FeeInfo],
    ) -> Result<FeeCounts, PoolError> {
        self.write_fees(app, fees).await
    }

    /// Stores one SMS event (Notify or Block) of app `app`, with its segment count.
    pub async fn record_sms(&self, app: &str, sms: &SmsEvent) -> Result<Stored, PoolError> {
        self.write_sms(app, sms).await
    }

    /// One page of call records, newest first, matching `filter`, after `after` (the last id
    /// of the previous page); and whether more follow.
    pub fn list_calls(
        &self,
        filter: &CallFilter,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<(Vec<CallRecord>, bool), PoolError> {
        self.read_calls(filter, after, limit)
    }

    /// One page of call events (of the calls `filter` matches), newest call first and each
    /// call's events in the order they happened, after `after`; and whether more follow.
    pub fn list_events(
        &self,
        filter: &CallFilter,
        after: Option<EventCursor>,
        limit: usize,
    ) -> Result<(Vec<CallEventEntry>, bool), PoolError> {
        self.read_events(filter, after, limit)
    }

    /// One page of SMS records, newest first.
    pub fn list_messages(
        &self,
        filter: &CallFilter,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), PoolError> {
        self.read_messages(filter, after, limit)
    }

    /// Up to `limit` changes after sequence number `after` (0: from the oldest kept), oldest
    /// first, that `filter` passes. Refused with `Reason::WatchExpired` (`OUT_OF_RANGE`) when
    /// changes after `after` were already pruned.
    pub fn changes_after(
        &self,
        after: u64,
        filter: &ChangeFilter,
        limit: usize,
    ) -> Result<Vec<Change>, PoolError> {
        Ok(self.read_changes(after, filter, limit)?.changes)
    }

    /// Like [`CallLog::changes_after`], and how far the feed was read (changes the filter
    /// left out included): a watcher goes on from `cursor`, so a narrow filter does not read
    /// the same stretch again at every wake-up.
    pub fn scan_changes(
        &self,
        after: u64,
        filter: &ChangeFilter,
        limit: usize,
    ) -> Result<ChangePage, PoolError> {
        self.read_changes(after, filter, limit)
    }

    /// The sequence number of the last durable change (0 when there is none).
    pub fn last_change(&self) -> u64 {
        match self.store.change_bounds() {
            Ok(bounds) => bounds.map_or(0, |(_, last)| last),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the change feed's bounds");
                0
            }
        }
    }

    /// Wakes whenever writes became durable, new changes among them: a watcher subscribes,
    /// then reads what is new, then waits.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.durable_writes()
    }

    /// The retention settings.
    pub fn settings(&self) -> CallLogSettings {
        self.settings
    }

    /// Who writes app `app`'s records: on a single node nobody in particular (`None`: the
    /// local log); in cluster mode this replica's pool of the app, under whose term the
    /// writes go to etcd. An app this replica does not lead (any more) is `LEADER_UNAVAILABLE`,
    /// so a push is answered 503 and the platform sends it again.
    fn writer(&self, app: &str) -> Result<Option<Arc<AppPool>>, PoolError> {
        if !self.store.takes_leader_writes() {
            return Ok(None);
        }
        self.pool.app(app).map(Some)
    }
}

/// The lane of a [`CallLog::writer`].
fn lane(writer: &Option<Arc<AppPool>>) -> Lane<'_> {
    writer.as_deref().map_or(Lane::Local, AppPool::lane)
}
