//! Every etcd key of cluster mode's data, in one place (`docs/cluster.md`, "Keys in etcd"), and
//! the mapping between them and the store's writes.
//!
//! Under the key prefix `P` (`key_prefix`, default `/xpool/`):
//!
//! | etcd key | value | store |
//! |---|---|---|
//! | `P d/<tree byte><store key>` | the store's encoded value | (tree, key), every replicated entry |
//! | `P f/<app>/<node_id>/<n>` | the store's encoding of `ChangeStored` | one change-feed entry |
//! | `P applied/<node_id>` | the revision the node has applied, u64 in decimal | none |
//!
//! `<tree byte>` is the write-ahead log's [`TreeId`] byte and `<store key>` the store's key
//! bytes unchanged. Which entries are replicated is the store's to say
//! ([`crate::store::replica::classify`]): the `changes` tree travels as feed entries, and the
//! local-only `meta` keys never leave the replica.
//!
//! `<n>` is 20 decimal digits (so keys sort numerically). The leader that writes a feed entry
//! chooses it as `group × 128 + index` ([`feed_n`]): `group` any number it never used before
//! for `(app, node_id)` while such keys may still exist, `index` the entry's place among the
//! feed entries of its etcd transaction (< 128, etcd's operation limit). Every replica numbers
//! the entry `revision × 128 + index`, reading `index` back from the key ([`feed_position`]),
//! so the numbering does not depend on which of the revision's entries are still there.

use xpool_etcd::{Event, EventKind, KeyValue};

use crate::store::TreeId;
use crate::store::replica::{Class, FEED_PER_REVISION, ReplicaEvent, classify};

/// Digits of a feed entry's `<n>`.
const FEED_N_DIGITS: usize = 20;

/// The keys of one cluster, under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: Vec<u8>,
}

