//! A binding as the pool hands it to callers: the domain's types, not the store's records.

use crate::platform::Mode;
use crate::platform::options::CallOptions;

/// A binding's id (a UUID v7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingId(pub(super) [u8; 16]);

impl BindingId {
    /// Parses the hyphenated form that callers see.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|u| BindingId(*u.as_bytes()))
    }
}

impl std::fmt::Display for BindingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

/// Where a binding is in its life (DESIGN.md, "Lifecycle of a binding").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingState {
    /// Reserved locally; the platform call is in flight or its outcome is unresolved.
    Pending,
    Active,
    /// An unbind is in flight or must be retried.
    Releasing,
    Released,
    Expired,
}

/// One binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub id: BindingId,
    pub app: String,
    pub mode: Mode,
    pub state: BindingState,
    /// Empty only for an AXYB reservation before the platform chose X.
    pub x: String,
    pub extension: Option<String>,
    /// AXYB: the Y the platform chose for B.
    pub y: Option<String>,
    pub party_a: String,
    pub party_b: Option<String>,
    pub area_code: String,
    pub subscription_id: Option<String>,
    pub request_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// `None` never expires.
    pub expires_at_ms: Option<i64>,
    pub released_at_ms: Option<i64>,
    pub ttl_seconds: u64,
    /// The options in force: the request's, completed with the app's defaults (those of the
    /// time of the Bind) and changed by UpdateBinding.
    pub call_options: CallOptions,
    pub user_data: Option<String>,
    /// Which rule chose the number, for people.
    pub reason: String,
}
