//! The call log's trees: calls (events and CDR joined by session), SMS messages, the change
//! feed, and the `subscriptions` lookup pushes use to find their binding (kept in `bindings`).
//!
//! Merging, deduplication and linking are the call log's (`crate::calls`); the store keeps
//! records and their lookups consistent within one transaction, and deletes them in time.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::records::{BindingId, BindingRecord, PlatformStatus};
use super::wal::{TreeId, Tx, TxResult};
use super::{Store, StoreError, codec, keys, too_long};

/// A call's or message's id: a UUID v7 taken when it was first heard of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogId(pub [u8; 16]);

impl LogId {
    /// When it was taken: a UUID v7 starts with its 48-bit millisecond time.
    pub fn time_ms(&self) -> i64 {
        let mut ms = [0; 8];
        ms[2..].copy_from_slice(&self.0[..6]);
        i64::from_be_bytes(ms)
    }

    /// The smallest id taken at `ms` (a range bound).
    pub fn first_at(ms: i64) -> LogId {
        let mut id = [0; 16];
        id[..6].copy_from_slice(&ms.max(0).to_be_bytes()[2..]);
        LogId(id)
    }
}

/// One call event, as stored in its call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStored {
    /// The wire name (`callin`, `answer`…).
    pub event_type: String,
    pub time_ms: Option<i64>,
    pub caller: Option<String>,
    pub called: Option<String>,
    pub state_code: Option<u32>,
    pub state_desc: Option<String>,
    pub subscription_id: Option<String>,
    pub user_data: Option<String>,
    pub binding: Option<BindingId>,
    /// AXE `collectInfo`: the digits keyed in.
    pub digits: Option<String>,
    pub received_ms: i64,
}

/// What xpool keeps of a CDR (notifications.md §2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrStored {
    pub icid: Option<String>,
    pub service_type: Option<String>,
    pub ul_fail_reason: Option<u64>,
    pub fwd_unansw_rsn: Option<u64>,
    pub sip_status_code: Option<u64>,
    pub record_flag: Option<u64>,
    pub record_domain: Option<String>,
    pub record_bucket: Option<String>,
    pub record_object: Option<String>,
    pub extension: Option<String>,
    pub user_data: Option<String>,
    pub host_name: Option<String>,
    pub received_ms: i64,
}

/// One call: its events and CDR, joined by (app, sessionId).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStored {
    pub id: LogId,
    pub app: String,
    pub session_id: String,
    pub binding: Option<BindingId>,
    pub subscription_id: Option<String>,
    pub x: Option<String>,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub direction: Option<i64>,
    pub start_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub state_code: Option<u32>,
    pub cdr: Option<CdrStored>,
    pub events: Vec<EventStored>,
    pub updated_ms: i64,
}

/// One SMS notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStored {
    pub id: LogId,
    pub app: String,
    pub sms_identifier: String,
    /// `Notify` or `Block`.
    pub mode: String,
    pub event: Option<String>,
    pub calling: Option<String>,
    pub called: Option<String>,
    pub x: Option<String>,
    pub binding: Option<BindingId>,
    pub subscription_id: Option<String>,
    pub time_ms: Option<i64>,
    pub segments: u32,
    pub content: Option<String>,
    pub received_ms: i64,
}

/// What a change of the feed is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKindStored {
    BindingBound,
    BindingUpdated,
    BindingReleased,
    BindingExpired,
    BindingAdopted,
    NumberStatus,
    CallEvent,
    Message,
}

/// A number's new status, in the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberChangeStored {
    pub number: String,
    pub status: PlatformStatus,
    pub cause: Option<String>,
}

/// A call event, in the feed: the event with the call it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEventChange {
    pub call: LogId,
    pub session_id: String,
    pub event: EventStored,
}

/// One entry of the change feed (a snapshot of what changed, so it reads the same later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeStored {
    pub at_ms: i64,
    pub app: String,
    pub kind: ChangeKindStored,
    pub binding: Option<BindingRecord>,
    pub number: Option<NumberChangeStored>,
    pub call_event: Option<CallEventChange>,
    pub message: Option<MessageStored>,
}

impl codec::Stored for LogId {}
impl codec::Stored for CallStored {}
impl codec::Stored for MessageStored {}
impl codec::Stored for ChangeStored {}
impl codec::Stored for u64 {}

/// `meta` key: the feed's floor (u64), the next change's number as of the last deletion from
/// the feed, for a restart after retention emptied it (see `Tx::next_change`). Stores written
/// before 2026-12 kept the next number here after every append; either way it is a floor.
pub(super) const NEXT_CHANGE: &[u8] = b"feed/next";

