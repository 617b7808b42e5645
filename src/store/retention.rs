//! Retention's part of the store: deleting bindings that left service with every entry keyed by
//! them, forgetting their request ids, and the scans of the `released` and `remembered` indexes
//! that find what is due (the indexes themselves are kept by `bindings`, in the transaction that
//! writes the record). The rules of when are the lifecycle's (`lifecycle::retention`).

use super::bindings::{Write, decode_binding, parse_timed_key};
use super::records::{BindingId, BindingRecord, RequestRef};
use super::wal::{TreeId, Trees, Tx, TxResult};
use super::{Store, StoreError, codec, keys};

/// What a request id names: see [`Store::request_lookup`].
#[derive(Debug, Clone, PartialEq)]
pub enum RequestLookup {
    /// Nothing: a new request id.
    Unknown,
    /// The binding it belongs to.
    Live(Box<BindingRecord>),
    /// A binding that has ended and been deleted by retention; the request id stays taken.
    Ended(BindingId),
}

impl Tx<'_> {
    /// What (app, request_id) names, as [`Store::request_lookup`] does, seeing every write
    /// staged before this transaction (also one answered a moment ago that sled does not
    /// hold yet).
    pub fn request_lookup(&self, app: &str, request_id: &str) -> TxResult<RequestLookup> {
        let Ok(key) = keys::request(app, request_id) else {
            return Ok(RequestLookup::Unknown);
        };
        let Some(id) = self.request_owner(&key)? else {
            return Ok(RequestLookup::Unknown);
        };
        Ok(match self.get_binding(&id)? {
            Some(record)
                if record.app == app && record.request_id.as_deref() == Some(request_id) =>
            {
                RequestLookup::Live(Box::new(record))
            }
            Some(_) => RequestLookup::Unknown,
            None => RequestLookup::Ended(id),
        })
    }

    /// Deletes a binding that left service (RELEASED or EXPIRED) with every index entry of it,
    /// once its retention has passed. With `keep_request` its request id stays taken: the
    /// `requests` entry stays, naming an id whose record is gone, and its `remembered` entry
    /// becomes a tombstone, until [`Tx::forget_request`]. Returns whether a record was
    /// deleted; a binding that holds its slot is never deleted here.
    pub fn purge_binding(&self, id: &BindingId, keep_request: bool) -> TxResult<bool> {
        let Some(old) = self.get_binding(id)? else {
            return Ok(false);
        };
        if old.state.holds_slot() {
            return Ok(false);
        }
        self.remove(&old, keep_request)?;
        Ok(true)
    }

    /// Forgets the request id remembered for binding `id`, which left service at `left_ms`: the
    /// `requests` entry goes if it still names `id`, and the `remembered` entry (or tombstone)
    /// goes. A record still there keeps no request id, and is indexed in `released` instead.
    /// Returns whether there was one.
    pub fn forget_request(&self, left_ms: i64, id: &BindingId) -> TxResult<bool> {
        let live = keys::remembered(left_ms, id);
        let tombstone = keys::remembered_tombstone(left_ms, id);
        let (key, value) = match self.remembered.get(live)? {
            Some(value) => (live, value),
            None => match self.remembered.get(tombstone)? {
                Some(value) => (tombstone, value),
                None => return Ok(false),
            },
        };
        let entry: RequestRef = codec::decode(keys::REMEMBERED, &key, &value)?;
        let rewritten = match self.get_binding(id)? {
            // Not an entry a live binding can have; it keeps its request id.
            Some(record) if record.state.holds_slot() => false,
            Some(record)
                if record.app == entry.app
                    && record.request_id.as_deref() == Some(entry.request_id.as_str()) =>
            {
                // Drops the mapping (if it is still this binding's) and the live entry, and
                // indexes the record in `released`, as any change of a record's request id does.
                self.put_binding(&BindingRecord {
                    request_id: None,
                    ..record
                })?;
                true
            }
            _ => {
                if let Ok(request) = keys::request(&entry.app, &entry.request_id) {
                    self.release_request(&request, id)?;
                }
                false
            }
        };
        if !(rewritten && key == live) {
            self.remembered.delete(key);
        }
        Ok(true)
    }
}

impl Store {
    /// RELEASED and EXPIRED bindings without a request id that left service at or before
    /// `until_ms`, earliest first, at most `limit`: (left at ms, id), one range scan of the
    /// `released` index.
    pub fn released_until(
        &self,
        until_ms: i64,
        limit: usize,
        app: Option<&str>,
    ) -> Result<Vec<(i64, BindingId)>, StoreError> {
        self.timed_until(
            TreeId::Released,
            ..=keys::timed_bound(until_ms),
            until_ms,
            limit,
            app,
        )
    }

