//! X mode: whom to connect when someone dials X. The platform keeps no X-mode bindings and asks
//! on every call (a Block `callin`); the answer comes from the bindings xpool holds, in memory.

use super::binding::BindingId;

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
