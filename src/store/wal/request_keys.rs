//! Which keys the `requests` tree may hold: a Bloom filter over them, so that a Bind with a
//! fresh request id (nearly every Bind that has one) does not search sled for a key that is
//! not there, under the log's lock, twice (the lookup, then the reservation's check).
//!
//! The filter answers "perhaps" for every key the tree or a pending change holds, and "no" for
//! most others. It never forgets a key: a removed request id only costs a read, as before.
//! What keeps it whole:
//!
//! - every request key a transaction writes is noted under the log's lock, in the same step
//!   that makes the change visible to later transactions (the log's and a leader's pending
//!   changes, and records written again after a failure);
//! - what sled held before is read by a build, on the `xpool-requests` thread, into a filter
//!   that, from its start, also takes every key noted meanwhile and the keys pending at its
//!   start. Until the first build is done nothing is ruled out: every lookup reads sled.
//!
//! A filter fills up as request ids come and go, so once it has taken in more keys than its
//! size suits, a new one is built beside it (sized for as many keys), and replaces it.

use super::overlay::Pending;
use super::record::{Op, TreeId};

/// The smallest filter: 4 MiB, about 1 false "perhaps" in 50,000 at a million keys.
const MIN_BITS: u64 = 1 << 25;
/// The largest: 64 MiB, for some 20 million request ids.
const MAX_BITS: u64 = 1 << 29;
/// Bits per key a filter is sized for, and the fill past which it is rebuilt: at 24 bits
/// per key and six probes, 1 false "perhaps" in 8,500; at 12 (when it is rebuilt), 1 in 270.
const BITS_PER_KEY: u64 = 24;
const REBUILD_BITS_PER_KEY: u64 = 12;
/// Probes per key.
const PROBES: u64 = 6;

/// The log's view of the `requests` keys (kept in its state, under its lock).
#[derive(Debug, Default)]
pub(super) struct RequestKeys {
    /// In use: `None` until the first build is done.
    current: Option<Bloom>,
    /// A build under way: noted keys go here too.
    building: Option<Bloom>,
    /// A build is wanted (at start, and when `current` is full).
    wanted: bool,
    /// Builds finished.
    #[cfg(test)]
    pub builds: u64,
}

impl RequestKeys {
    /// A new log's: nothing ruled out, and a build wanted.
    pub fn new() -> Self {
        RequestKeys {
            wanted: true,
            ..RequestKeys::default()
        }
    }

    /// Whether `tree` may hold `key`: always, except for a `requests` key the filter rules out.
    pub fn may_hold(&self, tree: TreeId, key: &[u8]) -> bool {
        tree != TreeId::Requests
            || self
                .current
                .as_ref()
                .is_none_or(|bloom| bloom.may_hold(key))
    }

    /// Notes the request keys `ops` write (before any transaction can see them). Returns
    /// whether that made a build wanted (the builder is to be woken).
    #[must_use]
    pub fn note(&mut self, ops: &[Op]) -> bool {
        let was_wanted = self.build_wanted();
        let written = ops
            .iter()
            .filter(|op| op.tree == TreeId::Requests && op.value.is_some());
        for op in written {
            if let Some(bloom) = &mut self.current {
                bloom.insert(&op.key);
                self.wanted |= bloom.full();
            }
            if let Some(bloom) = &mut self.building {
                bloom.insert(&op.key);
            }
        }
        self.build_wanted() && !was_wanted
    }

    /// Whether the builder has work: a build wanted and none under way.
    pub fn build_wanted(&self) -> bool {
        self.wanted && self.building.is_none()
    }

    /// Starts a build, sized for the keys the filter in use took: from now on noted keys go
    /// into it, and so do the keys pending now (in `pending`), which sled may not hold yet
    /// when the build reads it. Returns its size in bits, for the filter the build reads
    /// sled's keys into.
    pub fn begin_build<'a>(&mut self, pending: impl IntoIterator<Item = &'a Pending>) -> u64 {
        let expected = self.current.as_ref().map_or(0, Bloom::keys);
        let mut bloom = Bloom::sized_for(expected);
        for pending in pending {
            for key in pending.keys(TreeId::Requests) {
                bloom.insert(key);
            }
        }
        let bits = bloom.bits();
        self.building = Some(bloom);
        self.wanted = false;
        bits
    }

    /// Ends the build with the keys it read from sled, and puts it in use.
    pub fn finish_build(&mut self, read: &Bloom) {
        if let Some(mut bloom) = self.building.take() {
            bloom.merge(read);
            if bloom.full() {
                self.wanted = true;
            }
            self.current = Some(bloom);
            #[cfg(test)]
            {
                self.builds += 1;
            }
        }
    }

    /// Drops a build that could not read sled; the filter in use stays, and a build is wanted
    /// again.
    pub fn abandon_build(&mut self) {
        self.building = None;
        self.wanted = true;
    }
}

/// A Bloom filter of byte strings, sized in a power of two bits.
#[derive(Debug, Clone)]
pub(super) struct Bloom {
    words: Vec<u64>,
    /// Keys inserted (counting repeats).
    keys: u64,
}

impl Bloom {
    /// A filter of about [`BITS_PER_KEY`] bits per key for `expected` keys.
    pub fn sized_for(expected: u64) -> Bloom {
        let bits = expected
            .saturating_mul(BITS_PER_KEY)
            .next_power_of_two()
            .clamp(MIN_BITS, MAX_BITS);
        Bloom::with_bits(bits)
    }

