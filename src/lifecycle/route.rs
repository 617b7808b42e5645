//! X mode: whom to connect when someone dials X. The platform keeps no X-mode bindings and asks
//! on every call (a Block `callin`); the answer comes from the bindings xpool holds: which one,
//! from memory, and whom to connect, from its record.

use std::collections::HashMap;

use super::binding::BindingId;
use crate::alloc::pack_number as pack;
use crate::store::{self, BindingRecord, BindingState, SlotView};

/// Where an X-mode call goes: the binding whose party dialled X, and its other party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRoute {
    pub binding_id: BindingId,
    /// The party to connect.
    pub callee: String,
    /// Minutes of talk time; `None` or 0 is no limit.
    pub max_call_minutes: Option<u32>,
    pub record: Option<bool>,
    pub record_hint_tone: Option<String>,
    pub last_minute_tone: Option<String>,
}

/// The routes of one X-mode app: (X, calling party) → the binding whose party dialled X. Kept
/// in step with the app's bindings by every write (`AppPool::write`) and at start-up.
///
/// Two entries per ACTIVE binding, so with a million bindings this is the largest table of the
/// daemon: it holds only the binding's id, with X and the caller packed into `u64`s where they
/// are canonical phone numbers (32 bytes an entry, against some 170 bytes and three strings for
/// the whole route), and the rest of the route is read from the binding's record when a call
/// comes ([`CallRoute::of`]).
#[derive(Debug, Default)]
pub(super) struct Routes {
    packed: HashMap<(u64, u64), store::BindingId, Hasher>,
    /// Where X or the caller does not pack.
    text: HashMap<(Box<str>, Box<str>), store::BindingId, Hasher>,
}

type Hasher = foldhash::fast::RandomState;

impl Routes {
    /// The binding a call from `caller` to `x` goes by.
    pub fn get(&self, caller: &str, x: &str) -> Option<store::BindingId> {
        match (pack(x), pack(caller)) {
            (Some(x), Some(caller)) => self.packed.get(&(x, caller)).copied(),
            _ => self.text.get(&(x.into(), caller.into())).copied(),
        }
    }

    /// Routes whose numbers pack (a size to [`Routes::reserve`] at the next start-up).
    pub fn packed(&self) -> usize {
        self.packed.len()
    }

    /// Makes room for `packed` routes whose numbers pack.
    pub fn reserve(&mut self, packed: usize) {
        self.packed.reserve(packed);
    }

    /// Brings the table in step with one binding written: `before` → `after`.
    pub fn apply(&mut self, before: Option<&BindingRecord>, after: Option<&BindingRecord>) {
        if let Some(b) = before.filter(|b| routes(b)) {
            self.remove(b);
        }
        if let Some(b) = after.filter(|b| routes(b)) {
            self.insert(&b.x, b.id, &b.party_a, b.party_b.as_deref());
        }
    }

    /// Start-up: the routes of a binding holding a slot on `x`, from its `slots` entry.
    pub fn restore(&mut self, x: &str, id: store::BindingId, slot: &SlotView<'_>) {
        if slot.state == BindingState::Active {
            self.insert(x, id, slot.party_a, slot.party_b);
        }
    }

    fn insert(&mut self, x: &str, id: store::BindingId, party_a: &str, party_b: Option<&str>) {
        let Some(party_b) = party_b else { return };
        for caller in [party_a, party_b] {
            match (pack(x), pack(caller)) {
                (Some(x), Some(caller)) => _ = self.packed.insert((x, caller), id),
                _ => _ = self.text.insert((x.into(), caller.into()), id),
            }
        }
    }

    fn remove(&mut self, b: &BindingRecord) {
        for caller in std::iter::once(&b.party_a).chain(&b.party_b) {
            // Only this binding's route: another binding may hold the key by now.
            if self.get(caller, &b.x) != Some(b.id) {
                continue;
            }
            match (pack(&b.x), pack(caller)) {
                (Some(x), Some(caller)) => _ = self.packed.remove(&(x, caller)),
                _ => {
                    _ = self
                        .text
                        .remove(&(b.x.as_str().into(), caller.as_str().into()))
                }
            }
        }
    }

    /// Tests: every route, in (X, caller) order.
    #[cfg(test)]
    pub fn digest(&self) -> String {
        let packed: std::collections::BTreeMap<_, _> = self.packed.iter().collect();
        let text: std::collections::BTreeMap<_, _> = self.text.iter().collect();
        format!("{packed:?} {text:?}")
    }
}

impl CallRoute {
    /// The route of a call from `caller` to `x` by binding `b`, as its record says now: `None`
    /// unless it is ACTIVE on `x` with `caller` as one of its two parties.
    pub(super) fn of(b: &BindingRecord, caller: &str, x: &str) -> Option<CallRoute> {
        if !routes(b) || b.x != x {
            return None;
        }
        let party_b = b.party_b.as_deref()?;
        let callee = match caller {
            c if c == b.party_a => party_b,
            c if c == party_b => &b.party_a,
            _ => return None,
        };
        let options = &b.call_options;
        Some(CallRoute {
            binding_id: b.id.into(),
            callee: callee.to_owned(),
            max_call_minutes: options.max_call_minutes,
            record: options.record,
            record_hint_tone: options.record_hint_tone.clone(),
            last_minute_tone: options.last_minute_tone.clone(),
        })
    }
}

/// Whether a binding routes calls: ACTIVE (X mode has no PENDING: nothing is asked of the
/// platform).
fn routes(b: &BindingRecord) -> bool {
    b.state == BindingState::Active
}