    /// Every RELEASED and EXPIRED binding whose record is kept and that left service at or
    /// before `until_ms`, earliest first, at most `limit`: (left at ms, id), from the
    /// `released` index and the live entries of `remembered` (what retention deletes).
    pub fn left_until(
        &self,
        until_ms: i64,
        limit: usize,
        app: Option<&str>,
    ) -> Result<Vec<(i64, BindingId)>, StoreError> {
        let mut due = self.released_until(until_ms, limit, app)?;
        let bound = ..=keys::timed_bound(until_ms);
        due.extend(self.timed_until(TreeId::Remembered, bound, until_ms, limit, app)?);
        due.sort_unstable();
        due.truncate(limit);
        Ok(due)
    }

    /// Request ids still remembered for bindings that left service at or before `until_ms`,
    /// earliest first, at most `limit`, of `app` only if given: (left at ms, id), from two
    /// range scans of the `remembered` index (its live entries, then its tombstones).
    pub fn remembered_until(
        &self,
        until_ms: i64,
        limit: usize,
        app: Option<&str>,
    ) -> Result<Vec<(i64, BindingId)>, StoreError> {
        let live = ..=keys::timed_bound(until_ms);
        let mut due = self.timed_until(TreeId::Remembered, live, until_ms, limit, app)?;
        let tombstones = keys::remembered_tombstone(0, &BindingId([0; 16]))
            ..=keys::remembered_tombstone_bound(until_ms);
        due.extend(self.timed_until(TreeId::Remembered, tombstones, until_ms, limit, app)?);
        due.sort_unstable();
        due.truncate(limit);
        Ok(due)
    }

    /// The entries of `tree` (`released` or `remembered`) in `range`, up to `until_ms`; with
    /// `app`, only that app's, found from the binding's record (`released`) or the entry
    /// (`remembered`).
    fn timed_until(
        &self,
        tree: TreeId,
        range: impl std::ops::RangeBounds<[u8; keys::TIMED_KEY_LEN]>,
        until_ms: i64,
        limit: usize,
        app: Option<&str>,
    ) -> Result<Vec<(i64, BindingId)>, StoreError> {
        if until_ms < 0 {
            return Ok(Vec::new());
        }
        let name = if tree == TreeId::Remembered {
            keys::REMEMBERED
        } else {
            keys::RELEASED
        };
        self.read(|trees| {
            let mut due = Vec::new();
            for entry in trees.tree(tree).range(range) {
                if due.len() == limit {
                    break;
                }
                let (key, value) = entry?;
                let (left, id) = if tree == TreeId::Remembered {
                    parse_remembered_key(&key).map(|(left, id, _)| (left, id))?
                } else {
                    parse_timed_key(name, &key)?
                };
                let Some(app) = app else {
                    due.push((left, id));
                    continue;
                };
                let of = if tree == TreeId::Remembered {
                    let entry: RequestRef = codec::decode(name, &key, &value)?;
                    entry.app
                } else {
                    let record_key = keys::binding(&id);
                    match trees.tree(TreeId::Bindings).get(record_key)? {
                        Some(record) => {
                            let record: BindingRecord =
                                codec::decode(keys::BINDINGS, &record_key, &record)?;
                            record.app
                        }
                        None => continue,
                    }
                };
                if of == app {
                    due.push((left, id));
                }
            }
            Ok(due)
        })
    }

    /// The binding whose request id (app, request_id) still is, though its record was deleted
    /// by retention: the request id stays taken until it is forgotten.
    pub fn purged_request(
        &self,
        app: &str,
        request_id: &str,
    ) -> Result<Option<BindingId>, StoreError> {
        Ok(match self.request_lookup(app, request_id)? {
            RequestLookup::Ended(id) => Some(id),
            RequestLookup::Unknown | RequestLookup::Live(_) => None,
        })
    }

