//! Bindings and their indexes (`requests`, `expiry`, `slots`, `open`, `released`, `remembered`),
//! updated together in one transaction ([`Tx`]). Deleting them once retention has passed is in
//! `retention`.

use std::ops::Bound;

use super::records::{BindingId, BindingRecord, BindingState, RequestRef, SlotRecord, SlotView};
use super::wal::{TreeId, Tx, TxResult};
use super::{Store, StoreError, codec, keys, too_long};

/// Everything a binding write needs, encoded before the transaction so the closure stays pure.
pub(super) struct Write {
    id: BindingId,
    value: Vec<u8>,
    request_key: Option<Vec<u8>>,
    expiry_key: Option<[u8; keys::EXPIRY_KEY_LEN]>,
    /// The `slots` key and its encoded [`SlotRecord`].
    pub(super) slot: Option<(Vec<u8>, Vec<u8>)>,
    /// The `subscriptions` key: (app, the platform's subscriptionId).
    subscription_key: Option<Vec<u8>>,
    open: bool,
    pub(super) released_key: Option<[u8; keys::TIMED_KEY_LEN]>,
    /// The `remembered` key and its encoded [`RequestRef`].
    pub(super) remembered: Option<([u8; keys::TIMED_KEY_LEN], Vec<u8>)>,
}

impl Write {
    pub(super) fn new(record: &BindingRecord) -> Result<Self, StoreError> {
        let request_key = record
            .request_id
            .as_deref()
            .map(|rid| keys::request(&record.app, rid))
            .transpose()
            .map_err(too_long(keys::REQUESTS))?;
        Ok(Write {
            id: record.id,
            value: codec::encode(record),
            request_key,
            expiry_key: expiry_key_of(record),
            slot: slot_key_of(record).map(|key| (key, codec::encode(&SlotRecord::of(record)))),
            subscription_key: subscription_key_of(record),
            open: is_open(record),
            released_key: released_key_of(record),
            remembered: remembered_key_of(record).map(|key| {
                let request = RequestRef {
                    app: record.app.clone(),
                    request_id: record.request_id.clone().unwrap_or_default(),
                };
                (key, codec::encode(&request))
            }),
        })
    }
}

/// The `slots` key a record should have: bindings that hold a slot (on no X yet, for an AXYB
/// reservation before the platform chose).
fn slot_key_of(record: &BindingRecord) -> Option<Vec<u8>> {
    if !record.state.holds_slot() {
        return None;
    }
    keys::slot(&record.app, &record.x, &record.id).ok()
}

/// The `subscriptions` key a record should have: every binding the platform gave an id, for
/// as long as the record is kept (pushes about its calls may come after it ended).
pub(super) fn subscription_key_of(record: &BindingRecord) -> Option<Vec<u8>> {
    let sub = record
        .subscription_id
        .as_deref()
        .filter(|s| !s.is_empty())?;
    keys::subscription(&record.app, sub).ok()
}

/// Whether a record belongs in the `open` index: an outcome still to be settled.
fn is_open(record: &BindingRecord) -> bool {
    matches!(
        record.state,
        BindingState::Pending | BindingState::Releasing
    )
}

/// The `expiry` key a record should have: only Active bindings with a deadline.
fn expiry_key_of(record: &BindingRecord) -> Option<[u8; keys::EXPIRY_KEY_LEN]> {
    match (record.state, record.expires_at_ms) {
        (BindingState::Active, Some(deadline)) => Some(keys::expiry(deadline, &record.id)),
        _ => None,
    }
}

/// The `released` key a record should have: bindings that left service without a request id
/// (never given one, or forgotten), by when. One with a request id has its `remembered` key
/// instead: never both, so taking a binding out of service writes one retention entry.
fn released_key_of(record: &BindingRecord) -> Option<[u8; keys::TIMED_KEY_LEN]> {
    if request_key_of(record).is_some() {
        return None;
    }
    record
        .left_service_ms()
        .map(|left| keys::released(left, &record.id))
}

/// The `remembered` key a record should have: bindings that left service with a request id.
fn remembered_key_of(record: &BindingRecord) -> Option<[u8; keys::TIMED_KEY_LEN]> {
    request_key_of(record)?;
    record
        .left_service_ms()
        .map(|left| keys::remembered(left, &record.id))
}

