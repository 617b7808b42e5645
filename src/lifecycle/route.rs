//! X mode: whom to connect when someone dials X. The platform keeps no X-mode bindings and asks
//! on every call (a Block `callin`); the answer comes from the bindings xpool holds, in memory.

use super::binding::BindingId;
use crate::store::{self, BindingRecord, BindingState, SlotRecord};

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

/// The routes of one X-mode app: (X, calling party) → where the call goes. Kept in step with
/// the app's bindings by every write (`AppPool::write`) and at start-up.
#[derive(Debug, Default)]
pub(super) struct Routes {
    by_caller: std::collections::HashMap<(String, String), CallRoute>,
}

impl Routes {
    /// Where a call from `caller` to `x` goes.
    pub fn get(&self, caller: &str, x: &str) -> Option<CallRoute> {
        self.by_caller
            .get(&(x.to_owned(), caller.to_owned()))
            .cloned()
    }

    /// Brings the table in step with one binding written: `before` → `after`.
    pub fn apply(&mut self, before: Option<&BindingRecord>, after: Option<&BindingRecord>) {
        if let Some(b) = before.filter(|b| routes(b)) {
            self.remove(b);
        }
        if let Some(b) = after.filter(|b| routes(b)) {
            self.insert(b);
        }
    }

    /// Start-up: the routes of a binding holding a slot on `x`, from its `slots` entry.
    pub fn restore(&mut self, x: &str, id: store::BindingId, slot: &SlotRecord) {
        if slot.state == BindingState::Active {
            self.insert_slot(x, id, slot);
        }
    }

    fn insert(&mut self, b: &BindingRecord) {
        self.insert_slot(&b.x, b.id, &SlotRecord::of(b));
    }

    fn insert_slot(&mut self, x: &str, id: store::BindingId, b: &SlotRecord) {
        let Some(party_b) = &b.party_b else { return };
        for (caller, callee) in [(&b.party_a, party_b), (party_b, &b.party_a)] {
            let route = CallRoute {
                binding_id: id.into(),
                callee: callee.clone(),
                max_call_minutes: b.max_call_minutes,
                record: b.record,
                record_hint_tone: b.record_hint_tone.clone(),
                last_minute_tone: b.last_minute_tone.clone(),
            };
            self.by_caller.insert((x.to_owned(), caller.clone()), route);
        }
    }

    /// Tests: every route, in (X, caller) order.
    #[cfg(test)]
    pub fn digest(&self) -> String {
        let sorted: std::collections::BTreeMap<_, _> = self.by_caller.iter().collect();
        format!("{sorted:?}")
    }

    fn remove(&mut self, b: &BindingRecord) {
        for party in std::iter::once(&b.party_a).chain(&b.party_b) {
            let key = (b.x.clone(), party.clone());
            // Only this binding's route: another binding may hold the key by now.
            if self
                .by_caller
                .get(&key)
                .is_some_and(|r| BindingId::from(b.id) == r.binding_id)
            {
                self.by_caller.remove(&key);
            }
        }
    }
}

/// Whether a binding routes calls: ACTIVE (X mode has no PENDING: nothing is asked of the
/// platform).
fn routes(b: &BindingRecord) -> bool {
    b.state == BindingState::Active
}
