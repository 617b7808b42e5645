//! Writing what the platform pushed: each push merged into its call (or stored as a message),
//! deduplicated, linked to its binding, and put on the change feed, in one durable write.

use std::collections::BTreeMap;

use super::{Answered, CallLog, FeeCounts, Stored, lane, segments};
use crate::lifecycle::PoolError;
use crate::platform::push::{CallEvent, EventType, FeeInfo, SmsEvent};
use crate::platform::time;
use crate::store::{
    BindingId, CallEventChange, CallStored, CdrStored, ChangeKindStored, ChangeStored, EventStored,
    LogId, MessageStored,
};

/// Milliseconds since the epoch of a call event or CDR time (`yyyy-MM-dd HH:mm:ss`, UTC).
fn event_ms(text: Option<&str>) -> Option<i64> {
    time::parse_event_time(text?).map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Milliseconds since the epoch of an SMS time (ISO-8601 with milliseconds).
fn sms_ms(text: Option<&str>) -> Option<i64> {
    time::parse_sms_time(text?).map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Empty strings are absent.
fn some(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A new, empty call of (app, session) first heard of now.
fn new_call(app: &str, session_id: &str, now: i64) -> CallStored {
    CallStored {
        id: LogId(*uuid::Uuid::now_v7().as_bytes()),
        app: app.to_owned(),
        session_id: session_id.to_owned(),
        binding: None,
        subscription_id: None,
        x: None,
        caller: None,
        callee: None,
        direction: None,
        start_ms: None,
        answer_ms: None,
        end_ms: None,
        state_code: None,
        cdr: None,
        events: Vec::new(),
        updated_ms: now,
    }
}

/// The order events of one call happened in, for events without a usable time.
fn rank(event_type: &str) -> u8 {
    match event_type {
        "callin" => 0,
        "collectInfo" => 1,
        "callout" => 2,
        "alerting" => 3,
        "answer" => 4,
        "disconnect" => 5,
        _ => 6,
    }
}

impl CallLog {
    /// The binding a push names: by the platform's subscription id, by the `userData` xpool
    /// put in an X-mode answer (the binding id), or by X and a party holding a live binding
    /// on it.
    fn link(
        &self,
        app: &str,
        subscription_id: Option<&str>,
        user_data: Option<&str>,
        x: Option<&str>,
        parties: &[Option<&str>],
    ) -> Result<Option<BindingId>, PoolError> {
        if let Some(sub) = subscription_id.filter(|s| !s.is_empty())
            && let Some(id) = self.store.binding_of_subscription(app, sub)?
        {
            return Ok(Some(id));
        }
        if let Some(id) = user_data.and_then(|u| uuid::Uuid::parse_str(u.trim()).ok()) {
            let id = BindingId(*id.as_bytes());
            if self.store.get_binding(&id)?.is_some_and(|b| b.app == app) {
                return Ok(Some(id));
            }
        }
        let Some(x) = x.filter(|x| !x.is_empty()) else {
            return Ok(None);
        };
        let on_x = self.store.bindings_on(app, x)?;
        let holds = |b: &crate::store::BindingRecord, p: &str| {
            b.party_a == p || b.party_b.as_deref() == Some(p)
        };
        for party in parties.iter().flatten() {
            if let Some(b) = on_x.iter().find(|b| holds(b, party)) {
                return Ok(Some(b.id));
            }
        }
        Ok(None)
    }

    /// See [`CallLog::record_event`] and [`CallLog::record_answered_callin`].
    pub(super) async fn write_event(
        &self,
        app: &str,
        event: &CallEvent,
        answered: Option<Answered>,
    ) -> Result<Stored, PoolError> {
        let si = &event.status_info;
        let Some(session_id) = some(&si.session_id) else {
            return Err(PoolError::invalid(
                "statusInfo.sessionId",
                "a call event without a session id cannot be stored",
            ));
        };
        let event_type = event.event_type.as_str().to_owned();
        let now = self.clock.now_ms();
        let callin = event.event_type == EventType::Callin;
        let x = if callin { some(&si.called) } else { None };
        let binding = match answered {
            // The binding the answer was made from: no need to look for it again.
            Some(Answered {
                routed: Some(binding),
            }) => Some(binding),
            _ => self.link(
                app,
                si.subscription_id.as_deref(),
                si.user_data.as_deref(),
                x.as_deref(),
                &[si.caller.as_deref(), si.called.as_deref()],
            )?,
        };
        let entry = EventStored {
            event_type: event_type.clone(),
            time_ms: event_ms(si.timestamp.as_deref()),
            caller: some(&si.caller),
            called: some(&si.called),
            state_code: si.state_code.and_then(|c| u32::try_from(c).ok()),
            state_desc: some(&si.state_desc),
            subscription_id: some(&si.subscription_id),
            user_data: some(&si.user_data),
            binding,
            digits: some(&si.digit_info),
            received_ms: now,
        };
        let writer = self.writer(app)?;
        let staged = self.store.stage_in(lane(&writer), |tx| {
            let mut call = tx
                .call_of_session(app, &session_id)?
                .unwrap_or_else(|| new_call(app, &session_id, now));
            if call.events.iter().any(|e| e.event_type == event_type) {
                return Ok::<_, PoolError>(Stored::Duplicate);
            }
            merge_event(&mut call, &entry, now);
            tx.put_call(&call)?;
            tx.append_change(&ChangeStored {
                at_ms: now,
                app: app.to_owned(),
                kind: ChangeKindStored::CallEvent,
                binding: None,
                number: None,
                call_event: Some(CallEventChange {
                    call: call.id,
                    session_id: session_id.clone(),
                    event: entry.clone(),
                }),
                message: None,
            })?;
            Ok(Stored::New)
        })?;
        let stored = match answered {
            Some(_) => staged.ride().await?,
            None => staged.durable().await?,
        };
        Ok(stored)
    }

    /// See [`CallLog::record_fees`].
    pub(super) async fn write_fees(
        &self,
        app: Option<&str>,
        fees: &[FeeInfo],
    ) -> Result<FeeCounts, PoolError> {
        let now = self.clock.now_ms();
        let mut counts = FeeCounts::default();
        let mut ready: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for fee in fees {
            let session = some(&fee.session_id).or_else(|| some(&fee.icid));
            let owner = match app {
                Some(app) => Some(app.to_owned()),
                None => fee
                    .bind_num
                    .as_deref()
                    .and_then(|x| self.pool.owner_of_number(x)),
            };
            let (Some(session), Some(owner)) = (session, owner) else {
                tracing::warn!(
                    icid = fee.icid.as_deref().unwrap_or(""),
                    "a CDR without a session id or icid, or of no known app; skipped"
                );
                counts.skipped += 1;
                continue;
            };
            let binding = self.link(
                &owner,
                fee.subscription_id.as_deref(),
                fee.user_data.as_deref(),
                fee.bind_num.as_deref(),
                &[fee.caller_num.as_deref(), fee.fwd_dst_num.as_deref()],
            )?;
            ready
                .entry(owner)
                .or_insert_with(Vec::new)
                .push((session, binding, fee));
        }
        // One write per app: in cluster mode each goes under its own app's term. A failed one
        // fails the push, which the platform sends again; the apps written already then find
        // their records duplicates.
        for (app, fees) in &ready {
            let writer = self.writer(app)?;
            let (stored, duplicates) = self
                .store
                .commit_in(lane(&writer), |tx| {
                    let (mut stored, mut duplicates) = (0, 0);
                    for (session, binding, fee) in fees {
                        let mut call = tx
                            .call_of_session(app, session)?
                            .unwrap_or_else(|| new_call(app, session, now));
                        if call.cdr.is_some() {
                            duplicates += 1;
                            continue;
                        }
                        merge_fee(&mut call, fee, *binding, now);
                        tx.put_call(&call)?;
                        stored += 1;
                    }
                    Ok::<_, PoolError>((stored, duplicates))
                })
                .await?;
            counts.stored += stored;
            counts.duplicates += duplicates;
        }
        Ok(counts)
    }

    /// See [`CallLog::record_sms`].
    pub(super) async fn write_sms(&self, app: &str, sms: &SmsEvent) -> Result<Stored, PoolError> {
        let Some(ident) = some(&sms.sms_identifier) else {
            return Err(PoolError::invalid(
                "smsEvent.smsIdentifier",
                "an SMS event without an identifier cannot be stored",
            ));
        };
        let mode = if sms.is_block() { "Block" } else { "Notify" };
        let now = self.clock.now_ms();
        let x = some(&sms.virtual_number);
        let binding = self.link(
            app,
            sms.subscription_id.as_deref(),
            None,
            x.as_deref(),
            &[sms.calling.as_deref(), sms.called.as_deref()],
        )?;
        let content = sms.sms_content.clone();
        let split = sms.ext_info.as_ref().and_then(|e| {
            e.ext_paras
                .iter()
                .find(|p| p.key == "splitNum")
                .and_then(|p| p.value.trim().parse::<u32>().ok())
        });
        let message = MessageStored {
            id: LogId(*uuid::Uuid::now_v7().as_bytes()),
            app: app.to_owned(),
            sms_identifier: ident.clone(),
            mode: mode.to_owned(),
            event: some(&sms.event),
            calling: some(&sms.calling),
            called: some(&sms.called),
            x,
            binding,
            subscription_id: some(&sms.subscription_id),
            time_ms: sms_ms(sms.time_stamp.as_deref()),
            segments: content
                .as_deref()
                .map(segments::segments)
                .or(split)
                .unwrap_or(1)
                .max(1),
            content,
            received_ms: now,
        };
        let writer = self.writer(app)?;
        let stored = self
            .store
            .commit_in(lane(&writer), |tx| {
                if tx.message_of(app, &ident, mode)?.is_some() {
                    return Ok::<_, PoolError>(Stored::Duplicate);
                }
                tx.put_message(&message)?;
                tx.append_change(&ChangeStored {
                    at_ms: now,
                    app: app.to_owned(),
                    kind: ChangeKindStored::Message,
                    binding: None,
                    number: None,
                    call_event: None,
                    message: Some(message.clone()),
                })?;
                Ok(Stored::New)
            })
            .await?;
        Ok(stored)
    }
}

/// Adds one event to its call, in the order the events happened, and what it tells of the
/// call. Out-of-order arrival is fine: each fact has one source event, and a CDR, when there
/// is one, is the authority for the numbers and times.
fn merge_event(call: &mut CallStored, e: &EventStored, now: i64) {
    let at = call
        .events
        .iter()
        .position(|o| (o.time_ms, rank(&o.event_type)) > (e.time_ms, rank(&e.event_type)))
        .unwrap_or(call.events.len());
    call.events.insert(at, e.clone());
    call.updated_ms = now;
    call.binding = call.binding.or(e.binding);
    if call.subscription_id.is_none() {
        call.subscription_id = e.subscription_id.clone();
    }
    let cdr = call.cdr.is_some();
    match e.event_type.as_str() {
        "disconnect" => {
            call.state_code = e.state_code.or(call.state_code);
            if !cdr {
                call.end_ms = e.time_ms.or(call.end_ms);
            }
        }
        // The CDR's numbers and times are the authority once it is in.
        _ if cdr => {}
        "callin" => {
            call.caller = e.caller.clone().or(call.caller.take());
            call.x = e.called.clone().or(call.x.take());
            call.start_ms = e.time_ms.or(call.start_ms);
        }
        "callout" | "alerting" if call.callee.is_none() => call.callee = e.called.clone(),
        "answer" => {
            call.answer_ms = e.time_ms.or(call.answer_ms);
            if call.callee.is_none() {
                call.callee = e.called.clone();
            }
        }
        _ => {}
    }
}

/// Merges a CDR into its call: its numbers and times win over the events'.
fn merge_fee(call: &mut CallStored, fee: &FeeInfo, binding: Option<BindingId>, now: i64) {
    call.binding = call.binding.or(binding);
    call.subscription_id = some(&fee.subscription_id).or(call.subscription_id.take());
    call.x = some(&fee.bind_num).or(call.x.take());
    call.caller = some(&fee.caller_num).or(call.caller.take());
    call.callee = some(&fee.fwd_dst_num).or(call.callee.take());
    call.direction = fee.direction.and_then(|d| i64::try_from(d).ok());
    call.start_ms = event_ms(fee.call_in_time.as_deref()).or(call.start_ms);
    call.answer_ms = event_ms(fee.fwd_answer_time.as_deref()).or(call.answer_ms);
    call.end_ms = event_ms(fee.call_end_time.as_deref()).or(call.end_ms);
    if call.state_code.is_none() {
        call.state_code = fee.ul_fail_reason.and_then(|c| u32::try_from(c).ok());
    }
    call.updated_ms = now;
    call.cdr = Some(CdrStored {
        icid: some(&fee.icid),
        service_type: some(&fee.service_type),
        ul_fail_reason: fee.ul_fail_reason,
        fwd_unansw_rsn: fee.fwd_unasw_rsn,
        sip_status_code: fee.sip_status_code,
        record_flag: fee.record_flag,
        record_domain: some(&fee.record_domain),
        record_bucket: some(&fee.record_bucket_name),
        record_object: some(&fee.record_object_name),
        extension: some(&fee.extend_num),
        user_data: some(&fee.user_data),
        host_name: some(&fee.host_name),
        received_ms: now,
    });
}
