//! What the call log hands its callers.

use crate::lifecycle::{Binding, BindingId, NumberStatus};

/// A call's or message's id: a UUID v7 taken when xpool first heard of it, so ids sort by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub [u8; 16]);

impl CallId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        CallId(*uuid::Uuid::now_v7().as_bytes())
    }

    /// Parses the hyphenated form that callers see.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|u| CallId(*u.as_bytes()))
    }
}

impl Default for CallId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

/// Whether a write stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// Already stored (a retried or repeated push): nothing changed.
    Duplicate,
}

/// What one CDR push stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeeCounts {
    pub stored: u32,
    pub duplicates: u32,
    /// Entries that name no call or no known app.
    pub skipped: u32,
}

/// Which calls (or messages, or events) a listing returns; every field set narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub app: Option<String>,
    pub binding_id: Option<BindingId>,
    /// A real number on either end.
    pub party: Option<String>,
    pub x: Option<String>,
    /// First seen at or after, in ms since the epoch.
    pub from_ms: Option<i64>,
    /// First seen before.
    pub to_ms: Option<i64>,
}

/// Where a call record's recording is (the CDR's `recordDomain`, bucket and object name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub domain: String,
    pub bucket: String,
    pub object: String,
}

/// One call: its CDR (when it arrived) and its events, joined by `sessionId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub id: CallId,
    pub app: String,
    pub session_id: String,
    /// The binding the call went through, when it could be told.
    pub binding_id: Option<BindingId>,
    pub subscription_id: Option<String>,
    /// The X number dialled.
    pub x: Option<String>,
    /// Who dialled X.
    pub caller: Option<String>,
    /// The real party the call was forwarded to.
    pub callee: Option<String>,
    /// The CDR's direction (0, 1, 2; see notifications.md §2.2).
    pub direction: Option<i64>,
    /// When the call reached X / was answered / ended (ms since the epoch).
    pub start_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Talk time in seconds (end − answer), 0 if never answered.
    pub duration_seconds: u64,
    /// The hang-up reason of the `disconnect` event (or the CDR's `ulFailReason`).
    pub state_code: Option<u32>,
    /// What `state_code` means (notifications.md §1.7).
    pub state_text: Option<String>,
    pub recording: Option<Recording>,
    /// Whether the CDR arrived.
    pub has_cdr: bool,
    pub events: Vec<CallEventEntry>,
    pub first_seen_ms: i64,
    pub updated_ms: i64,
}

/// One call event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEventEntry {
    pub call_id: CallId,
    pub app: String,
    pub session_id: String,
    /// The wire name: `callin`, `collectInfo`, `callout`, `alerting`, `answer`, `disconnect`.
    pub event_type: String,
    /// The event's own time (ms since the epoch), when it carried a parseable one.
    pub time_ms: Option<i64>,
    pub caller: Option<String>,
    pub called: Option<String>,
    pub state_code: Option<u32>,
    pub state_text: Option<String>,
    pub subscription_id: Option<String>,
    pub user_data: Option<String>,
    pub binding_id: Option<BindingId>,
    pub received_ms: i64,
}

/// Where a page of events stopped: the call and the index of the last event in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub call_id: CallId,
    pub index: u32,
}

/// One SMS notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: CallId,
    pub app: String,
    pub sms_identifier: String,
    /// `Notify` or `Block`.
    pub notification_mode: String,
    pub calling: Option<String>,
    pub called: Option<String>,
    pub x: Option<String>,
    pub binding_id: Option<BindingId>,
    pub subscription_id: Option<String>,
    pub time_ms: Option<i64>,
    /// Parts the carrier bills (GSM-7 160 / 153, UCS-2 70 / 67); from the platform's
    /// `splitNum` when there is no text.
    pub segments: u32,
    pub content: Option<String>,
    pub received_ms: i64,
}

/// What a change of the feed is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A binding became ACTIVE (a Bind).
    BindingBound,
    /// An ACTIVE binding's lifetime or options changed.
    BindingUpdated,
    /// Unbound.
    BindingReleased,
    BindingExpired,
    /// Found on the platform only and adopted by reconciliation.
    BindingAdopted,
    /// The platform changed a number's status.
    NumberStatus,
    /// A call event was stored.
    CallEvent,
    /// An SMS notification was stored.
    Message,
}

/// A number's status as the platform pushed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberStatusChange {
    pub number: String,
    pub status: NumberStatus,
    /// The platform's cause code (only for unavailable).
    pub cause: Option<String>,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in the feed: strictly increasing, the resume token.
    pub seq: u64,
    pub at_ms: i64,
    pub app: String,
    pub kind: ChangeKind,
    /// The binding after the change (binding kinds).
    pub binding: Option<Binding>,
    pub number: Option<NumberStatusChange>,
    pub call_event: Option<CallEventEntry>,
    pub message: Option<Message>,
}

/// Which changes a watcher wants; empty lists pass everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    pub apps: Vec<String>,
    pub kinds: Vec<ChangeKind>,
}

impl ChangeFilter {
    pub fn passes(&self, app: &str, kind: ChangeKind) -> bool {
        (self.apps.is_empty() || self.apps.iter().any(|a| a == app))
            && (self.kinds.is_empty() || self.kinds.contains(&kind))
    }
}

/// A stretch of the change feed read for a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePage {
    /// The changes that passed the filter, oldest first.
    pub changes: Vec<Change>,
    /// How far the feed was read (filtered-out changes included): where the next read starts,
    /// and the resume token once `changes` are delivered.
    pub cursor: u64,
}