impl Tx<'_> {
    /// The call of (app, session_id), if one is stored.
    pub fn call_of_session(&self, app: &str, session_id: &str) -> TxResult<Option<CallStored>> {
        let key = keys::session(app, session_id).map_err(too_long(keys::SESSIONS))?;
        let Some(value) = self.sessions.get(&key)? else {
            return Ok(None);
        };
        let id: LogId = codec::decode(keys::SESSIONS, &key, &value)?;
        match self.calls.get(id.0)? {
            None => Ok(None),
            Some(value) => codec::decode(keys::CALLS, &id.0, &value).map(Some),
        }
    }

    /// Writes a call with its session lookup and its binding link (moving the link if the
    /// call's binding changed).
    pub fn put_call(&self, call: &CallStored) -> TxResult<()> {
        let session =
            keys::session(&call.app, &call.session_id).map_err(too_long(keys::SESSIONS))?;
        let old: Option<CallStored> = match self.calls.get(call.id.0)? {
            None => None,
            Some(value) => Some(codec::decode(keys::CALLS, &call.id.0, &value)?),
        };
        if let Some(old_binding) = old.as_ref().and_then(|c| c.binding)
            && call.binding != Some(old_binding)
        {
            self.call_links
                .remove(keys::call_link(&old_binding, &call.id.0))?;
        }
        if let Some(binding) = &call.binding {
            self.call_links
                .insert(keys::call_link(binding, &call.id.0), [])?;
        }
        self.sessions.insert(session, codec::encode(&call.id))?;
        self.calls.insert(call.id.0, codec::encode(call))?;
        Ok(())
    }

    /// Deletes a call and its lookups.
    pub fn delete_call(&self, call: &CallStored) -> TxResult<()> {
        if let Ok(session) = keys::session(&call.app, &call.session_id)
            && let Some(value) = self.sessions.get(&session)?
            && codec::decode::<LogId>(keys::SESSIONS, &session, &value)? == call.id
        {
            self.sessions.remove(session)?;
        }
        if let Some(binding) = &call.binding {
            self.call_links
                .remove(keys::call_link(binding, &call.id.0))?;
        }
        self.calls.remove(call.id.0)?;
        Ok(())
    }

    /// The message stored for (app, sms_identifier, mode), if any.
    pub fn message_of(
        &self,
        app: &str,
        sms_identifier: &str,
        mode: &str,
    ) -> TxResult<Option<LogId>> {
        let key =
            keys::message_id(app, sms_identifier, mode).map_err(too_long(keys::MESSAGE_IDS))?;
        match self.message_ids.get(&key)? {
            None => Ok(None),
            Some(value) => codec::decode(keys::MESSAGE_IDS, &key, &value).map(Some),
        }
    }

    /// Writes a message with its identifier lookup.
    pub fn put_message(&self, m: &MessageStored) -> TxResult<()> {
        let key = keys::message_id(&m.app, &m.sms_identifier, &m.mode)
            .map_err(too_long(keys::MESSAGE_IDS))?;
        self.message_ids.insert(key, codec::encode(&m.id))?;
        self.messages.insert(m.id.0, codec::encode(m))?;
        Ok(())
    }

    /// Deletes a message and its lookup.
    pub fn delete_message(&self, m: &MessageStored) -> TxResult<()> {
        if let Ok(key) = keys::message_id(&m.app, &m.sms_identifier, &m.mode) {
            self.message_ids.remove(key)?;
        }
        self.messages.remove(m.id.0)?;
        Ok(())
    }

    /// Appends `change` to the feed; its sequence number.
    pub fn append_change(&self, change: &ChangeStored) -> TxResult<u64> {
        self.append_in_order(std::slice::from_ref(change))
    }

    /// Appends `changes` to the feed in order, with one update of the next sequence number
    /// for all of them (a batch of expiries writes it once, not once per binding).
    pub fn append_changes(&self, changes: &[ChangeStored]) -> TxResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.append_in_order(changes).map(drop)
    }

    /// The sequence number of the first of `changes` (at least one).
    fn append_in_order(&self, changes: &[ChangeStored]) -> TxResult<u64> {
        let first = self.next_change()?;
        for (seq, change) in (first..).zip(changes) {
            self.changes
                .insert(keys::change(seq), codec::encode(change))?;
        }
        self.next_change.set(Some(first + changes.len() as u64));
        Ok(first)
    }

    /// The feed's next number. The log keeps it in memory between transactions, so an append
    /// writes only its entries; the first transaction after opening the store works it out:
    /// one past the newest entry written (pending or durable), or the floor `meta` keeps for a
    /// feed that retention emptied, whichever is greater (1 for a feed that never had an
    /// entry). Numbers are never reused, so a reader's resume token never names two changes.
    fn next_change(&self) -> TxResult<u64> {
        if let Some(next) = self.next_change.get() {
            return Ok(next);
        }
        let floor = match self.meta.get(NEXT_CHANGE)? {
            None => 1,
            Some(value) => codec::decode::<u64>(keys::META, NEXT_CHANGE, &value)?,
        };
        let after_newest = match self.changes.last_key()? {
            None => 1,
            Some(key) => {
                let newest = keys::parse_change(&key).ok_or_else(|| StoreError::Corrupt {
                    tree: keys::CHANGES,
                    detail: keys::describe(&key),
                })?;
                newest + 1
            }
        };
        let next = floor.max(after_newest);
        self.next_change.set(Some(next));
        Ok(next)
    }

    /// Deletes change `seq` from the feed. The transaction also writes the feed's next number
    /// to `meta` (once), as the floor a restart numbers from if this leaves the feed empty.
    pub fn delete_change(&self, seq: u64) -> TxResult<()> {
        self.changes.remove(keys::change(seq))?;
        if !self.feed_floor_written.replace(true) {
            let next = self.next_change()?;
            self.meta.insert(NEXT_CHANGE, codec::encode(&next))?;
        }
        Ok(())
    }
}