/// The `requests` key a record should have (none if it has no request id, or an unencodable
/// one, which can never have been stored).
fn request_key_of(record: &BindingRecord) -> Option<Vec<u8>> {
    keys::request(&record.app, record.request_id.as_deref()?).ok()
}

impl Tx<'_> {
    /// The binding under `id`, as this transaction sees it.
    pub fn get_binding(&self, id: &BindingId) -> TxResult<Option<BindingRecord>> {
        let key = keys::binding(id);
        match self.bindings.get(key)? {
            None => Ok(None),
            Some(value) => codec::decode(keys::BINDINGS, &key, &value).map(Some),
        }
    }

    pub(super) fn request_owner(&self, key: &[u8]) -> TxResult<Option<BindingId>> {
        match self.requests.get(key)? {
            None => Ok(None),
            Some(value) => codec::decode(keys::REQUESTS, key, &value).map(Some),
        }
    }

    /// Removes `key` from `requests` if it still points at `id` (never another binding's).
    pub(super) fn release_request(&self, key: &[u8], id: &BindingId) -> TxResult<()> {
        if self.request_owner(key)? == Some(*id) {
            self.requests.delete(key);
        }
        Ok(())
    }

    /// The binding the platform's `subscription_id` of `app` belongs to.
    pub fn binding_of_subscription(
        &self,
        app: &str,
        subscription_id: &str,
    ) -> TxResult<Option<BindingId>> {
        let Ok(key) = keys::subscription(app, subscription_id) else {
            return Ok(None);
        };
        match self.subscriptions.get(&key)? {
            None => Ok(None),
            Some(value) => codec::decode(keys::SUBSCRIPTIONS, &key, &value).map(Some),
        }
    }

    /// Removes `key` from `subscriptions` if it still points at `id`.
    fn release_subscription(&self, key: &[u8], id: &BindingId) -> TxResult<()> {
        if let Some(value) = self.subscriptions.get(key)?
            && codec::decode::<BindingId>(keys::SUBSCRIPTIONS, key, &value)? == *id
        {
            self.subscriptions.delete(key);
        }
        Ok(())
    }

    /// Writes `w` over `old` (the record currently stored under the same id, if any).
    fn apply(&self, w: &Write, old: Option<&BindingRecord>) -> TxResult<()> {
        self.bindings
            .insert(keys::binding(&w.id), w.value.as_slice())?;
        // An index entry the old record already had, unchanged, is not written again: each
        // is a sled insert on the log's applier (an expiry burst makes hundreds of thousands),
        // and a request id or subscription whose mapping another binding holds now is not
        // taken back by this binding's later writes.
        let old_request = old.and_then(request_key_of);
        if let Some(old_key) = &old_request
            && w.request_key.as_ref() != Some(old_key)
        {
            self.release_request(old_key, &w.id)?;
        }
        if let Some(key) = &w.request_key
            && old_request.as_ref() != Some(key)
        {
            self.requests.insert(key.as_slice(), codec::encode(&w.id))?;
        }
        if let Some(old_key) = old.and_then(expiry_key_of)
            && w.expiry_key != Some(old_key)
        {
            self.expiry.delete(old_key);
        }
        if let Some(key) = &w.expiry_key
            && old.and_then(expiry_key_of).as_ref() != Some(key)
        {
            self.expiry.insert(key, [])?;
        }
        if let Some(old_key) = old.and_then(slot_key_of)
            && w.slot.as_ref().map(|(key, _)| key) != Some(&old_key)
        {
            self.slots.delete(old_key);
        }
        if let Some((key, value)) = &w.slot {
            self.slots.insert(key.as_slice(), value.as_slice())?;
        }
        if let Some(old_key) = old.and_then(subscription_key_of)
            && w.subscription_key.as_ref() != Some(&old_key)
        {
            self.release_subscription(&old_key, &w.id)?;
        }
        if let Some(key) = &w.subscription_key
            && old.and_then(subscription_key_of).as_ref() != Some(key)
        {
            self.subscriptions
                .insert(key.as_slice(), codec::encode(&w.id))?;
        }
        let was_open = old.is_some_and(is_open);
        if w.open && !was_open {
            self.open.insert(keys::binding(&w.id), [])?;
        } else if !w.open && was_open {
            self.open.delete(keys::binding(&w.id));
        }
        if let Some(old_key) = old.and_then(released_key_of)
            && w.released_key != Some(old_key)
        {
            self.released.delete(old_key);
        }
        if let Some(key) = &w.released_key
            && old.and_then(released_key_of).as_ref() != Some(key)
        {
            self.released.insert(key, [])?;
        }
        if let Some(old_key) = old.and_then(remembered_key_of)
            && w.remembered.as_ref().map(|(key, _)| *key) != Some(old_key)
        {
            self.remembered.delete(old_key);
        }
        // Its value names the app and request id, the same when the request key is.
        if let Some((key, value)) = &w.remembered
            && (old.and_then(remembered_key_of).as_ref() != Some(key)
                || old_request != w.request_key)
        {
            self.remembered.insert(key, value.as_slice())?;
        }
        Ok(())
    }

    /// Removes `old`'s record and its index entries. With `keep_request`, its request mapping
    /// stays, and its `remembered` entry becomes a tombstone, which [`Tx::forget_request`]
    /// deletes with the mapping once the request id's time is up.
    ///
    /// The mapping goes before the record (sled applies a transaction's changes in order), so
    /// that a reader never finds a mapping without its record unless it is a tombstone (see
    /// [`Store::purged_request`]).
    pub(super) fn remove(&self, old: &BindingRecord, keep_request: bool) -> TxResult<()> {
        self.binding_changes
            .borrow_mut()
            .push((Some(old.clone()), None));
        let id = &old.id;
        if !keep_request && let Some(key) = request_key_of(old) {
            self.release_request(&key, id)?;
        }
        if let Some(key) = remembered_key_of(old) {
            self.remembered.delete(key);
            if keep_request && let Some(left) = old.left_service_ms() {
                let request = RequestRef {
                    app: old.app.clone(),
                    request_id: old.request_id.clone().unwrap_or_default(),
                };
                self.remembered.insert(
                    keys::remembered_tombstone(left, id),
                    codec::encode(&request),
                )?;
            }
        }
        self.bindings.delete(keys::binding(id));
        if let Some(key) = subscription_key_of(old) {
            self.release_subscription(&key, id)?;
        }
        if let Some(key) = expiry_key_of(old) {
            self.expiry.delete(key);
        }
        if let Some(key) = slot_key_of(old) {
            self.slots.delete(key);
        }
        if is_open(old) {
            self.open.delete(keys::binding(id));
        }
        if let Some(key) = released_key_of(old) {
            self.released.delete(key);
        }
        Ok(())
    }
}

