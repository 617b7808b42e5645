//! Which Xs each party holds, in little memory.
//!
//! The index keeps one entry per live party, so with a million bindings this map is most of the
//! daemon's heap. A `HashMap<String, HashSet<String>>` costs about 280 bytes per party (two
//! string allocations and a hash table for, usually, one X). Here a phone number in canonical
//! form (`+` and up to 17 digits) packs into a `u64`, and a party holding one X is one
//! `u64 → u64` entry: about 20 bytes per party. Anything else is kept as exact text, so the
//! answers never change.

use std::collections::HashMap;

/// A phone number packed into a `u64` when it is `+` and 1–17 digits, else its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// digits as a number × 32 + digit count (the count keeps leading zeros apart).
    Packed(u64),
    Text(Box<str>),
}

impl Key {
    fn new(number: &str) -> Key {
        Self::pack(number).map_or_else(|| Key::Text(number.into()), Key::Packed)
    }

    fn pack(number: &str) -> Option<u64> {
        pack_number(number)
    }
}

/// A phone number as a `u64` when it is `+` and 1–17 digits: the digits as a number × 32 +
/// their count (the count keeps leading zeros apart); `None` for anything else.
pub fn pack_number(number: &str) -> Option<u64> {
    let digits = number.strip_prefix('+')?;
    if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(value * 32 + digits.len() as u64)
}

type Hasher = foldhash::fast::RandomState;

/// party → the Xs it holds. A party holds each X at most once (a set).
///
/// foldhash rather than SipHash: at start-up this map takes two inserts per live binding, and
/// SipHash was a large part of the start-up CPU.
#[derive(Debug, Default)]
pub struct PartyXs {
    /// A packed party holding one packed X, the common case: 16 bytes an entry.
    one: HashMap<u64, u64, Hasher>,
    /// Every other party: holding several Xs, or with a party or X that does not pack. A party
    /// is in one of the two maps, never both.
    many: HashMap<Key, Vec<Key>, Hasher>,
}

impl PartyXs {
    /// Records that `party` holds `x` (once: holding it again changes nothing).
    pub fn insert(&mut self, party: &str, x: &str) {
        let (party, x) = (Key::new(party), Key::new(x));
        if let Key::Packed(p) = party {
            if let Some(&held) = self.one.get(&p) {
                if x != Key::Packed(held) {
                    self.one.remove(&p);
                    self.many.insert(party, vec![Key::Packed(held), x]);
                }
                return;
            }
            if let Key::Packed(x) = x
                && !self.many.contains_key(&party)
            {
                self.one.insert(p, x);
                return;
            }
        }
        let held = self.many.entry(party).or_default();
        if !held.contains(&x) {
            held.push(x);
        }
    }

    /// Records that `party` no longer holds `x`.
    pub fn remove(&mut self, party: &str, x: &str) {
        let (party, x) = (Key::new(party), Key::new(x));
        if let (Key::Packed(p), Key::Packed(x)) = (&party, &x)
            && self.one.get(p) == Some(x)
        {
            self.one.remove(p);
            return;
        }
        if let Some(held) = self.many.get_mut(&party) {
            held.retain(|h| *h != x);
            if held.is_empty() {
                self.many.remove(&party);
            }
        }
    }

    /// Parties holding one X, the table that grows with the bindings.
    pub fn singles(&self) -> usize {
        self.one.len()
    }

    /// Makes room for `singles` parties holding one X, so that a start-up fills the table
    /// without growing it step by step.
    pub fn reserve(&mut self, singles: usize) {
        self.one.reserve(singles);
    }