impl Store {
    /// The binding the platform's `subscription_id` of `app` belongs to (durable state).
    pub fn binding_of_subscription(
        &self,
        app: &str,
        subscription_id: &str,
    ) -> Result<Option<BindingId>, StoreError> {
        let Ok(key) = keys::subscription(app, subscription_id) else {
            return Ok(None);
        };
        self.get(TreeId::Subscriptions, &key)?
            .map(|v| codec::decode(keys::SUBSCRIPTIONS, &key, &v))
            .transpose()
    }

    /// The call stored under `id`.
    pub fn get_call(&self, id: &LogId) -> Result<Option<CallStored>, StoreError> {
        self.get(TreeId::Calls, &id.0)?
            .map(|v| codec::decode(keys::CALLS, &id.0, &v))
            .transpose()
    }

    /// Calls newest first, from just before `before` (all when `None`) down to `from` (its
    /// first-seen bound), read lazily.
    pub fn calls_newest_first(
        &self,
        before: Option<LogId>,
        from: Option<LogId>,
    ) -> Result<impl Iterator<Item = Result<CallStored, StoreError>> + '_, StoreError> {
        let range = self.read(|trees| Ok(trees.calls.range(bounds(before, from))))?;
        Ok(range.rev().map(|entry| {
            let (key, value) = entry?;
            codec::decode(keys::CALLS, &key, &value)
        }))
    }

    /// The ids of the calls linked to `binding`, newest first.
    pub fn calls_of_binding(&self, binding: &BindingId) -> Result<Vec<LogId>, StoreError> {
        let scan = self.read(|trees| Ok(trees.call_links.scan_prefix(binding.0)))?;
        let mut ids = scan
            .map(|entry| {
                let (key, _) = entry?;
                let id: [u8; 16] = key[16..].try_into().map_err(|_| StoreError::Corrupt {
                    tree: keys::CALL_LINKS,
                    detail: format!("key {} is not 32 bytes", keys::describe(&key)),
                })?;
                Ok(LogId(id))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        ids.reverse();
        Ok(ids)
    }

    /// Messages newest first, like [`Store::calls_newest_first`].
    pub fn messages_newest_first(
        &self,
        before: Option<LogId>,
        from: Option<LogId>,
    ) -> Result<impl Iterator<Item = Result<MessageStored, StoreError>> + '_, StoreError> {
        let range = self.read(|trees| Ok(trees.messages.range(bounds(before, from))))?;
        Ok(range.rev().map(|entry| {
            let (key, value) = entry?;
            codec::decode(keys::MESSAGES, &key, &value)
        }))
    }

    /// Up to `limit` calls first seen before `until_ms`, oldest first (retention); of `app`
    /// only, when given (cluster mode: each app's leader deletes its own).
    pub fn calls_seen_before(
        &self,
        until_ms: i64,
        limit: usize,
        app: Option<&str>,
    ) -> Result<Vec<CallStored>, StoreError> {
        let end = LogId::first_at(until_ms);
        let range = self.read(|trees| Ok(trees.calls.range(..end.0)))?;
        let decoded = range.map(|entry| {
            let (key, value) = entry?;
            codec::decode::<CallStored>(keys::CALLS, &key, &value)
        });
        of_app(decoded, app, |call| &call.app, limit)
    }

    /// Up to `limit` messages first seen before `until_ms`, oldest first (retention); of
    /// `app` only, when given.
    pub fn messages_seen_before(
        &self,
        until_ms: i64,
        limit: usize,
        app: Option<&str>,
    ) -> Result<Vec<MessageStored>, StoreError> {
        let end = LogId::first_at(until_ms);
        let range = self.read(|trees| Ok(trees.messages.range(..end.0)))?;
        let decoded = range.map(|entry| {
            let (key, value) = entry?;
            codec::decode::<MessageStored>(keys::MESSAGES, &key, &value)
        });
        of_app(decoded, app, |message| &message.app, limit)
    }

    /// Up to `limit` changes after `after`, oldest first, with their numbers.
    pub fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ChangeStored)>, StoreError> {
        let start = keys::change(after.saturating_add(1));
        let range = self.read(|trees| Ok(trees.changes.range(start..)))?;
        range
            .take(limit)
            .map(|entry| {
                let (key, value) = entry?;
                let seq = keys::parse_change(&key).ok_or_else(|| StoreError::Corrupt {
                    tree: keys::CHANGES,
                    detail: format!("key {} is not 8 bytes", keys::describe(&key)),
                })?;
                Ok((seq, codec::decode(keys::CHANGES, &key, &value)?))
            })
            .collect()
    }

    /// The numbers of the oldest and the newest change kept (durable), if any.
    pub fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.read(|trees| {
            let first = trees.changes.first()?;
            let last = trees.changes.last()?;
            Ok(first.zip(last).and_then(|((first, _), (last, _))| {
                Some((keys::parse_change(&first)?, keys::parse_change(&last)?))
            }))
        })
    }

    /// The number of the oldest change a reader can still get: the oldest kept, or when none
    /// is kept, the next one to come (1 for a feed that never had one).
    pub fn change_floor(&self) -> Result<u64, StoreError> {
        if let Some((first, _)) = self.change_bounds()? {
            return Ok(first);
        }
        match self.get(TreeId::Meta, NEXT_CHANGE)? {
            None => Ok(1),
            Some(value) => codec::decode(keys::META, NEXT_CHANGE, &value),
        }
    }

    /// Up to `limit` changes made before `until_ms`, oldest first: their numbers (retention);
    /// of `app` only, when given (the others' are read past).
    pub fn changes_before(
        &self,
        until_ms: i64,
        limit: usize,
        app: Option<&str>,
    ) -> Result<Vec<u64>, StoreError> {
        let range = self.read(|trees| Ok(trees.changes.iter()))?;
        let mut out = Vec::new();
        for entry in range {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let change: ChangeStored = codec::decode(keys::CHANGES, &key, &value)?;
            if change.at_ms >= until_ms {
                break;
            }
            if app.is_some_and(|app| app != change.app) {
                continue;
            }
            if let Some(seq) = keys::parse_change(&key) {
                out.push(seq);
            }
        }
        Ok(out)
    }
}