impl Tx<'_> {
    /// Creates or replaces the record under its id, and in the same transaction: maps
    /// (app, request_id) to it (dropping the mapping of a request id the old record had, if
    /// that still pointed here), and keeps its `expiry` key present iff it is Active with a
    /// deadline.
    pub fn put_binding(&self, record: &BindingRecord) -> TxResult<()> {
        let write = Write::new(record)?;
        let old = self.get_binding(&write.id)?;
        self.apply(&write, old.as_ref())?;
        self.binding_changes
            .borrow_mut()
            .push((old, Some(record.clone())));
        Ok(())
    }

    /// `put_binding` for a caller that has just read `old`, the record stored under the same
    /// id, in this transaction: the same writes, without reading it again.
    pub fn replace_binding(&self, old: &BindingRecord, record: &BindingRecord) -> TxResult<()> {
        debug_assert_eq!(old.id, record.id);
        let write = Write::new(record)?;
        self.apply(&write, Some(old))?;
        self.binding_changes
            .borrow_mut()
            .push((Some(old.clone()), Some(record.clone())));
        Ok(())
    }

    /// Like `put_binding`, but fails with `StoreError::Conflict` (writing nothing) if
    /// (app, request_id) already maps to another id, or if the id already exists. For new
    /// bindings (adopted ones; a Bind's reservation uses [`Tx::insert_new_binding`]): two
    /// concurrent Binds with one request_id cannot both reserve.
    pub fn insert_binding(&self, record: &BindingRecord) -> TxResult<()> {
        self.insert(record, true)
    }

    /// [`Tx::insert_binding`] for a record whose id was minted for it just now by
    /// [`BindingId::new`] (a UUIDv7: its millisecond and 74 random bits), which no stored
    /// binding has: the id is not looked up, a read of a key that is not there saved on every
    /// Bind. The request id is still checked.
    pub fn insert_new_binding(&self, record: &BindingRecord) -> TxResult<()> {
        debug_assert!(
            matches!(self.get_binding(&record.id), Ok(None)),
            "a minted id {} is taken",
            record.id
        );
        self.insert(record, false)
    }

    fn insert(&self, record: &BindingRecord, check_id: bool) -> TxResult<()> {
        let write = Write::new(record)?;
        if check_id && self.get_binding(&write.id)?.is_some() {
            return Err(StoreError::Conflict(format!(
                "binding {} already exists",
                write.id
            )));
        }
        if let Some(key) = &write.request_key
            && let Some(owner) = self.request_owner(key)?
            && owner != write.id
        {
            return Err(StoreError::Conflict(format!(
                "request_id {:?} of app {:?} already belongs to binding {owner}",
                record.request_id.as_deref().unwrap_or_default(),
                record.app
            )));
        }
        self.apply(&write, None)?;
        self.binding_changes
            .borrow_mut()
            .push((None, Some(record.clone())));
        Ok(())
    }

    /// Removes the record, its request mapping and its index entries. `Ok(false)` if absent.
    pub fn delete_binding(&self, id: &BindingId) -> TxResult<bool> {
        let Some(old) = self.get_binding(id)? else {
            return Ok(false);
        };
        self.remove(&old, false)?;
        Ok(true)
    }
}