    /// What `party` holds, looked up once for any number of `contains` checks.
    pub fn held(&self, party: &str) -> Held<'_> {
        let party = Key::new(party);
        if let Key::Packed(p) = party
            && let Some(&x) = self.one.get(&p)
        {
            return Held::One(x);
        }
        self.many
            .get(&party)
            .map_or(Held::Nothing, |xs| Held::Many(xs))
    }

    /// How many Xs `party` holds.
    pub fn count(&self, party: &str) -> usize {
        match self.held(party) {
            Held::Nothing => 0,
            Held::One(_) => 1,
            Held::Many(xs) => xs.len(),
        }
    }

    /// Whether `party` holds `x`.
    pub fn holds(&self, party: &str, x: &str) -> bool {
        self.held(party).contains(x)
    }

    /// Every party and the Xs it holds, sorted (to compare two maps built in another order).
    #[cfg(test)]
    pub fn digest(&self) -> String {
        let show = |k: &Key| format!("{k:?}");
        let mut all: Vec<(String, Vec<String>)> = self
            .one
            .iter()
            .map(|(p, x)| (show(&Key::Packed(*p)), vec![show(&Key::Packed(*x))]))
            .chain(self.many.iter().map(|(p, xs)| {
                let mut xs: Vec<String> = xs.iter().map(show).collect();
                xs.sort();
                (show(p), xs)
            }))
            .collect();
        all.sort();
        format!("{all:?}")
    }

    /// Parties holding at least one X.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.one.len() + self.many.len()
    }
}

/// The Xs of one party (see [`PartyXs::held`]).
pub enum Held<'a> {
    Nothing,
    One(u64),
    Many(&'a [Key]),
}

impl Held<'_> {
    /// Whether `x` is among them (a party holding nothing costs no packing of `x`).
    pub fn contains(&self, x: &str) -> bool {
        match self {
            Held::Nothing => false,
            Held::One(held) => Key::pack(x) == Some(*held),
            Held::Many(held) => held.contains(&Key::new(x)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_numbers_apart() {
        let numbers = [
            "+8613800000001",
            "+86013800000001",
            "+1",
            "+01",
            "+99999999999999999",
        ];
        let keys: Vec<Key> = numbers.iter().map(|n| Key::new(n)).collect();
        assert!(keys.iter().all(|k| matches!(k, Key::Packed(_))), "{keys:?}");
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        for text in [
            "8613800000001",
            "+",
            "+123456789012345678",
            "+86 138",
            "abc",
        ] {
            assert!(matches!(Key::new(text), Key::Text(_)), "{text}");
        }
    }

    #[test]
    fn holds_counts_and_forgets_like_a_set() {
        let mut xs = PartyXs::default();
        xs.insert("+861", "+8670001");
        xs.insert("+861", "+8670001");
        assert_eq!(xs.count("+861"), 1);
        xs.insert("+861", "X-text");
        xs.insert("+861", "+8670003");
        assert_eq!(xs.count("+861"), 3);
        assert!(xs.holds("+861", "X-text") && xs.holds("+861", "+8670003"));
        assert!(!xs.holds("+861", "+8670002") && !xs.holds("+862", "+8670001"));
        xs.remove("+861", "+8670001");
        xs.remove("+861", "X-text");
        assert_eq!(xs.count("+861"), 1);
        assert!(xs.holds("+861", "+8670003"));
        xs.remove("+861", "+8670009"); // not held: nothing changes
        assert_eq!(xs.count("+861"), 1);
        xs.remove("+861", "+8670003");
        assert_eq!((xs.count("+861"), xs.len()), (0, 0));
        xs.insert("party-as-text", "+8670001");
        assert!(xs.holds("party-as-text", "+8670001"));
        // A party that held several Xs and is down to none starts over as a one-X party.
        xs.insert("+863", "+8670001");
        xs.insert("+863", "+8670002");
        xs.remove("+863", "+8670001");
        xs.remove("+863", "+8670002");
        assert_eq!(xs.count("+863"), 0);
        xs.insert("+863", "+8670005");
        assert!(xs.holds("+863", "+8670005") && !xs.holds("+863", "+8670002"));
        assert_eq!(xs.len(), 2);
    }
}
