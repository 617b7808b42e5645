//! Writes that are logged but not yet in sled, and reads that see them.
//!
//! A write reaches sled only after its log record is on disk (see `wal`), so that sled never
//! holds a change the log could lose. Until then the change sits here, and every read of the
//! store looks here first: point reads take the pending value, scans merge the pending entries
//! of their range with sled's, key by key, the pending one winning.

use std::collections::BTreeMap;
use std::ops::Bound;

use sled::IVec;

use super::StoreError;
use super::wal::{Op, TreeId};

/// A key range, as sled and `BTreeMap` both take it.
pub type Range = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Pending changes of a range in key order (`None`: removed).
pub type Entries = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The latest pending change of one key: the record that made it, and the value (`None`: removed).
type Change = (u64, Option<Vec<u8>>);

/// Per tree, the newest change of each key not yet applied to sled.
#[derive(Debug, Default)]
pub struct Pending {
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
    pub fn get(&self, tree: TreeId, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.trees[tree as usize]
            .get(key)
            .map(|(_, value)| value.clone())
    }

    /// The pending changes in `range`, in key order.
    pub fn range(&self, tree: TreeId, range: &Range) -> Entries {
        self.trees[tree as usize]
            .range::<Vec<u8>, _>((range.0.as_ref(), range.1.as_ref()))
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.trees.iter().all(BTreeMap::is_empty)
    }
}

/// The range of keys starting with `prefix`.
pub fn prefix_range(prefix: &[u8]) -> Range {
    let mut end = prefix.to_vec();
    // The first key after every key with the prefix: bump the last byte that is not 0xff.
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

/// Sled's entries of a range merged with the pending changes of the same range.
pub struct Merged<I: Iterator> {
    sled: std::iter::Peekable<I>,
    pending: std::iter::Peekable<<Entries as IntoIterator>::IntoIter>,
}

impl<I> Merged<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    pub fn new(sled: I, pending: Entries) -> Self {
        Merged {
            sled: sled.peekable(),
            pending: pending.into_iter().peekable(),
        }
    }
}

impl<I> Iterator for Merged<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    type Item = Result<(IVec, IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_pending = match (self.sled.peek(), self.pending.peek()) {
                (_, None) => return self.sled.next().map(|e| e.map_err(StoreError::from)),
                (None, Some(_)) => true,
                (Some(Err(_)), Some(_)) => {
                    return self.sled.next().map(|e| e.map_err(StoreError::from));
                }
                (Some(Ok((sled_key, _))), Some((key, _))) => {
                    if sled_key.as_ref() == key.as_slice() {
                        self.sled.next(); // the pending change replaces it
                        true
                    } else {
                        key.as_slice() < sled_key.as_ref()
                    }
                }
            };
            if take_pending {
                let (key, value) = self.pending.next()?;
                match value {
                    Some(value) => return Some(Ok((IVec::from(key), IVec::from(value)))),
                    None => continue, // removed: hides sled's entry, if any
                }
            }
            return self.sled.next().map(|e| e.map_err(StoreError::from));
        }
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

    fn sled_entries(entries: &[(&[u8], &[u8])]) -> Vec<sled::Result<(IVec, IVec)>> {
        entries
            .iter()
            .map(|(k, v)| Ok((IVec::from(*k), IVec::from(*v))))
            .collect()
    }

    fn merged(
        sled: &[(&[u8], &[u8])],
        pending: &Pending,
        range: &Range,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        Merged::new(
            sled_entries(sled).into_iter(),
            pending.range(TreeId::Slots, range),
        )
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
    }

    #[test]
    fn pending_changes_win_and_removals_hide() {
        let mut pending = Pending::default();
        pending.add(
            1,
            &[op(b"b", Some(b"new")), op(b"c", None), op(b"e", Some(b"5"))],
        );
        let all = (Bound::Unbounded, Bound::Unbounded);
        let sled = [
            (&b"a"[..], &b"1"[..]),
            (b"b", b"old"),
            (b"c", b"3"),
            (b"d", b"4"),
        ];
        let got = merged(&sled, &pending, &all);
        let want: Vec<(Vec<u8>, Vec<u8>)> = [("a", "1"), ("b", "new"), ("d", "4"), ("e", "5")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, want);
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
        assert_eq!(pending.get(TreeId::Slots, b"b"), Some(Some(b"2".to_vec())));
        pending.applied(2, &[op(b"b", Some(b"2"))]);
        assert!(pending.is_empty());
    }

    #[test]
    fn prefix_ranges_cover_exactly_the_prefix() {
        let mut pending = Pending::default();
        let keys: [&[u8]; 6] = [b"ab", b"ab\x00", b"ab\xff\xff", b"ac", b"a", b"b"];
        pending.add(1, &keys.map(|k| op(k, Some(b"v"))));
        let got: Vec<Vec<u8>> = pending
            .range(TreeId::Slots, &prefix_range(b"ab"))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(got, [&b"ab"[..], b"ab\x00", b"ab\xff\xff"]);
        assert_eq!(prefix_range(b"\xff\xff").1, Bound::Unbounded);
        assert_eq!(prefix_range(b"a\xff").1, Bound::Excluded(b"b".to_vec()));
    }
}