/// The first `limit` of `records` that belong to `app` (all, when `None`).
fn of_app<T>(
    records: impl Iterator<Item = Result<T, StoreError>>,
    app: Option<&str>,
    app_of: impl Fn(&T) -> &str,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for record in records {
        if out.len() >= limit {
            break;
        }
        let record = record?;
        if app.is_none_or(|app| app == app_of(&record)) {
            out.push(record);
        }
    }
    Ok(out)
}

/// The key range of ids from `from` (inclusive) to `before` (exclusive).
fn bounds(before: Option<LogId>, from: Option<LogId>) -> (Bound<[u8; 16]>, Bound<[u8; 16]>) {
    (
        from.map_or(Bound::Unbounded, |f| Bound::Included(f.0)),
        before.map_or(Bound::Unbounded, |b| Bound::Excluded(b.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ids_carry_their_time() {
        let id = LogId(*uuid::Uuid::now_v7().as_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now - id.time_ms()).abs() < 5_000, "{}", id.time_ms());
        assert_eq!(LogId::first_at(id.time_ms()).time_ms(), id.time_ms());
        assert!(LogId::first_at(id.time_ms()) <= id);
        assert!(LogId::first_at(id.time_ms() + 1) > id);
    }

    fn status_change(at_ms: i64) -> ChangeStored {
        ChangeStored {
            at_ms,
            app: "ride".into(),
            kind: ChangeKindStored::NumberStatus,
            binding: None,
            number: Some(NumberChangeStored {
                number: "+8617000000001".into(),
                status: PlatformStatus::Unavailable,
                cause: None,
            }),
            call_event: None,
            message: None,
        }
    }

    async fn append(store: &Store, at_ms: i64) -> u64 {
        store
            .commit(|tx| tx.append_change(&status_change(at_ms)))
            .await
            .unwrap()
    }

    /// The next number is kept in memory, not written per append: a reopened store, and one
    /// whose feed retention emptied, must still never reuse a number.
    #[tokio::test]
    async fn feed_numbers_go_on_across_restarts_and_after_the_feed_was_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::store::StoreOptions::new(dir.path().join("db"));
        let store = Store::open(&options).unwrap();
        assert_eq!(store.change_floor().unwrap(), 1);
        assert_eq!((append(&store, 1).await, append(&store, 2).await), (1, 2));
        store.close().await.unwrap();
        drop(store);

        let store = Store::open(&options).unwrap();
        assert_eq!(
            append(&store, 3).await,
            3,
            "numbered on from the newest entry"
        );
        store
            .commit(|tx| (1..=3).try_for_each(|seq| tx.delete_change(seq)))
            .await
            .unwrap();
        assert_eq!(store.change_bounds().unwrap(), None);
        assert_eq!(store.change_floor().unwrap(), 4);
        store.close().await.unwrap();
        drop(store);

        let store = Store::open(&options).unwrap();
        assert_eq!(store.change_floor().unwrap(), 4);
        assert_eq!(append(&store, 4).await, 4, "numbered on from the floor");
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_transaction_takes_no_feed_number() {
        let store = Store::open_temporary().unwrap();
        assert_eq!(append(&store, 1).await, 1);
        let failed = store
            .commit(|tx| {
                tx.append_change(&status_change(2))?;
                Err::<(), _>(StoreError::Conflict("changed its mind".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(append(&store, 3).await, 2);
        assert_eq!(store.change_bounds().unwrap(), Some((1, 2)));
    }

    /// After a crash the numbering starts from what the log and sled hold: the entries the
    /// replayed log adds count, so no number a reader may have seen is handed out again.
    #[tokio::test]
    async fn feed_numbers_go_on_after_a_crash_from_the_replayed_log() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::store::StoreOptions::new(dir.path().join("db"));
        let sled_then = dir.path().join("sled-then");
        let wal_later = dir.path().join("wal-later");
        {
            let store = Store::open(&options).unwrap();
            append(&store, 1).await;
            store.close().await.unwrap();
        }
        crate::store::copy_dir(&options.path, &sled_then);
        {
            let store = Store::open(&options).unwrap();
            assert_eq!((append(&store, 2).await, append(&store, 3).await), (2, 3));
            crate::store::copy_dir(&options.path.join("wal"), &wal_later);
        }
        crate::store::stage_crash(dir.path(), &sled_then, &wal_later);
        let store = Store::open(&options).unwrap();
        assert_eq!(store.change_bounds().unwrap(), Some((1, 3)));
        assert_eq!(append(&store, 4).await, 4);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_feed_numbers_changes_in_order_and_keeps_them_until_deleted() {
        let store = Store::open_temporary().unwrap();
        let change = |at_ms| ChangeStored {
            at_ms,
            app: "ride".into(),
            kind: ChangeKindStored::NumberStatus,
            binding: None,
            number: Some(NumberChangeStored {
                number: "+8617000000001".into(),
                status: PlatformStatus::Unavailable,
                cause: Some("2".into()),
            }),
            call_event: None,
            message: None,
        };
        let seqs = store
            .commit(|tx| {
                Ok::<_, StoreError>((
                    tx.append_change(&change(10))?,
                    tx.append_change(&change(20))?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(seqs, (1, 2));
        let third = store
            .commit(|tx| tx.append_change(&change(30)))
            .await
            .unwrap();
        assert_eq!(third, 3);
        assert_eq!(store.change_bounds().unwrap(), Some((1, 3)));
        let after_one: Vec<u64> = store
            .changes_after(1, 10)
            .unwrap()
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(after_one, [2, 3]);
        assert_eq!(store.changes_before(25, 10, None).unwrap(), [1, 2]);
        store
            .commit(|tx| {
                tx.delete_change(1)?;
                tx.delete_change(2)
            })
            .await
            .unwrap();
        assert_eq!(store.change_bounds().unwrap(), Some((3, 3)));
        // Numbers go on after deletions: never reused.
        assert_eq!(
            store
                .commit(|tx| tx.append_change(&change(40)))
                .await
                .unwrap(),
            4
        );
    }
}
