//! Which Xs each party holds, in little memory.
//!
//! The index keeps one entry per live party, so with a million bindings this map is most of the
//! daemon's heap. A `HashMap<String, HashSet<String>>` costs about 280 bytes per party (two
//! string allocations and a hash table for, usually, one X). Here a phone number in canonical
//! form (`+` and up to 17 digits) packs into a `u64`, and a party holding one X stores it inline:
//! about 60 bytes per party. Anything else is kept as exact text, so the answers never change.

use std::collections::HashMap;

/// A phone number packed into a `u64` when it is `+` and 1–17 digits, else its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// digits as a number × 32 + digit count (the count keeps leading zeros apart).
    Packed(u64),
    Text(Box<str>),
}

impl Key {
    fn new(number: &str) -> Key {
        Self::pack(number).map_or_else(|| Key::Text(number.into()), Key::Packed)
    }

    fn pack(number: &str) -> Option<u64> {
        let digits = number.strip_prefix('+')?;
        if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = digits.parse().ok()?;
        Some(value * 32 + digits.len() as u64)
    }
}

/// The Xs of one party: nearly always one.
#[derive(Debug)]
enum Xs {
    One(Key),
    Many(Vec<Key>),
}

/// party → the Xs it holds.
#[derive(Debug, Default)]
pub struct PartyXs {
    map: HashMap<Key, Xs>,
}

impl PartyXs {
    /// Records that `party` holds `x` (once: holding it again changes nothing).
    pub fn insert(&mut self, party: &str, x: &str) {
        let x = Key::new(x);
        match self.map.entry(Key::new(party)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Xs::One(x));
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => match slot.get_mut() {
                Xs::One(held) if *held == x => {}
                Xs::One(held) => {
                    let held = held.clone();
                    slot.insert(Xs::Many(vec![held, x]));
                }
                Xs::Many(held) => {
                    if !held.contains(&x) {
                        held.push(x);
                    }
                }
            },
        }
    }

    /// Records that `party` no longer holds `x`.
    pub fn remove(&mut self, party: &str, x: &str) {
        let (party, x) = (Key::new(party), Key::new(x));
        let empty = match self.map.get_mut(&party) {
            None => return,
            Some(Xs::One(held)) => *held == x,
            Some(Xs::Many(held)) => {
                held.retain(|h| *h != x);
                if let [last] = held.as_slice() {
                    let last = last.clone();
                    self.map.insert(party, Xs::One(last));
                    return;
                }
                held.is_empty()
            }
        };
        if empty {
            self.map.remove(&party);
        }
    }

    /// How many Xs `party` holds.
    pub fn count(&self, party: &str) -> usize {
        match self.map.get(&Key::new(party)) {
            None => 0,
            Some(Xs::One(_)) => 1,
            Some(Xs::Many(held)) => held.len(),
        }
    }

    /// Whether `party` holds `x`.
    pub fn holds(&self, party: &str, x: &str) -> bool {
        let x = Key::new(x);
        match self.map.get(&Key::new(party)) {
            None => false,
            Some(Xs::One(held)) => *held == x,
            Some(Xs::Many(held)) => held.contains(&x),
        }
    }

    /// Parties holding at least one X.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
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
    }
}
