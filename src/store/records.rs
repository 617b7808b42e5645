//! The typed records xpool keeps in sled. Values are bincode-encoded behind a version byte
//! (see `codec`); adding a field means a new version, with the old layout kept in `legacy` and
//! migrated from there.

use serde::{Deserialize, Serialize};

use crate::platform::Mode;

/// A binding's id: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BindingId(pub [u8; 16]);

impl BindingId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        BindingId(*uuid::Uuid::now_v7().as_bytes())
    }

    /// Parses the hyphenated form that callers see.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|u| BindingId(*u.as_bytes()))
    }
}

impl Default for BindingId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for BindingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

/// Where a binding is in its life (DESIGN.md, "Lifecycle of a binding").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BindingState {
    /// Reserved locally; the upstream call is in flight or its outcome is unresolved.
    Pending,
    Active,
    /// An unbind is in flight or must be retried.
    Releasing,
    Released,
    Expired,
}

impl BindingState {
    /// True while the binding holds its slot (number, extension, party place).
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            BindingState::Pending | BindingState::Active | BindingState::Releasing
        )
    }
}

/// One binding, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub id: BindingId,
    /// Configured app name.
    pub app: String,
    pub mode: Mode,
    pub state: BindingState,
    /// The X number; empty only for an AXYB reservation before the platform chose X.
    pub x: String,
    /// AXE extension.
    pub extension: Option<String>,
    /// AXYB: the Y the platform chose for B.
    pub y: Option<String>,
    pub party_a: String,
    pub party_b: Option<String>,
    /// Area code of the chosen X (or the area asked of the platform, AXYB).
    pub area_code: String,
    /// The platform's subscriptionId once known (never for X mode).
    pub subscription_id: Option<String>,
    /// The caller's idempotency key.
    pub request_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Deadline; `None` never expires.
    pub expires_at_ms: Option<i64>,
    /// When it left the slot (Released / Expired), for cool-down.
    pub released_at_ms: Option<i64>,
    pub ttl_seconds: u64,
    /// The call options in force: the request's, completed with the app's defaults.
    pub call_options: CallOptionsRecord,
    pub user_data: Option<String>,
    /// Which rule chose the number, for people.
    pub reason: String,
}

impl BindingRecord {
    /// When a RELEASED or EXPIRED binding left service (`released_at_ms`, or its last update
    /// for a record written without one); `None` while it holds its slot. Retention counts from
    /// here.
    pub fn left_service_ms(&self) -> Option<i64> {
        (!self.state.holds_slot()).then(|| self.released_at_ms.unwrap_or(self.updated_at_ms))
    }
}

/// The value of a binding's `slots` entry, whose key names its app, X and id: what the
/// allocation index and X-mode routing need of a binding that holds a slot. Written in the
/// transaction that writes the record, so start-up rebuilds the index from these small values
/// instead of decoding every binding record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub state: BindingState,
    pub extension: Option<String>,
    pub y: Option<String>,
    pub party_a: String,
    pub party_b: Option<String>,
    /// The call options an X-mode call routed by this binding gets.
    pub max_call_minutes: Option<u32>,
    pub record: Option<bool>,
    pub record_hint_tone: Option<String>,
    pub last_minute_tone: Option<String>,
}

impl SlotRecord {
    /// The `slots` value of `record`.
    pub fn of(record: &BindingRecord) -> SlotRecord {
        let options = &record.call_options;
        SlotRecord {
            state: record.state,
            extension: record.extension.clone(),
            y: record.y.clone(),
            party_a: record.party_a.clone(),
            party_b: record.party_b.clone(),
            max_call_minutes: options.max_call_minutes,
            record: options.record,
            record_hint_tone: options.record_hint_tone.clone(),
            last_minute_tone: options.last_minute_tone.clone(),
        }
    }
}

/// A [`SlotRecord`] read in place, its strings borrowed from the stored bytes: start-up reads a
/// million of them. The same fields in the same order (bincode writes no names), which
/// `codec`'s tests pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SlotView<'a> {
    pub state: BindingState,
    #[serde(borrow)]
    pub extension: Option<&'a str>,
    #[serde(borrow)]
    pub y: Option<&'a str>,
    pub party_a: &'a str,
    #[serde(borrow)]
    pub party_b: Option<&'a str>,
    pub max_call_minutes: Option<u32>,
    pub record: Option<bool>,
    #[serde(borrow)]
    pub record_hint_tone: Option<&'a str>,
    #[serde(borrow)]
    pub last_minute_tone: Option<&'a str>,
}

impl From<SlotView<'_>> for SlotRecord {
    fn from(v: SlotView<'_>) -> Self {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        SlotRecord {
            state: v.state,
            extension: owned(v.extension),
            y: owned(v.y),
            party_a: v.party_a.to_owned(),
            party_b: owned(v.party_b),
            max_call_minutes: v.max_call_minutes,
            record: v.record,
            record_hint_tone: owned(v.record_hint_tone),
            last_minute_tone: owned(v.last_minute_tone),
        }
    }
}

/// A request id that is still remembered for a binding that left service (the value of a
/// `remembered` entry): what to remove from `requests` once it is forgotten, also after the
/// binding's record is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRef {
    pub app: String,
    pub request_id: String,
}

/// A binding's call options; `None` is not set (the platform's default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOptionsRecord {
    /// The platform's callDirection: 0 both ways, 1 only A calls B, 2 only B calls A.
    pub call_direction: Option<u8>,
    pub record: Option<bool>,
    /// Minutes; 0 is no limit.
    pub max_call_minutes: Option<u32>,
    pub record_hint_tone: Option<String>,
    pub last_minute_tone: Option<String>,
    pub caller_hint_tone: Option<String>,
    pub callee_hint_tone: Option<String>,
    pub callback_tone: Option<String>,
    pub private_sms: Option<bool>,
}

/// Whether a number may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NumberState {
    Active,
    /// No new bindings; existing ones live on.
    Draining,
    /// The platform reports it frozen or blacklisted.
    Frozen,
    /// No longer the app's.
    Removed,
}

/// One X number of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberRecord {
    pub app: String,
    pub number: String,
    pub area_code: String,
    pub state: NumberState,
    /// Set when the platform contradicted the local index about this number; reconciliation
    /// clears it.
    pub needs_reconcile: bool,
    pub updated_at_ms: i64,
    /// What the platform's status pushes last said (independent of `state`, which is ours).
    pub platform_status: PlatformStatus,
    /// The platform's cause code with an unavailable status.
    pub status_cause: Option<String>,
}

/// A number's status on the platform (notifications.md §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlatformStatus {
    #[default]
    Normal,
    Paused,
    Unavailable,
    BindingFrozen,
}
