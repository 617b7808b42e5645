//! Conversions of CallService between messages and the call log's types, in the style of
//! `convert`: every field of an incoming message is destructured, so a new proto field does not
//! compile until it is handled here.

use prost_types::Timestamp;

use super::convert::{self, timestamp};
use super::page::{self, Filters};
use super::pb;
use crate::calls::{
    CallEventEntry, CallFilter, CallId, CallRecord, EventCursor, Message, Recording,
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