    /// A filter of `bits` bits (a power of two, at least 64).
    pub fn with_bits(bits: u64) -> Bloom {
        debug_assert!(bits.is_power_of_two() && bits >= 64);
        Bloom {
            words: vec![0; (bits / 64) as usize],
            keys: 0,
        }
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    /// Keys inserted.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Past the fill it is rebuilt at.
    fn full(&self) -> bool {
        self.keys.saturating_mul(REBUILD_BITS_PER_KEY) > self.bits() && self.bits() < MAX_BITS
    }

    pub fn insert(&mut self, key: &[u8]) {
        let mask = self.bits() - 1;
        for bit in probes(key, mask) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.keys += 1;
    }

    pub fn may_hold(&self, key: &[u8]) -> bool {
        let mask = self.bits() - 1;
        probes(key, mask).all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Adds every key of `other`, a filter of the same size.
    fn merge(&mut self, other: &Bloom) {
        debug_assert_eq!(self.words.len(), other.words.len());
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word |= theirs;
        }
        self.keys += other.keys;
    }
}

/// The bits `key` sets: [`PROBES`] positions from two halves of one 64-bit hash (Kirsch and
/// Mitzenmacher's double hashing).
fn probes(key: &[u8], mask: u64) -> impl Iterator<Item = u64> {
    let hash = hash(key);
    let (a, b) = (hash, hash.rotate_left(32) | 1);
    (0..PROBES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) & mask)
}

/// FNV-1a over the key, then a finalizer that spreads it over all 64 bits (from SplitMix64):
/// the same in every process, and quick for the short keys of `requests`.
fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: u64) -> Vec<u8> {
        format!("app\0request-{i}").into_bytes()
    }

    fn write(key: Vec<u8>) -> Op {
        Op {
            tree: TreeId::Requests,
            key,
            value: Some(b"id".to_vec()),
        }
    }

    #[test]
    fn a_filter_holds_every_key_it_took_and_rules_out_nearly_all_others() {
        let mut bloom = Bloom::with_bits(1 << 20);
        for i in 0..40_000 {
            bloom.insert(&request(i));
        }
        assert!((0..40_000).all(|i| bloom.may_hold(&request(i))));
        // 26 bits per key, six probes: about 1 in 13,600 by the formula.
        let false_hits = (40_000..140_000)
            .filter(|i| bloom.may_hold(&request(*i)))
            .count();
        assert!(
            false_hits < 50,
            "{false_hits} of 100,000 absent keys passed"
        );
    }

    #[test]
    fn nothing_is_ruled_out_before_the_first_build() {
        let keys = RequestKeys::new();
        assert!(keys.build_wanted());
        assert!(keys.may_hold(TreeId::Requests, &request(1)));
    }

    #[test]
    fn a_key_noted_during_a_build_or_pending_at_its_start_is_held_after_it() {
        let mut keys = RequestKeys::new();
        let mut pending = Pending::default();
        pending.add(1, &[write(request(1))]);
        let bits = keys.begin_build([&pending]);
        assert!(!keys.build_wanted(), "one build at a time");
        _ = keys.note(&[write(request(2))]);
        // What the build read from sled.
        let mut read = Bloom::with_bits(bits);
        read.insert(&request(3));
        keys.finish_build(&read);
        for i in 1..=3 {
            assert!(keys.may_hold(TreeId::Requests, &request(i)), "request {i}");
        }
        _ = keys.note(&[write(request(4))]);
        assert!(keys.may_hold(TreeId::Requests, &request(4)));
        let absent = (100..1_100)
            .filter(|i| keys.may_hold(TreeId::Requests, &request(*i)))
            .count();
        assert!(absent < 5, "{absent} of 1,000 absent keys passed");
        // Other trees are never ruled out.
        assert!(keys.may_hold(TreeId::Bindings, &request(100)));
    }

    #[test]
    fn a_removal_or_another_tree_is_not_noted() {
        let mut keys = RequestKeys::new();
        let bits = keys.begin_build([]);
        keys.finish_build(&Bloom::with_bits(bits));
        _ = keys.note(&[
            Op {
                tree: TreeId::Requests,
                key: request(1),
                value: None,
            },
            Op {
                tree: TreeId::Bindings,
                key: request(2),
                value: Some(vec![1]),
            },
        ]);
        assert!(!keys.may_hold(TreeId::Requests, &request(1)));
        assert!(!keys.may_hold(TreeId::Requests, &request(2)));
    }

    #[test]
    fn a_full_filter_asks_for_a_bigger_one_and_keeps_answering_until_it_is_built() {
        let mut keys = RequestKeys::new();
        keys.wanted = false;
        keys.current = Some(Bloom::with_bits(1 << 12));
        let fill = (1 << 12) / REBUILD_BITS_PER_KEY + 1;
        let ops: Vec<Op> = (0..fill - 1).map(|i| write(request(i))).collect();
        assert!(!keys.note(&ops));
        assert!(!keys.build_wanted());
        assert!(
            keys.note(&[write(request(fill - 1))]),
            "the builder is woken"
        );
        assert!(keys.build_wanted());
        assert_eq!(keys.begin_build([]), MIN_BITS);
        // Meanwhile the full one still answers, and a build that cannot read sled leaves it.
        assert!(keys.may_hold(TreeId::Requests, &request(7)));
        keys.abandon_build();
        assert!(keys.build_wanted());
        assert!(keys.may_hold(TreeId::Requests, &request(fill - 1)));
    }
}
