//! Which Xs each party holds, in little memory.
//!
//! The index keeps one entry per live party, so with a million bindings this map is most of the
//! daemon's heap. A `HashMap<String, HashSet<String>>` costs about 280 bytes per party (two
//! string allocations and a hash table for, usually, one X). Here a phone number in canonical
//! form (`+` and up to 17 digits) packs into a `u64`, and a party holding one X is one entry
//! of the packed party and the X's number in a small table of Xs: 12 bytes. Anything else is
//! kept as exact text, so the answers never change.
//!
//! In X mode the map also names the binding by which each party holds its X ([`Holder`]): that
//! is whom a call from the party to X goes by, so one table serves both the allocation rule and
//! call routing (28 bytes an entry, instead of this map and a route table of the same pairs).

use std::collections::HashMap;

/// The binding by which a party holds an X: the store's binding id, opaque here. Kept only by
/// a map made `PartyXs::with_holders`; elsewhere every holder is `NO_HOLDER`.
pub type Holder = [u8; 16];

/// The holder of a map that keeps none.
pub const NO_HOLDER: Holder = [0; 16];

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

/// party → the Xs it holds (and, made [`PartyXs::with_holders`], by which binding). A party
/// holds each X at most once (a set).
///
/// foldhash rather than SipHash: at start-up this map takes two inserts per live binding, and
/// SipHash was a large part of the start-up CPU.
#[derive(Debug, Default)]
pub struct PartyXs {
    /// A packed party holding one packed X, the common case.
    one: Singles,
    /// Every other party: holding several Xs, or with a party or X that does not pack. A party
    /// is in one of the two maps, never both.
    many: HashMap<Key, Vec<(Key, Holder)>, Hasher>,
}

/// The map of packed parties holding one packed X, with or without holders: without, an entry
/// is 12 bytes; with, 28. The party is the key ([`PartyKey`]); the X is its number in
/// [`XIds`], 4 bytes instead of 8, which also lets an entry align to 4 bytes (a held entry
/// was 32 bytes: 138 MB of table for 2.2M parties, 122 MB now).
#[derive(Debug, Default)]
struct Singles {
    map: SinglesMap,
    xs: XIds,
}

#[derive(Debug)]
enum SinglesMap {
    Plain(HashMap<PartyKey, u32, Hasher>),
    Held(HashMap<PartyKey, (u32, Holder), Hasher>),
}

impl Default for SinglesMap {
    fn default() -> Self {
        SinglesMap::Plain(HashMap::default())
    }
}

/// A packed party as a key of 4-byte alignment: the `u64` in two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartyKey([u32; 2]);

impl PartyKey {
    fn new(party: u64) -> Self {
        PartyKey([party as u32, (party >> 32) as u32])
    }

    fn get(self) -> u64 {
        u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)
    }
}

impl std::hash::Hash for PartyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.get());
    }
}

/// The Xs of the one-X table, each numbered at its first use. Numbers are never taken back: an
/// X that leaves the pool keeps its ~25 bytes here (a pool's Xs are few against its parties).
#[derive(Debug, Default)]
struct XIds {
    ids: HashMap<u64, u32, Hasher>,
    xs: Vec<u64>,
}

impl XIds {
    /// `x`'s number, given now if it has none; `None` once 2^32 Xs have one.
    fn id(&mut self, x: u64) -> Option<u32> {
        if let Some(&id) = self.ids.get(&x) {
            return Some(id);
        }
        let id = u32::try_from(self.xs.len()).ok()?;
        self.xs.push(x);
        self.ids.insert(x, id);
        Some(id)
    }

    fn x(&self, id: u32) -> u64 {
        self.xs[id as usize]
    }
}

impl Singles {
    fn get(&self, party: u64) -> Option<(u64, Holder)> {
        let party = PartyKey::new(party);
        let (id, holder) = match &self.map {
            SinglesMap::Plain(map) => (*map.get(&party)?, NO_HOLDER),
            SinglesMap::Held(map) => *map.get(&party)?,
        };
        Some((self.xs.x(id), holder))
    }

