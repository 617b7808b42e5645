//! Reading the call log: listings (newest first, filtered, paged by the last id seen) and the
//! change feed; and the store's records as the domain's types.

use super::{
    CallEventEntry, CallFilter, CallId, CallLog, CallRecord, Change, ChangeFilter, ChangeKind,
    ChangePage, EventCursor, Message, NumberStatusChange, Recording,
};
use crate::lifecycle::{BindingId, PoolError, Reason};
use crate::platform::push::state;
use crate::store::{self, CallStored, ChangeKindStored, ChangeStored, EventStored, LogId};

/// The most records a listing reads to fill one page of a narrow filter, so that a request
/// cannot keep the daemon scanning for long: the page ends early (with a token to go on).
const SCAN_BUDGET: usize = 20_000;

impl CallLog {
    /// Calls matching `filter`, newest first, after `after`: up to `limit`, and whether more
    /// may follow (the scan stopped at the limit or at its budget).
    pub(super) fn calls_page(
        &self,
        filter: &CallFilter,
        after: Option<CallId>,
        limit: usize,
        mut take: impl FnMut(CallStored) -> usize,
    ) -> Result<bool, PoolError> {
        let before = after.map(|a| LogId(a.0));
        let before = match (before, filter.to_ms) {
            (Some(b), Some(to)) => Some(b.min(LogId::first_at(to))),
            (b, to) => b.or(to.map(LogId::first_at)),
        };
        let from = filter.from_ms.map(LogId::first_at);
        let mut taken = 0;
        let mut scanned = 0;
        let matches = |c: &CallStored| {
            filter.app.as_deref().is_none_or(|a| a == c.app)
                && filter
                    .x
                    .as_deref()
                    .is_none_or(|x| c.x.as_deref() == Some(x))
                && filter.party.as_deref().is_none_or(|p| {
                    c.caller.as_deref() == Some(p)
                        || c.callee.as_deref() == Some(p)
                        || c.events.iter().any(|e| {
                            e.caller.as_deref() == Some(p) || e.called.as_deref() == Some(p)
                        })
                })
                && filter
                    .binding_id
                    .is_none_or(|b| c.binding == Some(store::BindingId::from(b)))
        };
        if let Some(binding) = filter.binding_id {
            for id in self.store.calls_of_binding(&binding.into())? {
                if before.is_some_and(|b| id >= b) || from.is_some_and(|f| id < f) {
                    continue;
                }
                let Some(call) = self.store.get_call(&id)? else {
                    continue;
                };
                if !matches(&call) {
                    continue;
                }
                if taken == limit {
                    return Ok(true);
                }
                taken += take(call);
            }
            return Ok(false);
        }
        for call in self.store.calls_newest_first(before, from)? {
            let call = call?;
            scanned += 1;
            if matches(&call) {
                if taken == limit {
                    return Ok(true);
                }
                taken += take(call);
            }
            if scanned >= SCAN_BUDGET && taken > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// See [`CallLog::list_calls`].
    pub(super) fn read_calls(
        &self,
        filter: &CallFilter,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<(Vec<CallRecord>, bool), PoolError> {
        let mut out = Vec::new();
        let more = self.calls_page(filter, after, limit, |c| {
            out.push(call_record(c));
            1
        })?;
        Ok((out, more))
    }

    /// See [`CallLog::list_events`].
    pub(super) fn read_events(
        &self,
        filter: &CallFilter,
        after: Option<EventCursor>,
        limit: usize,
    ) -> Result<(Vec<CallEventEntry>, bool), PoolError> {
        let mut out: Vec<CallEventEntry> = Vec::new();
        // The call the cursor is in is read again, from the event after the cursor.
        let start = after.map(|c| {
            let mut next = c.call_id;
            // Just after this id: the page starts at the cursor's call itself.
            if let Some(last) = next.0.iter_mut().rev().find(|b| **b != 0xff) {
                *last += 1;
            }
            (next, c)
        });
        let mut full = false;
        let more = self.calls_page(filter, start.map(|s| s.0), usize::MAX, |c| {
            if full {
                return 0;
            }
            let call_id = CallId(c.id.0);
            let skip = match start {
                Some((_, cursor)) if cursor.call_id == call_id => cursor.index as usize + 1,
                _ => 0,
            };
            let events = call_events(&c);
            for e in events.into_iter().skip(skip) {
                if out.len() == limit {
                    full = true;
                    return 0;
                }
                out.push(e);
            }
            1
        })?;
        Ok((out, more || full))
    }

    /// See [`CallLog::list_messages`].
    pub(super) fn read_messages(
        &self,
        filter: &CallFilter,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), PoolError> {
        let before = after.map(|a| LogId(a.0));
        let before = match (before, filter.to_ms) {
            (Some(b), Some(to)) => Some(b.min(LogId::first_at(to))),
            (b, to) => b.or(to.map(LogId::first_at)),
        };
        let from = filter.from_ms.map(LogId::first_at);
        let mut out = Vec::new();
        let mut scanned = 0;
        for m in self.store.messages_newest_first(before, from)? {
            let m = m?;
            scanned += 1;
            let matches = filter.app.as_deref().is_none_or(|a| a == m.app)
                && filter
                    .x
                    .as_deref()
                    .is_none_or(|x| m.x.as_deref() == Some(x))
                && filter.party.as_deref().is_none_or(|p| {
                    m.calling.as_deref() == Some(p) || m.called.as_deref() == Some(p)
                })
                && filter
                    .binding_id
                    .is_none_or(|b| m.binding == Some(store::BindingId::from(b)));
            if matches {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(message(m));
            }
            if scanned >= SCAN_BUDGET && !out.is_empty() {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// See [`CallLog::changes_after`].
    pub(super) fn read_changes(
        &self,
        after: u64,
        filter: &ChangeFilter,
        limit: usize,
    ) -> Result<ChangePage, PoolError> {
        let first = self.store.change_floor()?;
        if after != 0 && after.saturating_add(1) < first {
            return Err(PoolError::refused(
                Reason::WatchExpired,
                format!(
                    "the changes after {after} are no longer kept (the oldest kept is {first}); list what you need and watch from now"
                ),
            ));
        }
        let mut out = Vec::new();
        let mut cursor = after;
        // Read in batches until `limit` pass the filter or the feed ends.
        loop {
            let batch = self.store.changes_after(cursor, limit.clamp(16, 1024))?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            for (seq, c) in batch {
                cursor = seq;
                let kind = kind(c.kind);
                if filter.passes(&c.app, kind) {
                    out.push(change(seq, c));
                    if out.len() == limit {
                        return Ok(ChangePage {
                            changes: out,
                            cursor,
                        });
                    }
                }
            }
            cursor = last;
        }
        Ok(ChangePage {
            changes: out,
            cursor,
        })
    }
}

fn kind(k: ChangeKindStored) -> ChangeKind {
    match k {
        ChangeKindStored::BindingBound => ChangeKind::BindingBound,
        ChangeKindStored::BindingUpdated => ChangeKind::BindingUpdated,
        ChangeKindStored::BindingReleased => ChangeKind::BindingReleased,
        ChangeKindStored::BindingExpired => ChangeKind::BindingExpired,
        ChangeKindStored::BindingAdopted => ChangeKind::BindingAdopted,
        ChangeKindStored::NumberStatus => ChangeKind::NumberStatus,
        ChangeKindStored::CallEvent => ChangeKind::CallEvent,
        ChangeKindStored::Message => ChangeKind::Message,
    }
}

fn change(seq: u64, c: ChangeStored) -> Change {
    Change {
        seq,
        at_ms: c.at_ms,
        kind: kind(c.kind),
        binding: c.binding.map(Into::into),
        number: c.number.map(|n| NumberStatusChange {
            number: n.number,
            status: n.status.into(),
            cause: n.cause,
        }),
        call_event: c
            .call_event
            .map(|e| event(CallId(e.call.0), &c.app, &e.session_id, e.event)),
        message: c.message.map(message),
        app: c.app,
    }
}

fn text_of(code: Option<u32>) -> Option<String> {
    code.and_then(|c| state::meaning(u64::from(c)))
        .map(str::to_owned)
}

fn event(call_id: CallId, app: &str, session_id: &str, e: EventStored) -> CallEventEntry {
    CallEventEntry {
        call_id,
        app: app.to_owned(),
        session_id: session_id.to_owned(),
        event_type: e.event_type,
        time_ms: e.time_ms,
        caller: e.caller,
        called: e.called,
        state_text: text_of(e.state_code).or(e.state_desc),
        state_code: e.state_code,
        subscription_id: e.subscription_id,
        user_data: e.user_data,
        binding_id: e.binding.map(BindingId::from),
        received_ms: e.received_ms,
    }
}

/// A call's events; one stored before its call could be linked (a callin that names no
/// subscription) shows the binding the call was linked to later.
fn call_events(c: &CallStored) -> Vec<CallEventEntry> {
    let call_binding = c.binding.map(BindingId::from);
    c.events
        .iter()
        .map(|e| {
            let entry = event(CallId(c.id.0), &c.app, &c.session_id, e.clone());
            CallEventEntry {
                binding_id: entry.binding_id.or(call_binding),
                ..entry
            }
        })
        .collect()
}

fn call_record(c: CallStored) -> CallRecord {
    let events = call_events(&c);
    let recording = c.cdr.as_ref().and_then(|cdr| {
        Some(Recording {
            domain: cdr.record_domain.clone()?,
            bucket: cdr.record_bucket.clone().unwrap_or_default(),
            object: cdr.record_object.clone()?,
        })
    });
    let duration_seconds = match (c.answer_ms, c.end_ms) {
        (Some(a), Some(e)) if e > a => ((e - a) / 1000) as u64,
        _ => 0,
    };
    CallRecord {
        id: CallId(c.id.0),
        binding_id: c.binding.map(BindingId::from),
        subscription_id: c.subscription_id,
        x: c.x,
        caller: c.caller,
        callee: c.callee,
        direction: c.direction,
        start_ms: c.start_ms,
        answer_ms: c.answer_ms,
        end_ms: c.end_ms,
        duration_seconds,
        state_text: text_of(c.state_code),
        state_code: c.state_code,
        recording,
        has_cdr: c.cdr.is_some(),
        events,
        first_seen_ms: c.id.time_ms(),
        updated_ms: c.updated_ms,
        app: c.app,
        session_id: c.session_id,
    }
}

fn message(m: store::MessageStored) -> Message {
    Message {
        id: CallId(m.id.0),
        app: m.app,
        sms_identifier: m.sms_identifier,
        notification_mode: m.mode,
        calling: m.calling,
        called: m.called,
        x: m.x,
        binding_id: m.binding.map(BindingId::from),
        subscription_id: m.subscription_id,
        time_ms: m.time_ms,
        segments: m.segments,
        content: m.content,
        received_ms: m.received_ms,
    }
}
