//! Conversions of the call log's API (CallService, WatchService) between messages and the call
//! log's types, in the style of `convert`: every field of an incoming message is destructured,
//! so a new proto field does not compile until it is handled here.

use prost_types::Timestamp;

use super::convert::{self, number_status, timestamp};
use super::page::{self, Filters};
use super::pb;
use super::resume;
use crate::calls::{
    CallEventEntry, CallFilter, CallId, CallRecord, Change, ChangeFilter, ChangeKind, EventCursor,
    Message, NumberStatusChange, Recording,
};
use crate::lifecycle::PoolError;
use crate::platform::push::EventType;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PoolError {
    PoolError::invalid(field, message)
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A number for a message, which has no unsigned integers (AIP-141).
fn int32(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// The earliest and latest times a `google.protobuf.Timestamp` may hold (years 1 to 9999).
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// A request's timestamp in whole milliseconds since the epoch, rounded up: stored times are
/// whole milliseconds, so `t >= start` and `t < end` keep their meaning for a finer bound.
fn millis_ceil(field: &'static str, t: Timestamp) -> Result<i64, PoolError> {
    let Timestamp { seconds, nanos } = t;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
        return Err(invalid(
            field,
            "not a valid timestamp (years 1 to 9999, nanos 0 to 999,999,999)",
        ));
    }
    Ok(seconds * 1000 + i64::from(nanos.unsigned_abs().div_ceil(1_000_000)))
}

/// The filters of a listing of the call log, and the page it asks for; `P` is the position
/// the listing goes on after.
#[derive(Debug)]
pub struct CallPage<P> {
    pub filter: CallFilter,
    pub after: Option<P>,
    pub limit: usize,
    /// Makes the next page's token.
    pub filters: Filters,
}

/// The fields the three listings share, taken out of their requests.
struct Query {
    app: String,
    binding_id: String,
    party: String,
    x_number: String,
    start_time: Option<Timestamp>,
    end_time: Option<Timestamp>,
    page_size: i32,
    page_token: String,
}

impl Query {
    /// Checks the fields and reads the page token issued by `method` for the same filters;
    /// `position` reads the position the token holds.
    fn page<P>(
        self,
        method: &str,
        position: impl FnOnce(&str) -> Option<P>,
    ) -> Result<CallPage<P>, PoolError> {
        let Query {
            app,
            binding_id,
            party,
            x_number,
            start_time,
            end_time,
            page_size,
            page_token,
        } = self;
        let binding = match binding_id.as_str() {
            "" => None,
            id => Some(convert::binding_id("binding_id", id)?),
        };
        let from_ms = start_time
            .map(|t| millis_ceil("start_time", t))
            .transpose()?;
        let to_ms = end_time.map(|t| millis_ceil("end_time", t)).transpose()?;
        if let (Some(from), Some(to)) = (from_ms, to_ms)
            && to <= from
        {
            return Err(invalid("end_time", "must be after start_time"));
        }
        let limit = page::page_size(page_size)?;
        let ms = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
        let filters = Filters::new(
            method,
            &[
                &app,
                &binding_id,
                &party,
                &x_number,
                &ms(from_ms),
                &ms(to_ms),
            ],
        );
        let after = match filters.position(&page_token)? {
            None => None,
            Some(p) => Some(
                position(&p)
                    .ok_or_else(|| invalid("page_token", "not a page token of this call"))?,
            ),
        };
        Ok(CallPage {
            filter: CallFilter {
                app: opt(app),
                binding_id: binding,
                party: opt(party),
                x: opt(x_number),
                from_ms,
                to_ms,
            },
            after,
            limit,
            filters,
        })
    }
}

/// Where ListCallEvents goes on: `<call id>/<index of the event in the call>`.
pub fn event_position(cursor: &EventCursor) -> String {
    format!("{}/{}", cursor.call_id, cursor.index)
}

/// Where the next page of events starts: after the last event of `page`, whose place in its
/// call is counted (events of one call are listed together, in order, each call's from its
/// first unless the page goes on after `after` in the same call).
pub fn next_event_cursor(
    after: Option<EventCursor>,
    page: &[CallEventEntry],
) -> Option<EventCursor> {
    let last = page.last()?;
    let on_page = page.iter().filter(|e| e.call_id == last.call_id).count();
    let before = after
        .filter(|a| a.call_id == last.call_id)
        .map_or(0, |a| a.index.saturating_add(1));
    let on_page = u32::try_from(on_page).unwrap_or(u32::MAX);
    Some(EventCursor {
        call_id: last.call_id,
        index: before.saturating_add(on_page - 1),
    })
}

fn parse_event_position(p: &str) -> Option<EventCursor> {
    let (call, index) = p.split_once('/')?;
    Some(EventCursor {
        call_id: CallId::parse(call)?,
        index: index.parse().ok()?,
    })
}

impl TryFrom<pb::ListCallRecordsRequest> for CallPage<CallId> {
    type Error = PoolError;

    fn try_from(r: pb::ListCallRecordsRequest) -> Result<Self, PoolError> {
        let pb::ListCallRecordsRequest {
            app,
            binding_id,
            party,
            x_number,
            start_time,
            end_time,
            page_size,
            page_token,
        } = r;
        Query {
            app,
            binding_id,
            party,
            x_number,
            start_time,
            end_time,
            page_size,
            page_token,
        }
        .page("ListCallRecords", CallId::parse)
    }
}

impl TryFrom<pb::ListCallEventsRequest> for CallPage<EventCursor> {
    type Error = PoolError;

    fn try_from(r: pb::ListCallEventsRequest) -> Result<Self, PoolError> {
        let pb::ListCallEventsRequest {
            app,
            binding_id,
            party,
            x_number,
            start_time,
            end_time,
            page_size,
            page_token,
        } = r;
        Query {
            app,
            binding_id,
            party,
            x_number,
            start_time,
            end_time,
            page_size,
            page_token,
        }
        .page("ListCallEvents", parse_event_position)
    }
}

impl TryFrom<pb::ListMessagesRequest> for CallPage<CallId> {
    type Error = PoolError;

    fn try_from(r: pb::ListMessagesRequest) -> Result<Self, PoolError> {
        let pb::ListMessagesRequest {
            app,
            binding_id,
            party,
            x_number,
            start_time,
            end_time,
            page_size,
            page_token,
        } = r;
        Query {
            app,
            binding_id,
            party,
            x_number,
            start_time,
            end_time,
            page_size,
            page_token,
        }
        .page("ListMessages", CallId::parse)
    }
}

/// Where a Watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// After the last change stored when the Watch began.
    Now,
    /// From the oldest change kept.
    Oldest,
    /// After change `seq` (a resume token).
    After(u64),
}