    /// Records `party` → `x`; false, with nothing changed, if `x` cannot be numbered (the
    /// caller keeps the party in the general map instead).
    #[must_use]
    fn insert(&mut self, party: u64, x: u64, holder: Holder) -> bool {
        let Some(id) = self.xs.id(x) else {
            return false;
        };
        let party = PartyKey::new(party);
        match &mut self.map {
            SinglesMap::Plain(map) => _ = map.insert(party, id),
            SinglesMap::Held(map) => _ = map.insert(party, (id, holder)),
        }
        true
    }

    /// Changes the holder of `party`'s entry (a map that keeps holders).
    fn set_holder(&mut self, party: u64, holder: Holder) {
        if let SinglesMap::Held(map) = &mut self.map
            && let Some(entry) = map.get_mut(&PartyKey::new(party))
        {
            entry.1 = holder;
        }
    }

    fn remove(&mut self, party: u64) {
        let party = PartyKey::new(party);
        match &mut self.map {
            SinglesMap::Plain(map) => _ = map.remove(&party),
            SinglesMap::Held(map) => _ = map.remove(&party),
        }
    }

    fn len(&self) -> usize {
        match &self.map {
            SinglesMap::Plain(map) => map.len(),
            SinglesMap::Held(map) => map.len(),
        }
    }

    fn reserve(&mut self, additional: usize) {
        match &mut self.map {
            SinglesMap::Plain(map) => map.reserve(additional),
            SinglesMap::Held(map) => map.reserve(additional),
        }
    }

    #[cfg(test)]
    fn entries(&self) -> Vec<(u64, u64, Holder)> {
        match &self.map {
            SinglesMap::Plain(map) => map
                .iter()
                .map(|(p, &x)| (p.get(), self.xs.x(x), NO_HOLDER))
                .collect(),
            SinglesMap::Held(map) => map
                .iter()
                .map(|(p, &(x, h))| (p.get(), self.xs.x(x), h))
                .collect(),
        }
    }
}

impl PartyXs {
    /// A map that also keeps, for each (party, X), the binding by which the party holds X.
    pub fn with_holders() -> Self {
        PartyXs {
            one: Singles {
                map: SinglesMap::Held(HashMap::default()),
                xs: XIds::default(),
            },
            many: HashMap::default(),
        }
    }

    fn keeps_holders(&self) -> bool {
        matches!(self.one.map, SinglesMap::Held(_))
    }

    /// `holder` as this map stores it: [`NO_HOLDER`] where holders are not kept.
    fn kept(&self, holder: Holder) -> Holder {
        if self.keeps_holders() {
            holder
        } else {
            NO_HOLDER
        }
    }

    /// Records that `party` holds `x` by binding `holder` (once: holding it again changes only
    /// the holder, where holders are kept).
    pub fn insert(&mut self, party: &str, x: &str, holder: Holder) {
        let holder = self.kept(holder);
        let (party, x) = (Key::new(party), Key::new(x));
        if let Key::Packed(p) = party {
            if let Some((held, by)) = self.one.get(p) {
                if x == Key::Packed(held) {
                    if by != holder {
                        self.one.set_holder(p, holder);
                    }
                } else {
                    self.one.remove(p);
                    self.many
                        .insert(party, vec![(Key::Packed(held), by), (x, holder)]);
                }
                return;
            }
            if let Key::Packed(x) = x
                && !self.many.contains_key(&party)
                && self.one.insert(p, x, holder)
            {
                return;
            }
        }
        let held = self.many.entry(party).or_default();
        match held.iter_mut().find(|(h, _)| *h == x) {
            Some((_, by)) => *by = holder,
            None => held.push((x, holder)),
        }
    }

