//! Changes that are logged but not yet in sled, for the transactions that run meanwhile.
//!
//! A change reaches sled only after its log record is on disk, so that sled never holds a change
//! the log could lose. Until then it sits here, and a transaction (which runs under the log's
//! lock, see `tx`) reads it before sled: the next write must see the one before it, durable or
//! not, or it would undo it. Plain reads of the store never look here: they see durable state,
//! once sled holds every write answered before them (`settle`, in the log's module).

use std::collections::BTreeMap;

use super::record::{Op, TreeId};
use super::request_keys::RequestKeys;

/// The latest pending change of one key: the record that made it, and the value (`None`: removed).
type Change = (u64, Option<Vec<u8>>);

/// Per tree, the newest change of each key not yet applied to sled.
#[derive(Debug, Default)]
pub(super) struct Pending {
    trees: [BTreeMap<Vec<u8>, Change>; TreeId::COUNT],
}

impl Pending {
    /// Records the changes of record `seq`.
    pub fn add(&mut self, seq: u64, ops: &[Op]) {
        for op in ops {
            self.trees[op.tree as usize].insert(op.key.clone(), (seq, op.value.clone()));
        }
    }

    /// Forgets the changes of record `seq`, now in sled, unless a later record changed the key
    /// again.
    pub fn applied(&mut self, seq: u64, ops: &[Op]) {
        for op in ops {
            let tree = &mut self.trees[op.tree as usize];
            if tree.get(&op.key).is_some_and(|(at, _)| *at <= seq) {
                tree.remove(&op.key);
            }
        }
    }

    /// The pending value of `key`: `None` if nothing is pending, `Some(None)` if it was removed.
    pub fn get(&self, tree: TreeId, key: &[u8]) -> Option<Option<&[u8]>> {
        self.trees[tree as usize]
            .get(key)
            .map(|(_, value)| value.as_deref())
    }

    /// The greatest key with a pending change in `tree` (removals included).
    pub fn last_key(&self, tree: TreeId) -> Option<&[u8]> {
        self.trees[tree as usize]
            .last_key_value()
            .map(|(key, _)| key.as_slice())
    }

    /// Every key with a pending change in `tree` (removals included).
    pub fn keys(&self, tree: TreeId) -> impl Iterator<Item = &[u8]> {
        self.trees[tree as usize].keys().map(Vec::as_slice)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.trees.iter().all(BTreeMap::is_empty)
    }
}

/// What a transaction reads before sled: the changes of an app's leader on their way to etcd
/// (cluster mode, `leader`), then the log's.
///
/// A leader's write is staged on top of everything this replica holds, so its next write must
/// see it first. The copy's writes (what etcd committed, on its way to sled) read the log's
/// pending changes only: they must see what this replica holds, not what a leader hopes to
/// commit (a leader's pending removal would hide the key the copy is removing).
#[derive(Debug, Clone, Copy)]
pub(super) struct Overlay<'a> {
    pub leader: Option<&'a Pending>,
    pub log: &'a Pending,
    /// Which `requests` keys sled may hold: a key it rules out, with no pending change, is
    /// not looked for in sled.
    pub request_keys: &'a RequestKeys,
}

impl<'a> Overlay<'a> {
    /// The pending value of `key`, the leader's first: `None` if nothing is pending,
    /// `Some(None)` if it was removed.
    pub fn get(&self, tree: TreeId, key: &[u8]) -> Option<Option<&'a [u8]>> {
        self.leader
            .and_then(|leader| leader.get(tree, key))
            .or_else(|| self.log.get(tree, key))
    }

    /// Whether sled may hold `key` of `tree` (false only where no pending change has it either).
    pub fn sled_may_hold(&self, tree: TreeId, key: &[u8]) -> bool {
        self.request_keys.may_hold(tree, key)
    }

    /// The greatest key with a pending change in `tree`, in either.
    pub fn last_key(&self, tree: TreeId) -> Option<&'a [u8]> {
        let leader = self.leader.and_then(|leader| leader.last_key(tree));
        leader.max(self.log.last_key(tree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &[u8], value: Option<&[u8]>) -> Op {
        Op {
            tree: TreeId::Slots,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn the_newest_change_wins_and_removals_show() {
        let mut pending = Pending::default();
        pending.add(1, &[op(b"b", Some(b"old")), op(b"c", Some(b"3"))]);
        pending.add(2, &[op(b"b", Some(b"new")), op(b"c", None)]);
        assert_eq!(pending.get(TreeId::Slots, b"b"), Some(Some(&b"new"[..])));
        assert_eq!(pending.get(TreeId::Slots, b"c"), Some(None));
        assert_eq!(pending.get(TreeId::Slots, b"a"), None);
        assert_eq!(pending.get(TreeId::Bindings, b"b"), None, "trees are apart");
    }

    #[test]
    fn applied_forgets_only_what_no_later_record_changed() {
        let mut pending = Pending::default();
        pending.add(1, &[op(b"a", Some(b"1")), op(b"b", Some(b"1"))]);
        pending.add(2, &[op(b"b", Some(b"2"))]);
        pending.applied(1, &[op(b"a", Some(b"1")), op(b"b", Some(b"1"))]);
        assert_eq!(pending.get(TreeId::Slots, b"a"), None);
        assert_eq!(pending.get(TreeId::Slots, b"b"), Some(Some(&b"2"[..])));
        pending.applied(2, &[op(b"b", Some(b"2"))]);
        assert!(pending.is_empty());
    }
}