/// A Watch as asked for: which changes, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStart {
    pub filter: ChangeFilter,
    pub from: WatchFrom,
    /// The request's token, for the metadata of errors about it.
    pub resume_token: String,
}

impl TryFrom<pb::WatchRequest> for WatchStart {
    type Error = PoolError;

    fn try_from(r: pb::WatchRequest) -> Result<Self, PoolError> {
        let pb::WatchRequest {
            apps,
            kinds,
            resume_token,
            from_oldest,
        } = r;
        if let Some(i) = apps.iter().position(String::is_empty) {
            return Err(invalid(format!("apps[{i}]"), "must not be empty"));
        }
        let kinds = kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                change_kind(k)
                    .ok_or_else(|| invalid(format!("kinds[{i}]"), format!("not a watch kind: {k}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let from = match (resume_token.as_str(), from_oldest) {
            ("", false) => WatchFrom::Now,
            ("", true) => WatchFrom::Oldest,
            (_, true) => {
                return Err(invalid(
                    "from_oldest",
                    "only without a resume_token (which says where to start)",
                ));
            }
            (token, false) => WatchFrom::After(resume::position(token)?),
        };
        Ok(WatchStart {
            filter: ChangeFilter { apps, kinds },
            from,
            resume_token,
        })
    }
}

/// The kind a request's `kinds` value names; `None` for UNSPECIFIED and unknown values.
fn change_kind(value: i32) -> Option<ChangeKind> {
    Some(match pb::WatchKind::try_from(value).ok()? {
        pb::WatchKind::Unspecified => return None,
        pb::WatchKind::BindingBound => ChangeKind::BindingBound,
        pb::WatchKind::BindingUpdated => ChangeKind::BindingUpdated,
        pb::WatchKind::BindingReleased => ChangeKind::BindingReleased,
        pb::WatchKind::BindingExpired => ChangeKind::BindingExpired,
        pb::WatchKind::BindingAdopted => ChangeKind::BindingAdopted,
        pb::WatchKind::NumberStatus => ChangeKind::NumberStatus,
        pb::WatchKind::CallEvent => ChangeKind::CallEvent,
        pb::WatchKind::Message => ChangeKind::Message,
    })
}

pub fn watch_kind(k: ChangeKind) -> pb::WatchKind {
    match k {
        ChangeKind::BindingBound => pb::WatchKind::BindingBound,
        ChangeKind::BindingUpdated => pb::WatchKind::BindingUpdated,
        ChangeKind::BindingReleased => pb::WatchKind::BindingReleased,
        ChangeKind::BindingExpired => pb::WatchKind::BindingExpired,
        ChangeKind::BindingAdopted => pb::WatchKind::BindingAdopted,
        ChangeKind::NumberStatus => pb::WatchKind::NumberStatus,
        ChangeKind::CallEvent => pb::WatchKind::CallEvent,
        ChangeKind::Message => pb::WatchKind::Message,
    }
}

/// The event type of a wire name (`callin`, …); UNSPECIFIED for one this version does not know.
fn event_type(name: &str) -> pb::CallEventType {
    const TYPES: [(EventType, pb::CallEventType); 6] = [
        (EventType::Callin, pb::CallEventType::Callin),
        (EventType::CollectInfo, pb::CallEventType::CollectInfo),
        (EventType::Callout, pb::CallEventType::Callout),
        (EventType::Alerting, pb::CallEventType::Alerting),
        (EventType::Answer, pb::CallEventType::Answer),
        (EventType::Disconnect, pb::CallEventType::Disconnect),
    ];
    TYPES
        .iter()
        .find(|(wire, _)| wire.as_str() == name)
        .map_or(pb::CallEventType::Unspecified, |&(_, t)| t)
}

impl From<Change> for pb::WatchEvent {
    fn from(c: Change) -> pb::WatchEvent {
        use pb::watch_event::Payload;
        let Change {
            seq,
            at_ms,
            app,
            kind,
            binding,
            number,
            call_event,
            message,
        } = c;
        let payload = match kind {
            ChangeKind::BindingBound
            | ChangeKind::BindingUpdated
            | ChangeKind::BindingReleased
            | ChangeKind::BindingExpired
            | ChangeKind::BindingAdopted => binding.map(|b| Payload::Binding(b.into())),
            ChangeKind::NumberStatus => number.map(|n| Payload::NumberStatus(n.into())),
            ChangeKind::CallEvent => call_event.map(|e| Payload::CallEvent(e.into())),
            ChangeKind::Message => message.map(|m| Payload::Message(m.into())),
        };
        pb::WatchEvent {
            resume_token: resume::token(seq),
            kind: watch_kind(kind).into(),
            app,
            event_time: Some(timestamp(at_ms)),
            payload,
        }
    }
}

impl From<NumberStatusChange> for pb::NumberStatusChange {
    fn from(n: NumberStatusChange) -> pb::NumberStatusChange {
        let NumberStatusChange {
            number,
            status,
            cause,
        } = n;
        pb::NumberStatusChange {
            number,
            status: number_status(status).into(),
            cause: cause.unwrap_or_default(),
        }
    }
}

impl From<CallRecord> for pb::CallRecord {
    fn from(c: CallRecord) -> pb::CallRecord {
        let CallRecord {
            id,
            app,
            session_id,
            binding_id,
            subscription_id,
            x,
            caller,
            callee,
            direction,
            start_ms,
            answer_ms,
            end_ms,
            duration_seconds,
            state_code,
            state_text,
            recording,
            has_cdr,
            events,
            first_seen_ms,
            updated_ms,
        } = c;
        pb::CallRecord {
            call_id: id.to_string(),
            app,
            session_id,
            binding_id: binding_id.map(|b| b.to_string()).unwrap_or_default(),
            subscription_id: subscription_id.unwrap_or_default(),
            x_number: x.unwrap_or_default(),
            caller: caller.unwrap_or_default(),
            callee: callee.unwrap_or_default(),
            direction: direction.map(|d| d.clamp(i32::MIN.into(), i32::MAX.into()) as i32),
            start_time: start_ms.map(timestamp),
            answer_time: answer_ms.map(timestamp),
            end_time: end_ms.map(timestamp),
            duration: Some(prost_types::Duration {
                seconds: i64::try_from(duration_seconds).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            state_code: state_code.map(int32),
            state_text: state_text.unwrap_or_default(),
            recording: recording.map(Into::into),
            has_cdr,
            events: events.into_iter().map(Into::into).collect(),
            create_time: Some(timestamp(first_seen_ms)),
            update_time: Some(timestamp(updated_ms)),
        }
    }
}

impl From<Recording> for pb::Recording {
    fn from(r: Recording) -> pb::Recording {
        let Recording {
            domain,
            bucket,
            object,
        } = r;
        pb::Recording {
            domain,
            bucket,
            object,
        }
    }
}

impl From<CallEventEntry> for pb::CallEvent {
    fn from(e: CallEventEntry) -> pb::CallEvent {
        let CallEventEntry {
            call_id,
            app,
            session_id,
            event_type: name,
            time_ms,
            caller,
            called,
            state_code,
            state_text,
            subscription_id,
            user_data,
            binding_id,
            received_ms,
        } = e;
        pb::CallEvent {
            call_id: call_id.to_string(),
            app,
            session_id,
            event_type: event_type(&name).into(),
            event_type_name: name,
            event_time: time_ms.map(timestamp),
            caller: caller.unwrap_or_default(),
            called: called.unwrap_or_default(),
            state_code: state_code.map(int32),
            state_text: state_text.unwrap_or_default(),
            subscription_id: subscription_id.unwrap_or_default(),
            user_data: user_data.unwrap_or_default(),
            binding_id: binding_id.map(|b| b.to_string()).unwrap_or_default(),
            receive_time: Some(timestamp(received_ms)),
        }
    }
}

impl From<Message> for pb::SmsMessage {
    fn from(m: Message) -> pb::SmsMessage {
        let Message {
            id,
            app,
            sms_identifier,
            notification_mode,
            calling,
            called,
            x,
            binding_id,
            subscription_id,
            time_ms,
            segments,
            content,
            received_ms,
        } = m;
        pb::SmsMessage {
            message_id: id.to_string(),
            app,
            sms_identifier,
            notification_mode,
            calling: calling.unwrap_or_default(),
            called: called.unwrap_or_default(),
            x_number: x.unwrap_or_default(),
            binding_id: binding_id.map(|b| b.to_string()).unwrap_or_default(),
            subscription_id: subscription_id.unwrap_or_default(),
            send_time: time_ms.map(timestamp),
            segments: int32(segments),
            content: content.unwrap_or_default(),
            receive_time: Some(timestamp(received_ms)),
        }
    }
}

#[cfg(test)]
mod tests;