    /// Records that `party` no longer holds `x` by binding `holder`. Where holders are kept,
    /// another binding's hold stays.
    pub fn remove(&mut self, party: &str, x: &str, holder: Holder) {
        let holder = self.kept(holder);
        let (party, x) = (Key::new(party), Key::new(x));
        if let (Key::Packed(p), Key::Packed(x)) = (&party, &x)
            && let Some((held, by)) = self.one.get(*p)
            && held == *x
        {
            if by == holder {
                self.one.remove(*p);
            }
            return;
        }
        if let Some(held) = self.many.get_mut(&party) {
            held.retain(|(h, by)| *h != x || *by != holder);
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
            && let Some((x, by)) = self.one.get(p)
        {
            return Held::One(x, by);
        }
        self.many
            .get(&party)
            .map_or(Held::Nothing, |xs| Held::Many(xs))
    }

    /// How many Xs `party` holds.
    pub fn count(&self, party: &str) -> usize {
        match self.held(party) {
            Held::Nothing => 0,
            Held::One(..) => 1,
            Held::Many(xs) => xs.len(),
        }
    }

    /// Whether `party` holds `x`.
    pub fn holds(&self, party: &str, x: &str) -> bool {
        self.held(party).contains(x)
    }

    /// The binding by which `party` holds `x`; `None` if it does not, or if holders are not
    /// kept.
    pub fn holder(&self, party: &str, x: &str) -> Option<Holder> {
        if !self.keeps_holders() {
            return None;
        }
        self.held(party).holder(x)
    }

    /// Every party and the Xs it holds (with their holders, where kept), sorted (to compare two
    /// maps built in another order).
    #[cfg(test)]
    pub fn digest(&self) -> String {
        let holders = self.keeps_holders();
        let show = |k: &Key, by: &Holder| match holders {
            true => format!("{k:?}@{}", hex(by)),
            false => format!("{k:?}"),
        };
        let mut all: Vec<(String, Vec<String>)> = self
            .one
            .entries()
            .into_iter()
            .map(|(p, x, by)| {
                (
                    format!("{:?}", Key::Packed(p)),
                    vec![show(&Key::Packed(x), &by)],
                )
            })
            .chain(self.many.iter().map(|(p, xs)| {
                let mut xs: Vec<String> = xs.iter().map(|(x, by)| show(x, by)).collect();
                xs.sort();
                (format!("{p:?}"), xs)
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

#[cfg(test)]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Xs of one party (see [`PartyXs::held`]).
pub enum Held<'a> {
    Nothing,
    One(u64, Holder),
    Many(&'a [(Key, Holder)]),
}

impl Held<'_> {
    /// Whether `x` is among them (a party holding nothing costs no packing of `x`).
    pub fn contains(&self, x: &str) -> bool {
        self.holder(x).is_some()
    }

    /// The holder of `x`, if it is among them.
    fn holder(&self, x: &str) -> Option<Holder> {
        match self {
            Held::Nothing => None,
            Held::One(held, by) => (Key::pack(x) == Some(*held)).then_some(*by),
            Held::Many(held) => {
                let x = Key::new(x);
                held.iter().find(|(h, _)| *h == x).map(|(_, by)| *by)
            }
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
    fn a_one_x_entry_is_12_bytes_or_28_with_its_holder() {
        // What the table costs per party, before hashbrown's control byte and free buckets.
        assert_eq!(std::mem::size_of::<(PartyKey, u32)>(), 12);
        assert_eq!(std::mem::size_of::<(PartyKey, (u32, Holder))>(), 28);
        // Each X is numbered once, and parties on it share the number.
        let mut xs = PartyXs::with_holders();
        xs.insert("+861", "+8670001", [1; 16]);
        xs.insert("+862", "+8670001", [2; 16]);
        xs.insert("+863", "+8670002", [3; 16]);
        assert_eq!(xs.one.xs.xs.len(), 2);
        assert_eq!(xs.held("+862").holder("+8670001"), Some([2; 16]));
        assert_eq!(xs.held("+863").holder("+8670002"), Some([3; 16]));
    }

    #[test]
    fn holds_counts_and_forgets_like_a_set() {
        let mut xs = PartyXs::default();
        xs.insert("+861", "+8670001", NO_HOLDER);
        xs.insert("+861", "+8670001", NO_HOLDER);
        assert_eq!(xs.count("+861"), 1);
        xs.insert("+861", "X-text", NO_HOLDER);
        xs.insert("+861", "+8670003", NO_HOLDER);
        assert_eq!(xs.count("+861"), 3);
        assert!(xs.holds("+861", "X-text") && xs.holds("+861", "+8670003"));
        assert!(!xs.holds("+861", "+8670002") && !xs.holds("+862", "+8670001"));
        xs.remove("+861", "+8670001", NO_HOLDER);
        xs.remove("+861", "X-text", NO_HOLDER);
        assert_eq!(xs.count("+861"), 1);
        assert!(xs.holds("+861", "+8670003"));
        xs.remove("+861", "+8670009", NO_HOLDER); // not held: nothing changes
        assert_eq!(xs.count("+861"), 1);
        xs.remove("+861", "+8670003", NO_HOLDER);
        assert_eq!((xs.count("+861"), xs.len()), (0, 0));
        xs.insert("party-as-text", "+8670001", NO_HOLDER);
        assert!(xs.holds("party-as-text", "+8670001"));
        // A party that held several Xs and is down to none starts over as a one-X party.
        xs.insert("+863", "+8670001", NO_HOLDER);
        xs.insert("+863", "+8670002", NO_HOLDER);
        xs.remove("+863", "+8670001", NO_HOLDER);
        xs.remove("+863", "+8670002", NO_HOLDER);
        assert_eq!(xs.count("+863"), 0);
        xs.insert("+863", "+8670005", NO_HOLDER);
        assert!(xs.holds("+863", "+8670005") && !xs.holds("+863", "+8670002"));
        assert_eq!(xs.len(), 2);
    }

    #[test]
    fn with_holders_it_names_the_binding_and_keeps_another_bindings_hold() {
        let (one, two) = ([1; 16], [2; 16]);
        let mut xs = PartyXs::with_holders();
        xs.insert("+861", "+8670001", one);
        xs.insert("+861", "X-text", two);
        xs.insert("text-party", "+8670001", two);
        assert_eq!(xs.holder("+861", "+8670001"), Some(one));
        assert_eq!(xs.holder("+861", "X-text"), Some(two));
        assert_eq!(xs.holder("text-party", "+8670001"), Some(two));
        assert_eq!(xs.holder("+861", "+8670002"), None);
        // Another binding's release leaves the hold as it is.
        xs.remove("+861", "+8670001", two);
        assert_eq!(xs.holder("+861", "+8670001"), Some(one));
        xs.remove("+861", "+8670001", one);
        assert_eq!(xs.holder("+861", "+8670001"), None);
        assert_eq!(xs.count("+861"), 1);
        // Down to one packed X again, in the small table, holder and all.
        xs.remove("+861", "X-text", two);
        xs.insert("+862", "+8670003", one);
        xs.remove("+862", "+8670003", two);
        assert_eq!(xs.holder("+862", "+8670003"), Some(one));
        assert_eq!(xs.singles(), 1);
        // Holding the same X again changes only the holder.
        xs.insert("+864", "+8670001", one);
        xs.insert("+864", "+8670001", two);
        assert_eq!(
            (xs.holder("+864", "+8670001"), xs.count("+864")),
            (Some(two), 1)
        );
        // Without holders, any release of the pair ends it, and no holder is named.
        let mut plain = PartyXs::default();
        plain.insert("+861", "+8670001", one);
        assert_eq!(plain.holder("+861", "+8670001"), None);
        plain.remove("+861", "+8670001", two);
        assert!(!plain.holds("+861", "+8670001"));
    }
}