impl Store {
    /// [`Tx::put_binding`] as its own transaction, durable on return.
    pub async fn put_binding(&self, record: &BindingRecord) -> Result<(), StoreError> {
        self.commit(|tx| tx.put_binding(record)).await
    }

    /// [`Tx::insert_binding`] as its own transaction, durable on return.
    pub async fn insert_binding(&self, record: &BindingRecord) -> Result<(), StoreError> {
        self.commit(|tx| tx.insert_binding(record)).await
    }

    /// [`Tx::delete_binding`] as its own transaction, durable on return.
    pub async fn delete_binding(&self, id: &BindingId) -> Result<bool, StoreError> {
        self.commit(|tx| tx.delete_binding(id)).await
    }

    /// Every PENDING or RELEASING binding (one scan of the small `open` index). Each record is
    /// read after its index entry, so one that left the index in between (a write applied
    /// meanwhile) is left out; a caller acting on one must still check its state in the write.
    pub fn open_bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        let scan = self.read(|trees| Ok(trees.open.iter()))?;
        let mut open = self.indexed(keys::OPEN, scan, 0)?;
        open.retain(|b| matches!(b.state, BindingState::Pending | BindingState::Releasing));
        Ok(open)
    }

    /// The bindings of `app` that hold a slot on `x` (PENDING, ACTIVE, RELEASING), in id order:
    /// one prefix scan of the `slots` index. None on no X (`x` empty).
    pub fn bindings_on(&self, app: &str, x: &str) -> Result<Vec<BindingRecord>, StoreError> {
        let Ok(prefix) = keys::slot_prefix(app, x) else {
            return Ok(Vec::new());
        };
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let scan = self.read(|trees| Ok(trees.slots.scan_prefix(&prefix)))?;
        self.indexed(keys::SLOTS, scan, prefix.len())
    }

    /// The bindings an index scan names: each key ends in a binding id after `skip` bytes. An
    /// entry whose binding is gone (a scan racing the apply of a removal) is skipped.
    fn indexed(
        &self,
        tree: &'static str,
        entries: sled::Iter,
        skip: usize,
    ) -> Result<Vec<BindingRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in entries {
            let (key, _) = self.read(|_| Ok(entry?))?;
            let Some(id) = key.get(skip..).and_then(keys::parse_binding) else {
                return Err(StoreError::Corrupt {
                    tree,
                    detail: keys::describe(&key),
                });
            };
            if let Some(record) = self.get_binding(&id)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Every binding that holds a slot, as its `slots` entry, in (app, x, id) order: `f` gets
    /// the app, the X (empty: none yet), the id and the entry. Returns how many there were;
    /// stops at the first unreadable entry.
    pub fn for_each_slot(
        &self,
        mut f: impl FnMut(&str, &str, BindingId, SlotView<'_>),
    ) -> Result<usize, StoreError> {
        let slots = self.read(|trees| Ok(trees.slots.clone()))?;
        // At start-up, sled's walk over a million entries and what `f` does with them (filling
        // the index's tables) take about as long each: a second thread walks sled and hands
        // over batches of entries, so the two overlap on a machine's two cores.
        std::thread::scope(|scope| {
            let (batches, walked) = std::sync::mpsc::sync_channel(SLOT_BATCHES_AHEAD);
            let scan = slots.iter();
            let walker = std::thread::Builder::new()
                .name("xpool-slots".into())
                .spawn_scoped(scope, move || walk_in_batches(scan, &batches));
            match walker {
                Ok(_) => self.take_slots(walked.into_iter().flatten(), &mut f),
                Err(e) => {
                    tracing::warn!(error = %e, "no thread to walk the slots index; walking it here");
                    self.take_slots(slots.iter(), &mut f)
                }
            }
        })
    }

    fn take_slots(
        &self,
        entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        f: &mut impl FnMut(&str, &str, BindingId, SlotView<'_>),
    ) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in entries {
            let (key, value) = self.read(|_| Ok(entry?))?;
            let Some((app, x, id)) = keys::parse_slot(&key) else {
                return Err(StoreError::Corrupt {
                    tree: keys::SLOTS,
                    detail: format!("malformed key {}", keys::describe(&key)),
                });
            };
            f(app, x, id, codec::decode_slot(&key, &value)?);
            count += 1;
        }
        Ok(count)
    }

    /// The RELEASED and EXPIRED bindings that left service at or after `from_ms`, in id order:
    /// range scans of the `released` index and of the live entries of `remembered` (those
    /// with a request id), and each record read.
    pub fn released_since(&self, from_ms: i64) -> Result<Vec<BindingRecord>, StoreError> {
        let start = keys::released(from_ms, &BindingId([0; 16]));
        let (released, remembered) = self.read(|trees| {
            Ok((
                trees.released.range(start..),
                // Live entries only: a tombstone's record is gone.
                trees.remembered.range(start..=keys::timed_bound(i64::MAX)),
            ))
        })?;
        let mut out = Vec::new();
        for (name, scan) in [(keys::RELEASED, released), (keys::REMEMBERED, remembered)] {
            for entry in scan {
                let (key, _) = self.read(|_| Ok(entry?))?;
                let (_, id) = parse_timed_key(name, &key)?;
                out.extend(self.get_binding(&id)?);
            }
        }
        out.sort_unstable_by_key(|r| r.id);
        Ok(out)
    }

    pub fn get_binding(&self, id: &BindingId) -> Result<Option<BindingRecord>, StoreError> {
        let key = keys::binding(id);
        self.get(TreeId::Bindings, &key)?
            .map(|value| codec::decode(keys::BINDINGS, &key, &value))
            .transpose()
    }

    /// [`Store::get_binding`] without the wait for sled to hold the last group commit's
    /// writes: a candidate that a transaction checks again (the expiry round's).
    pub fn peek_binding(&self, id: &BindingId) -> Result<Option<BindingRecord>, StoreError> {
        let key = keys::binding(id);
        self.read_unsettled(|trees| Ok(trees.bindings.get(key)?))?
            .map(|value| codec::decode(keys::BINDINGS, &key, &value))
            .transpose()
    }

    /// The binding that (app, request_id) maps to, if it still carries that request id.
    pub fn binding_by_request(
        &self,
        app: &str,
        request_id: &str,
    ) -> Result<Option<BindingRecord>, StoreError> {
        Ok(match self.request_lookup(app, request_id)? {
            super::retention::RequestLookup::Live(record) => Some(*record),
            _ => None,
        })
    }

    /// Every binding in id (= creation) order; errors per item.
    pub fn scan_bindings(&self) -> impl Iterator<Item = Result<BindingRecord, StoreError>> + '_ {
        let (scan, unavailable) = match self.read(|trees| Ok(trees.bindings.iter())) {
            Ok(scan) => (Some(scan), None),
            Err(e) => (None, Some(Err(e))),
        };
        unavailable.into_iter().chain(
            scan.into_iter()
                .flatten()
                .map(|entry| self.read(|_| decode_binding(entry))),
        )
    }

    /// Bindings with id > `after` (exclusive), in id order, that satisfy `keep`, at most `limit`.
    /// Stops at the first unreadable record.
    pub fn list_bindings(
        &self,
        after: Option<&BindingId>,
        limit: usize,
        keep: impl Fn(&BindingRecord) -> bool,
    ) -> Result<Vec<BindingRecord>, StoreError> {
        let start = match after {
            Some(id) => Bound::Excluded(keys::binding(id).to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let scan = self.read(|trees| Ok(trees.bindings.range((start, Bound::Unbounded))))?;
        for entry in scan {
            if out.len() >= limit {
                break;
            }
            let record = self.read(|_| decode_binding(entry))?;
            if keep(&record) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Active bindings whose deadline is <= `now_ms`, earliest first, at most `limit` (one range
    /// scan of the expiry index). Candidates, for a transaction to check again: the scan does
    /// not wait for sled to hold the last group commit's writes (see `Store::read_unsettled`),
    /// so a binding expired or released in it may still be listed.
    pub fn due_bindings(&self, now_ms: i64, limit: usize) -> Result<Vec<BindingId>, StoreError> {
        let due = keys::expiry_due_bound(now_ms);
        self.read_unsettled(|trees| {
            trees
                .expiry
                .range(..=due)
                .take(limit)
                .map(|entry| Ok(parse_expiry_key(&entry?.0)?.1))
                .collect()
        })
    }

    /// [`Store::due_bindings`] of the apps for which `of` holds (read from each binding's
    /// record): a cluster replica expires the apps it leads, and the others' due bindings
    /// must not fill its batch.
    pub fn due_bindings_of(
        &self,
        now_ms: i64,
        limit: usize,
        of: impl Fn(&str) -> bool,
    ) -> Result<Vec<BindingId>, StoreError> {
        let due = keys::expiry_due_bound(now_ms);
        self.read_unsettled(|trees| {
            let mut out = Vec::new();
            for entry in trees.expiry.range(..=due) {
                if out.len() >= limit {
                    break;
                }
                let id = parse_expiry_key(&entry?.0)?.1;
                let key = keys::binding(&id);
                let Some(value) = trees.bindings.get(key)? else {
                    continue;
                };
                let record: BindingRecord = codec::decode(keys::BINDINGS, &key, &value)?;
                if of(&record.app) {
                    out.push(id);
                }
            }
            Ok(out)
        })
    }

    /// The earliest deadline in the expiry index (one seek). A hint for the expiry scheduler,
    /// which reads it after every round: it does not wait for sled to hold the last group
    /// commit's writes (a Bind with a deadline wakes the scheduler once its write is durable,
    /// and the scheduler looks again within a second anyway).
    pub fn next_deadline_ms(&self) -> Result<Option<i64>, StoreError> {
        self.read_unsettled(|trees| match trees.expiry.first()? {
            None => Ok(None),
            Some((key, _)) => Ok(Some(parse_expiry_key(&key)?.0)),
        })
    }
}

pub(super) fn decode_binding(
    entry: sled::Result<(sled::IVec, sled::IVec)>,
) -> Result<BindingRecord, StoreError> {
    let (key, value) = entry?;
    codec::decode(keys::BINDINGS, &key, &value)
}

fn parse_expiry_key(key: &[u8]) -> Result<(i64, BindingId), StoreError> {
    parse_timed_key(keys::EXPIRY, key)
}

pub(super) fn parse_timed_key(
    tree: &'static str,
    key: &[u8],
) -> Result<(i64, BindingId), StoreError> {
    keys::parse_timed(key).ok_or_else(|| StoreError::Corrupt {
        tree,
        detail: format!("malformed key {}", keys::describe(key)),
    })
}

/// Entries per batch that [`Store::for_each_slot`]'s walker hands over, and batches it may be
/// ahead by: enough to keep both threads busy, little memory.
const SLOT_BATCH: usize = 1024;
const SLOT_BATCHES_AHEAD: usize = 4;

type SlotEntries = Vec<sled::Result<(sled::IVec, sled::IVec)>>;

/// Sends `scan`'s entries in batches until it ends, fails (the error is the batch's last
/// entry) or nobody receives any more (the reader stopped at a bad entry).
fn walk_in_batches(scan: sled::Iter, batches: &std::sync::mpsc::SyncSender<SlotEntries>) {
    let mut batch = Vec::with_capacity(SLOT_BATCH);
    for entry in scan {
        let failed = entry.is_err();
        batch.push(entry);
        if failed || batch.len() == SLOT_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(SLOT_BATCH));
            if batches.send(full).is_err() || failed {
                return;
            }
        }
    }
    let _ = batches.send(batch);
}
