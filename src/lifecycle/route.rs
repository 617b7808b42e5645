//! X mode: whom to connect when someone dials X. The platform keeps no X-mode bindings and asks
//! on every call (a Block `callin`); the answer comes from the bindings xpool holds: which one,
//! from memory (the allocation index keeps, in X mode, the binding by which each party holds
//! its X: one table for the allocation rule and the routes), and whom to connect, from its
//! record.

use super::binding::BindingId;
use crate::store::{BindingRecord, BindingState};

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