    /// What (app, request_id) names in durable state, from one read of `requests` when it
    /// names nothing: the binding it belongs to, or the id of one retention deleted while the
    /// request id is still remembered. (A Bind looks its request id up in a transaction,
    /// [`Tx::request_lookup`], which sees a write answered a moment ago without waiting.)
    pub fn request_lookup(&self, app: &str, request_id: &str) -> Result<RequestLookup, StoreError> {
        let Ok(key) = keys::request(app, request_id) else {
            return Ok(RequestLookup::Unknown);
        };
        let Some(value) = self.get(TreeId::Requests, &key)? else {
            return Ok(RequestLookup::Unknown);
        };
        let id: BindingId = codec::decode(keys::REQUESTS, &key, &value)?;
        if let Some(record) = self.get_binding(&id)? {
            let owns = record.app == app && record.request_id.as_deref() == Some(request_id);
            return Ok(if owns {
                RequestLookup::Live(Box::new(record))
            } else {
                RequestLookup::Unknown
            });
        }
        // A removal takes the mapping out before the record: a mapping still there, naming the
        // same id, after its record was seen gone is a tombstone, not a removal half applied.
        let again = self.get(TreeId::Requests, &key)?;
        let still = again
            .map(|value| codec::decode::<BindingId>(keys::REQUESTS, &key, &value))
            .transpose()?;
        Ok(if still == Some(id) {
            RequestLookup::Ended(id)
        } else {
            RequestLookup::Unknown
        })
    }
}

/// Reads a `remembered` key back into (left ms, id, whether it is a tombstone).
fn parse_remembered_key(key: &[u8]) -> Result<(i64, BindingId, bool), StoreError> {
    keys::parse_remembered(key).ok_or_else(|| StoreError::Corrupt {
        tree: keys::REMEMBERED,
        detail: format!("malformed key {}", keys::describe(key)),
    })
}

/// Migration to format 2: adds the `released` or `remembered` entry of every stored binding
/// that left service, directly to sled (see `store::migrate`). Returns how many it indexed.
pub(super) fn index_for_retention(trees: &Trees) -> Result<usize, StoreError> {
    index_bindings(trees, |write, _| {
        let mut indexed = 0;
        if let Some(key) = write.released_key {
            trees.released.insert(key, &[])?;
            indexed += 1;
        }
        if let Some((key, value)) = write.remembered {
            trees.remembered.insert(key, value)?;
            indexed += 1;
        }
        Ok(indexed)
    })
}

/// Format 4 → 5: a binding that left service with a request id had an entry in both `released`
/// and `remembered`; it keeps the `remembered` one only, and a `remembered` entry whose record
/// retention deleted becomes a tombstone. Runs again whole if cut short: a moved entry is
/// found no more. Returns how many entries it changed.
pub(super) fn one_retention_entry(trees: &Trees) -> Result<usize, StoreError> {
    let mut changed = 0;
    for entry in trees.remembered.range(..=keys::timed_bound(i64::MAX)) {
        let (key, value) = entry?;
        let (left, id, _) = parse_remembered_key(&key)?;
        if trees.bindings.contains_key(keys::binding(&id))? {
            if trees.released.remove(keys::released(left, &id))?.is_some() {
                changed += 1;
            }
        } else {
            trees
                .remembered
                .insert(keys::remembered_tombstone(left, &id), value)?;
            trees.remembered.remove(&key)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Format 2 → 3: maps the platform's subscription ids of the bindings already stored to them.
pub(super) fn index_subscriptions(trees: &Trees) -> Result<usize, StoreError> {
    index_bindings(trees, |_, record| {
        let Some(key) = super::bindings::subscription_key_of(record) else {
            return Ok(0);
        };
        trees.subscriptions.insert(key, codec::encode(&record.id))?;
        Ok(1)
    })
}

/// Format 3 → 4: every binding that holds a slot gets its `slots` entry with its value (they
/// were empty, and AXYB reservations on no X had none). The tree is rebuilt whole, so a
/// migration cut short runs again from the start.
pub(super) fn index_slots(trees: &Trees) -> Result<usize, StoreError> {
    trees.slots.clear()?;
    index_bindings(trees, |write, _| {
        let Some((key, value)) = write.slot else {
            return Ok(0);
        };
        trees.slots.insert(key, value)?;
        Ok(1)
    })
}

/// Runs `index` over every stored binding (sled directly, at open), summing what it counts.
fn index_bindings(
    trees: &Trees,
    mut index: impl FnMut(Write, &BindingRecord) -> Result<usize, StoreError>,
) -> Result<usize, StoreError> {
    let mut indexed = 0;
    for entry in trees.bindings.iter() {
        let record = decode_binding(entry)?;
        let write = Write::new(&record)?;
        indexed += index(write, &record)?;
    }
    Ok(indexed)
}
