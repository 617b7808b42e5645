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
//! size suits, a new one is built beside it (sized for twice the keys the last build found in
//! sled), and replaces it.
//!
//! A build reads every key of the tree, which brings each of its pages through sled's cache:
//! at a million request ids it took 1.7 s of a thread and left the daemon ~45 MiB larger. So a
//! clean close saves the filter ([`FILE`], with the number of the last record it covers), and
//! the next open takes it instead of building one when the store starts at that same record
//! (nothing written since, no log replayed). The file is removed as it is read: it is good
//! for that one start only.

use std::io::Write as _;
use std::path::Path;

use super::record::{Op, TreeId};

/// The file in the log's directory a clean close saves the filter to.
pub(in crate::store) const FILE: &str = "request-keys.filter";
/// What the file starts with (and its format's version).
const MAGIC: &[u8; 8] = b"xprkf\0\0\x01";
/// Its header: the magic, the last record covered, the keys taken, the size in bits.
const HEADER: usize = 8 + 8 + 8 + 8;

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
    /// Keys the last build read from sled (the saved filter's keys, when it was loaded): what
    /// the next one is sized by, twice over. Not the keys `current` took: those count every
    /// request id written since, also those gone again, and would grow the filter with the
    /// turnover, not with what the store holds.
    stored: u64,
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

    /// Tests: whether a filter is in use.
    #[cfg(test)]
    pub fn in_use(&self) -> bool {
        self.current.is_some()
    }

    /// Whether the builder has work: a build wanted and none under way.
    pub fn build_wanted(&self) -> bool {
        self.wanted && self.building.is_none()
    }

    /// Starts a build, sized for twice the keys the last one found: from now on noted keys go
    /// into it, and so do the `requests` keys pending now (`pending`), which sled may not hold
    /// yet when the build reads it. Returns its size in bits, for the filter the build reads
    /// sled's keys into.
    pub fn begin_build<'a>(&mut self, pending: impl IntoIterator<Item = &'a [u8]>) -> u64 {
        let mut bloom = Bloom::sized_for(self.stored.saturating_mul(2));
        for key in pending {
            bloom.insert(key);
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
            self.stored = read.keys();
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

impl RequestKeys {
    /// Saves the filter in use to [`FILE`] in `dir`, as covering every record up to `last`
    /// (a clean close: nothing is pending). Nothing is saved when no filter is built.
    pub fn save(&self, dir: &Path, last: u64) -> std::io::Result<()> {
        let Some(bloom) = &self.current else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(HEADER + bloom.words.len() * 8 + 4);
        bytes.extend_from_slice(MAGIC);
        for n in [last, bloom.keys, bloom.bits()] {
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        for word in &bloom.words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        let (path, partial) = (dir.join(FILE), dir.join(format!("{FILE}.partial")));
        let written = std::fs::File::create(&partial)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| std::fs::rename(&partial, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written
    }

    /// The filter a clean close saved in `dir`, if it covers exactly the records up to
    /// `last` (where the log starts now) and reads back whole; a new log's otherwise. The
    /// file is removed either way. Says why a file it found is not used.
    pub fn load(dir: &Path, last: u64) -> RequestKeys {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return RequestKeys::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the saved filter of request ids; building one");
                return RequestKeys::new();
            }
        };
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the saved filter of request ids");
        }
        match Bloom::parse(&bytes, last) {
            Ok(bloom) => RequestKeys {
                wanted: bloom.full(),
                stored: bloom.keys(),
                current: Some(bloom),
                ..RequestKeys::default()
            },
            Err(why) => {
                tracing::info!(path = %path.display(), why, "the saved filter of request ids is not used; building one");
                RequestKeys::new()
            }
        }
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

    /// A filter saved by [`RequestKeys::save`] as covering up to record `last`.
    fn parse(bytes: &[u8], last: u64) -> Result<Bloom, &'static str> {
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return Err("too short");
        };
        if body.len() < HEADER || &body[..8] != MAGIC {
            return Err("not a filter of this version");
        }
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err("checksum mismatch");
        }
        let number = |i: usize| le_u64(&body[8 * i..8 * i + 8]);
        let (saved_last, keys, bits) = (number(1), number(2), number(3));
        if saved_last != last {
            return Err("saved at another record than the log starts from");
        }
        let words = &body[HEADER..];
        if !bits.is_power_of_two() || bits < 64 || words.len() as u64 * 8 != bits {
            return Err("its size does not match its bits");
        }
        Ok(Bloom {
            words: words.chunks_exact(8).map(le_u64).collect(),
            keys,
        })
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

/// The little-endian `u64` in `bytes` (eight of them).
fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
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
    fn a_saved_filter_reads_back_whole_at_its_record_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = RequestKeys::new();
        let bits = keys.begin_build([]);
        let mut read = Bloom::with_bits(bits);
        read.insert(&request(1));
        keys.finish_build(&read);
        keys.save(dir.path(), 7).unwrap();
        let file = std::fs::read(dir.path().join(FILE)).unwrap();

        let loaded = RequestKeys::load(dir.path(), 7);
        assert!(!dir.path().join(FILE).exists(), "removed as it is read");
        assert!(loaded.in_use() && !loaded.build_wanted());
        assert!(loaded.may_hold(TreeId::Requests, &request(1)));
        assert!(!loaded.may_hold(TreeId::Requests, &request(2)));

        let unused = |bytes: &[u8], last: u64| {
            std::fs::write(dir.path().join(FILE), bytes).unwrap();
            let keys = RequestKeys::load(dir.path(), last);
            !keys.in_use() && keys.build_wanted()
        };
        assert!(unused(&file, 8), "another record");
        let mut flipped = file.clone();
        flipped[HEADER + 100] ^= 1;
        assert!(unused(&flipped, 7), "a changed bit");
        assert!(unused(&file[..file.len() - 1], 7), "cut short");
        assert!(unused(b"", 7));
        assert!(!unused(&file, 7), "the same file is used");
        // No filter in use: nothing saved.
        RequestKeys::new().save(dir.path(), 7).unwrap();
        assert!(!dir.path().join(FILE).exists());
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
        let bits = keys.begin_build([request(1).as_slice()]);
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
    fn a_full_filter_asks_for_a_new_one_and_keeps_answering_until_it_is_built() {
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

    #[test]
    fn a_build_is_sized_by_what_sled_held_at_the_last_one_not_by_the_turnover() {
        let mut keys = RequestKeys::new();
        let bits = keys.begin_build([]);
        let mut read = Bloom::with_bits(bits);
        read.keys = 2_000_000;
        keys.finish_build(&read);
        assert!(!keys.build_wanted(), "2M keys in 4 MiB: not full yet");
        // Request ids come and go: the filter takes 2M more and is full.
        keys.current.as_mut().unwrap().keys += 2_000_000;
        assert!(keys.note(&[write(request(1))]));
        // Sized for twice the 2M sled held: 96M bits, rounded up.
        assert_eq!(keys.begin_build([]), 1 << 27);
        let mut read = Bloom::with_bits(1 << 27);
        read.keys = 1_000_000;
        keys.finish_build(&read);
        keys.current.as_mut().unwrap().keys += 12_000_000;
        assert!(keys.note(&[write(request(2))]));
        assert_eq!(keys.begin_build([]), 1 << 26, "smaller again");
    }
}
