//! The store as a replica of etcd (cluster mode, `docs/cluster.md`): applying etcd's revisions,
//! a full copy, and which keys are replicated at all.
//!
//! # Which keys are replicated
//! Every entry of every tree is, except the change feed (`changes`, which etcd carries as feed
//! entries and each replica numbers itself, below) and the local-only `meta` keys listed in
//! [`LOCAL_META`]: the store's format version, the write-ahead log's mark, the feed's floor and
//! this replica's own bookkeeping (`replica/…`). [`classify`] is the one place that decides;
//! a `meta` key it does not know is [`Class::Unknown`], which the leader's write path must refuse
//! (a test fails when the store writes such a key).
//!
//! # The write path: the log, not sled directly
//! Every write here is a store transaction ([`Store::commit`]): one write-ahead-log record per
//! call, durable before the call returns (and in sled for every plain read after it). A
//! separate path straight into sled would break "sled is never ahead of the log" (`wal`): a
//! crash would replay older log records over newer direct writes, and transactions running
//! meanwhile would not see the writes in order through the overlay. The price is one
//! `fdatasync` per applied batch, shared with every other writer by group commit; in exchange
//! a batch and the revision it brings the replica to are one record, so they survive a crash
//! together or not at all, and a replica that crashed resumes from the revision its sled holds.
//!
//! # The change feed
//! A feed entry added at etcd revision `R` as the `p`-th feed entry of that revision gets the
//! number `R × 128 + p` ([`feed_number`]; etcd allows 128 operations per transaction, so
//! `p < 128`). Every replica numbers the same whatever it was doing, including one that took a
//! full copy after some of the revision's entries were deleted, because `p` travels in the
//! entry's etcd key (`cluster::keys`). A local map in `meta` (`replica/feed/…`, both ways) ties
//! the entry's id (its etcd key below the feed prefix) to its number, so a deletion from etcd
//! finds the entry, and the leader's retention can name the etcd key of a number it deletes
//! ([`Store::feed_id_of`]).
//!
//! `Tx::next_change` hands out numbers above the newest entry. Applying entries here moves its
//! cached next number past them, so a number is never handed out twice on one replica. In
//! cluster mode nothing but this module writes `changes`: the leader's transactions still
//! append entries (numbered by `next_change`, provisional), but its write path turns them into
//! etcd feed puts and never applies them to sled; the numbers readers see are the ones given
//! here. The feed's floor (`feed/next`, local) becomes one past the greatest number deleted
//! here, as `Tx::delete_change` keeps it on a single node.
//!
//! # A full copy
//! [`Store::begin_full_copy`] marks the copy in progress in `meta` (durably) and clears every
//! replicated entry in bounded records; [`Store::copy_page`] writes a page of the snapshot;
//! [`Store::finish_full_copy`] records the snapshot's revision as applied and clears the mark.
//! A crash in between leaves the mark, [`Store::replica_state`] reports it, and the copy starts
//! again. Readers see the trees emptied and refilled meanwhile.

use super::wal::{Lane, TreeId, Tx, TxTree};
use super::{Store, StoreError, TxResult, calls::NEXT_CHANGE, codec, keys};

/// Feed entries one etcd revision can carry: etcd's default `--max-txn-ops`.
pub const FEED_PER_REVISION: u64 = 128;

/// The `meta` keys that stay on this replica: never written to etcd, never replaced by a copy.
/// An entry ending in `/` is a prefix. A new local key goes here, or `classify` calls it
/// unknown. (Start-up's table-size hints are job entries, `job/restore/sizes/<app>`, so they
/// are replicated: a replica that comes to lead the app sizes its tables from the leader's.)
pub const LOCAL_META: &[&[u8]] = &[
    keys::META_FORMAT,
    keys::META_WAL_APPLIED,
    keys::META_WAL_CLEAN,
    NEXT_CHANGE,
    REPLICA_PREFIX,
];

/// The `meta` keys that are replicated: the jobs' progress (`Store::put_meta`). An entry ending
/// in `/` is a prefix.
pub const REPLICATED_META: &[&[u8]] = &[JOB_PREFIX];

/// Where `Store::put_meta` keeps job-owned values (see `super::meta_key`).
const JOB_PREFIX: &[u8] = b"job/";
/// Every key of this module's bookkeeping.
const REPLICA_PREFIX: &[u8] = b"replica/";
/// The last etcd revision applied (u64 BE; absent: none).
const APPLIED: &[u8] = b"replica/applied";
/// A full copy at this revision (u64 BE) is under way.
const COPYING: &[u8] = b"replica/copying";
/// The feed's map, both ways.
const FEED_MAP: &[u8] = b"replica/feed/";
/// Feed id → number (u64 BE).
const FEED_BY_ID: &[u8] = b"replica/feed/id/";
/// Feed number (u64 BE) → id.
const FEED_BY_NUMBER: &[u8] = b"replica/feed/no/";