/// What an etcd key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdKey<'k> {
    /// A replicated store entry.
    Data { tree: TreeId, key: &'k [u8] },
    /// A change-feed entry: its id (the key below `P f/`) and its place in its revision.
    Feed { id: &'k [u8], position: u8 },
    /// A node's applied revision.
    Applied { node_id: &'k [u8] },
    /// Another key: nothing the copy applies (leadership, the node registry, the prefix's
    /// other users).
    Other,
    /// Under `P d/` or `P f/` but malformed or not replicated: a writer's bug.
    Invalid(&'static str),
}

/// A store entry that is not written to etcd as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{tree:?} entries of this kind are not replicated as data ({class:?})")]
pub struct NotReplicated {
    pub tree: TreeId,
    pub class: Class,
}

impl Keys {
    /// The keys under `prefix` (`key_prefix`, e.g. `/xpool/`).
    pub fn new(prefix: impl Into<Vec<u8>>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The prefix itself: the copy watches every key under it.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn under(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = self.prefix.clone();
        parts.iter().for_each(|part| key.extend_from_slice(part));
        key
    }

    /// `P d/`: every replicated entry.
    pub fn data_prefix(&self) -> Vec<u8> {
        self.under(&[b"d/"])
    }

    /// `P f/`: every feed entry.
    pub fn feed_prefix(&self) -> Vec<u8> {
        self.under(&[b"f/"])
    }

    /// `P applied/`: every node's applied revision.
    pub fn applied_prefix(&self) -> Vec<u8> {
        self.under(&[b"applied/"])
    }

    /// `P d/<tree byte><key>`; refused for the feed and local-only entries.
    pub fn data(&self, tree: TreeId, key: &[u8]) -> Result<Vec<u8>, NotReplicated> {
        match classify(tree, key) {
            Class::Replicated => Ok(self.under(&[b"d/", &[tree as u8], key])),
            class => Err(NotReplicated { tree, class }),
        }
    }

    /// `P f/<app>/<node_id>/<n>`.
    pub fn feed(&self, app: &str, node_id: &str, n: u64) -> Vec<u8> {
        let n = format!("{n:0width$}", width = FEED_N_DIGITS);
        let parts: [&[u8]; 6] = [
            b"f/",
            app.as_bytes(),
            b"/",
            node_id.as_bytes(),
            b"/",
            n.as_bytes(),
        ];
        self.under(&parts)
    }

    /// The etcd key of the feed entry with id `id` (as `Store::feed_id_of` returns it).
    pub fn feed_key(&self, id: &[u8]) -> Vec<u8> {
        self.under(&[b"f/", id])
    }

    /// `P leader/<app>`: the app's leadership key, whose create revision fences its leader's
    /// writes.
    pub fn leader(&self, app: &str) -> Vec<u8> {
        self.under(&[b"leader/", app.as_bytes()])
    }

    /// `P applied/<node_id>`.
    pub fn applied(&self, node_id: &str) -> Vec<u8> {
        self.under(&[b"applied/", node_id.as_bytes()])
    }

    /// What `key` is.
    pub fn parse<'k>(&self, key: &'k [u8]) -> EtcdKey<'k> {
        let Some(rest) = key.strip_prefix(self.prefix.as_slice()) else {
            return EtcdKey::Other;
        };
        if let Some(data) = rest.strip_prefix(b"d/") {
            let Some((&byte, key)) = data.split_first() else {
                return EtcdKey::Invalid("a data key without a tree");
            };
            let Some(tree) = TreeId::from_byte(byte) else {
                return EtcdKey::Invalid("a data key of an unknown tree");
            };
            if classify(tree, key) != Class::Replicated {
                return EtcdKey::Invalid("a data key of an entry that is not replicated");
            }
            return EtcdKey::Data { tree, key };
        }
        if let Some(id) = rest.strip_prefix(b"f/") {
            return match id.rsplit(|b| *b == b'/').next().and_then(parse_n) {
                Some(n) if id.iter().filter(|b| **b == b'/').count() >= 2 => EtcdKey::Feed {
                    id,
                    position: feed_position(n),
                },
                _ => EtcdKey::Invalid("a feed key without <app>/<node_id>/<n>"),
            };
        }
        match rest.strip_prefix(b"applied/") {
            Some(node_id) => EtcdKey::Applied { node_id },
            None => EtcdKey::Other,
        }
    }

    /// The store's view of a watched event: `None` for keys the copy does not apply,
    /// `Some(Err)` for malformed ones under `P d/` and `P f/`.
    pub fn event(&self, event: &Event) -> Option<Result<ReplicaEvent, &'static str>> {
        self.kv(event.kind, &event.kv)
    }

    /// [`Keys::event`] for a key/value pair that exists (a full copy's snapshot).
    pub fn snapshot_entry(&self, kv: &KeyValue) -> Option<Result<ReplicaEvent, &'static str>> {
        self.kv(EventKind::Put, kv)
    }

    fn kv(&self, kind: EventKind, kv: &KeyValue) -> Option<Result<ReplicaEvent, &'static str>> {
        let put = kind == EventKind::Put;
        Some(Ok(match self.parse(&kv.key) {
            EtcdKey::Data { tree, key } => ReplicaEvent::Data {
                tree,
                key: key.to_vec(),
                value: put.then(|| kv.value.clone()),
            },
            EtcdKey::Feed { id, position } if put => ReplicaEvent::FeedPut {
                id: id.to_vec(),
                position,
                change: kv.value.clone(),
            },
            EtcdKey::Feed { id, .. } => ReplicaEvent::FeedDelete { id: id.to_vec() },
            EtcdKey::Invalid(why) => return Some(Err(why)),
            EtcdKey::Applied { .. } | EtcdKey::Other => return None,
        }))
    }
}

/// A feed entry's `<n>`: the `index`-th feed entry (< 128) of a leader's transaction, in a
/// group numbered `group` (see the module docs).
pub fn feed_n(group: u64, index: u8) -> u64 {
    debug_assert!(u64::from(index) < FEED_PER_REVISION, "index {index}");
    group * FEED_PER_REVISION + u64::from(index) % FEED_PER_REVISION
}

/// The place among its transaction's feed entries that `<n>` carries.
pub fn feed_position(n: u64) -> u8 {
    // Below 128, so the cast is exact.
    (n % FEED_PER_REVISION) as u8
}

/// A `P applied/<node_id>` value.
pub fn applied_value(revision: u64) -> String {
    revision.to_string()
}

/// Reads a `P applied/<node_id>` value back.
pub fn parse_applied(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn parse_n(text: &[u8]) -> Option<u64> {
    if text.len() != FEED_N_DIGITS || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