/// What replication does with a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Written to etcd under the data prefix and copied to every replica as is.
    Replicated,
    /// A change-feed entry: etcd carries it under the feed prefix, each replica numbers it.
    Feed,
    /// Kept by this replica alone.
    Local,
    /// A `meta` key nobody classified: a bug (the leader refuses to write it).
    Unknown,
}

/// Decides what replication does with `key` of `tree`.
pub fn classify(tree: TreeId, key: &[u8]) -> Class {
    let matches = |list: &[&[u8]]| {
        list.iter()
            .any(|known| key == *known || (known.ends_with(b"/") && key.starts_with(known)))
    };
    match tree {
        TreeId::Changes => Class::Feed,
        TreeId::Meta if matches(LOCAL_META) => Class::Local,
        TreeId::Meta if matches(REPLICATED_META) => Class::Replicated,
        TreeId::Meta => Class::Unknown,
        _ => Class::Replicated,
    }
}

/// The number of the `position`-th feed entry of etcd revision `revision`.
pub fn feed_number(revision: u64, position: u8) -> u64 {
    revision * FEED_PER_REVISION + u64::from(position)
}

/// One change of one etcd revision, as the store applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// A replicated entry written (`Some`) or removed (`None`).
    Data {
        tree: TreeId,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// A feed entry added: its id (its etcd key below the feed prefix), its place among its
    /// revision's feed entries (< 128) and the encoded `ChangeStored`.
    FeedPut {
        id: Vec<u8>,
        position: u8,
        change: Vec<u8>,
    },
    /// A feed entry removed.
    FeedDelete { id: Vec<u8> },
}

/// Every change of one etcd revision, in etcd's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaRevision {
    pub revision: u64,
    pub events: Vec<ReplicaEvent>,
}

/// One stored entry: its tree, key and value.
pub type Entry = (TreeId, Vec<u8>, Vec<u8>);

/// Where this replica stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaState {
    /// The last etcd revision applied (0: none, the copy must start with a full copy).
    pub applied: u64,
    /// A full copy at this revision started and did not finish: start one again.
    pub copying: Option<u64>,
}

impl Store {
    /// Where this replica stands (durable state).
    pub fn replica_state(&self) -> Result<ReplicaState, StoreError> {
        let meta = |key| {
            self.get(TreeId::Meta, key)?
                .map(|v| decode_u64(key, &v))
                .transpose()
        };
        Ok(ReplicaState {
            applied: meta(APPLIED)?.unwrap_or(0),
            copying: meta(COPYING)?,
        })
    }

    /// Applies every revision of `revisions` after the one applied (older ones are skipped, so
    /// applying a batch twice changes nothing) and records `through` (≥ the last of them: etcd
    /// may say no change of ours came between) as applied, in one record. Returns the revision
    /// applied now. Refused while a full copy is unfinished.
    pub async fn apply_revisions(
        &self,
        through: u64,
        revisions: &[ReplicaRevision],
    ) -> Result<u64, StoreError> {
        self.commit_in(Lane::Copy, |tx| {
            if tx.meta.get(COPYING)?.is_some() {
                return Err(StoreError::Conflict("a full copy is unfinished".into()));
            }
            let applied = tx_u64(tx, APPLIED)?.unwrap_or(0);
            let mut floor = Floor::default();
            for revision in revisions.iter().filter(|r| r.revision > applied) {
                for event in &revision.events {
                    apply_event(tx, revision.revision, event, &mut floor)?;
                }
            }
            floor.write(tx)?;
            let now = applied.max(through);
            tx.meta.insert(APPLIED, now.to_be_bytes())?;
            Ok(now)
        })
        .await
    }

    /// The id (etcd key below the feed prefix) of feed entry `number`, for a leader that
    /// deletes it (durable state).
    pub fn feed_id_of(&self, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let key = [FEED_BY_NUMBER, &number.to_be_bytes()].concat();
        Ok(self.get(TreeId::Meta, &key)?.map(|v| v.to_vec()))
    }

    /// Every entry of `class` as (tree, key, value), tree by tree in key order (durable
    /// state; reads everything: for tests and diagnostics).
    pub fn entries_of(&self, class: Class) -> Result<Vec<Entry>, StoreError> {
        self.read(|trees| {
            let mut out = Vec::new();
            for tree in TreeId::ALL {
                for entry in trees.tree(tree).iter() {
                    let (key, value) = entry?;
                    if classify(tree, &key) == class {
                        out.push((tree, key.to_vec(), value.to_vec()));
                    }
                }
            }
            Ok(out)
        })
    }
}

/// The greatest feed number deleted by one record, if any.
#[derive(Default)]
struct Floor(Option<u64>);

impl Floor {
    fn write(&self, tx: &Tx<'_>) -> TxResult<()> {
        let Some(deleted) = self.0 else {
            return Ok(());
        };
        let old = match tx.meta.get(NEXT_CHANGE)? {
            None => 0,
            Some(value) => codec::decode::<u64>(keys::META, NEXT_CHANGE, &value)?,
        };
        if deleted + 1 > old {
            tx.meta.insert(NEXT_CHANGE, codec::encode(&(deleted + 1)))?;
        }
        Ok(())
    }
}

fn apply_event(
    tx: &Tx<'_>,
    revision: u64,
    event: &ReplicaEvent,
    floor: &mut Floor,
) -> TxResult<()> {
    match event {
        ReplicaEvent::Data { tree, key, value } => {
            if classify(*tree, key) != Class::Replicated {
                return Err(StoreError::Corrupt {
                    tree: "etcd",
                    detail: format!("{tree:?} key {} is not replicated", keys::describe(key)),
                });
            }
            let tree = tx_tree(tx, *tree);
            match value {
                Some(value) => tree.insert(key, value),
                None => tree.remove(key).map(drop),
            }
        }
        ReplicaEvent::FeedPut {
            id,
            position,
            change,
        } => {
            if u64::from(*position) >= FEED_PER_REVISION {
                return Err(StoreError::Corrupt {
                    tree: "etcd",
                    detail: format!("feed entry {} at position {position}", keys::describe(id)),
                });
            }
            let number = feed_number(revision, *position);
            let key = by_id(id);
            if let Some(old) = tx_u64(tx, &key)?
                && old != number
            {
                // Written again (a writer's retry): numbered by its last write, as a full copy
                // (which sees only that) numbers it.
                tx.changes.remove(keys::change(old))?;
                tx.meta.remove(by_number(old))?;
            }
            tx.changes.insert(keys::change(number), change)?;
            tx.meta.insert(key, number.to_be_bytes())?;
            tx.meta.insert(by_number(number), id)?;
            if let Some(next) = tx.next_change.get() {
                tx.next_change.set(Some(next.max(number + 1)));
            }
            Ok(())
        }
        ReplicaEvent::FeedDelete { id } => {
            let key = by_id(id);
            let Some(number) = tx_u64(tx, &key)? else {
                return Ok(()); // never seen, or deleted already
            };
            tx.changes.remove(keys::change(number))?;
            tx.meta.remove(&key)?;
            tx.meta.remove(by_number(number))?;
            floor.0 = floor.0.max(Some(number));
            Ok(())
        }
    }
}

fn by_id(id: &[u8]) -> Vec<u8> {
    [FEED_BY_ID, id].concat()
}

fn by_number(number: u64) -> Vec<u8> {
    [FEED_BY_NUMBER, &number.to_be_bytes()].concat()
}

/// The transaction's view of `tree`.
fn tx_tree<'t, 'a>(tx: &'t Tx<'a>, tree: TreeId) -> &'t TxTree<'a> {
    match tree {
        TreeId::Bindings => &tx.bindings,
        TreeId::Requests => &tx.requests,
        TreeId::Numbers => &tx.numbers,
        TreeId::Expiry => &tx.expiry,
        TreeId::Slots => &tx.slots,
        TreeId::Open => &tx.open,
        TreeId::Meta => &tx.meta,
        TreeId::Released => &tx.released,
        TreeId::Remembered => &tx.remembered,
        TreeId::Calls => &tx.calls,
        TreeId::Sessions => &tx.sessions,
        TreeId::CallLinks => &tx.call_links,
        TreeId::Messages => &tx.messages,
        TreeId::MessageIds => &tx.message_ids,
        TreeId::Changes => &tx.changes,
        TreeId::Subscriptions => &tx.subscriptions,
    }
}

fn tx_u64(tx: &Tx<'_>, key: &[u8]) -> TxResult<Option<u64>> {
    tx.meta.get(key)?.map(|v| decode_u64(key, &v)).transpose()
}

fn decode_u64(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| StoreError::Corrupt {
        tree: keys::META,
        detail: format!("{} is {} bytes, not 8", keys::describe(key), value.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

mod full_copy;
#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
