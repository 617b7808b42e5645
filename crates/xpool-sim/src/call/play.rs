//! A routed call played out on the simulator's clock: its events (notifications.md §1.1) and its
//! CDR (§2.2). Pure: the caller pushes what this returns.

use time::OffsetDateTime;

use super::route::{Route, Routing};
use xpool_platform::Mode;
use xpool_platform::push::state as code;
use xpool_platform::push::{BLOCK, CallEvent, EventType, FeeInfo, StatusInfo, service_type};
use xpool_platform::time::format_event_time;

/// The host named in CDRs.
pub(crate) const HOST_NAME: &str = "callenabler.sim.huaweicaas.com";
/// The account id named in CDRs.
const SP_ID: &str = "xpool_sim_sp";
/// Where recordings are said to be kept.
const RECORD_DOMAIN: &str = "record.sim.huaweicaas.com";

/// Seconds from `callin` to keying in the extension (AXE), to `callout`, to `alerting`, from
/// `alerting` to the answer, and from `alerting` to a rejection.
const COLLECT_AFTER: i64 = 3;
const CALLOUT_AFTER: i64 = 1;
const ALERTING_AFTER: i64 = 1;
const ANSWER_AFTER: i64 = 4;
const REJECT_AFTER: i64 = 6;

/// One call as the platform saw it arrive.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub app_key: String,
    pub mode: Mode,
    pub session_id: String,
    pub icid: String,
    pub from: String,
    /// The X (or Y) dialed.
    pub to: String,
    /// Whether the forwarded party answers.
    pub answer: bool,
    pub talk_seconds: u64,
    /// When the call reached the platform, on the simulator's clock.
    pub start: OffsetDateTime,
}

/// What a call produced.
#[derive(Debug, Clone)]
pub(crate) struct Played {
    pub events: Vec<CallEvent>,
    pub fee: FeeInfo,
    pub end: OffsetDateTime,
    pub state_code: u64,
}

/// The `callin` event; in X mode the Block push that asks for routing (§1.4).
pub(crate) fn callin(call: &Call, route: &Route) -> CallEvent {
    let mut info = leg(call, call.start, &call.from, &call.to);
    if call.mode == Mode::X {
        info.notify_mode = Some(BLOCK.to_owned());
    } else {
        info.user_data = route.bound.user_data.clone();
    }
    CallEvent {
        event_type: EventType::Callin,
        status_info: info,
    }
}

/// Plays a routed call: callin, \[collectInfo\], then callout → alerting → \[answer\] → disconnect
/// when forwarded, or straight to disconnect when refused; and its CDR.
pub(crate) fn play(call: &Call, route: &Route) -> Played {
    let at = |base: OffsetDateTime, seconds: i64| base + time::Duration::seconds(seconds);
    // Later events carry the binding and its userData (in X mode the Block answer's).
    let later = |event_type, when: OffsetDateTime, caller: &str, called: &str| {
        let mut info = leg(call, when, caller, called);
        info.subscription_id = route.bound.id.clone();
        info.user_data = route.bound.user_data.clone();
        CallEvent {
            event_type,
            status_info: info,
        }
    };
    let mut events = vec![callin(call, route)];
    let mut fee = fee(call, route);
    let mut t = call.start;
    if let Some(digits) = &route.digits {
        t = at(t, COLLECT_AFTER);
        let mut event = later(EventType::CollectInfo, t, &call.from, &call.to);
        event.status_info.digit_info = Some(digits.clone());
        events.push(event);
    }
    let (code, called) = match &route.routing {
        Routing::Refuse { code, .. } => {
            fee.fail_time = Some(format_event_time(t));
            (*code, call.to.clone())
        }
        Routing::Forward { callee, .. } => {
            t = at(t, CALLOUT_AFTER);
            events.push(later(EventType::Callout, t, &call.from, callee));
            fee.fwd_start_time = Some(format_event_time(t));
            t = at(t, ALERTING_AFTER);
            events.push(later(EventType::Alerting, t, &call.from, callee));
            fee.fwd_alerting_time = Some(format_event_time(t));
            let code = if call.answer {
                t = at(t, ANSWER_AFTER);
                events.push(later(EventType::Answer, t, &call.from, callee));
                answered(&mut fee, route, t);
                let limit = route.bound.max_minutes.saturating_mul(60);
                let capped = limit > 0 && call.talk_seconds > limit;
                let talk = if capped { limit } else { call.talk_seconds };
                t = at(t, i64::try_from(talk).unwrap_or(i64::MAX / 4));
                if capped {
                    code::MAX_DURATION
                } else {
                    code::NORMAL
                }
            } else {
                t = at(t, REJECT_AFTER);
                fee.fail_time = Some(format_event_time(t));
                code::CALLEE_REJECTED
            };
            (code, callee.clone())
        }
    };
    let mut disconnect = later(EventType::Disconnect, t, &call.from, &called);
    disconnect.status_info.state_code = Some(code);
    disconnect.status_info.state_desc = Some(code::desc(code).to_owned());
    events.push(disconnect);
    let (q850, sip) = code::forward_failure(code);
    fee.fwd_unasw_rsn = Some(q850);
    fee.sip_status_code = Some(sip);
    fee.ul_fail_reason = Some(code);
    fee.call_end_time = Some(format_event_time(t));
    Played {
        events,
        fee,
        end: t,
        state_code: code,
    }
}

/// The fields every event has: time, session, the reported leg.
fn leg(call: &Call, when: OffsetDateTime, caller: &str, called: &str) -> StatusInfo {
    StatusInfo {
        timestamp: Some(format_event_time(when)),
        session_id: Some(call.session_id.clone()),
        caller: Some(caller.to_owned()),
        called: Some(called.to_owned()),
        ..StatusInfo::default()
    }
}

/// The CDR fields known when the call arrives (§2.2).
fn fee(call: &Call, route: &Route) -> FeeInfo {
    let (direction, forward) = match &route.routing {
        Routing::Forward {
            callee,
            display,
            direction,
        } => (*direction, Some((callee, display))),
        Routing::Refuse { direction, .. } => (*direction, None),
    };
    let x_mode = call.mode == Mode::X;
    // A binding mode's CDR of a call that matched no binding has an empty subscriptionId.
    let subscription_id = match (&route.bound.id, x_mode) {
        (_, true) => None,
        (id, false) => Some(id.clone().unwrap_or_default()),
    };
    FeeInfo {
        direction: Some(direction),
        sp_id: Some(SP_ID.to_owned()),
        app_key: Some(call.app_key.clone()),
        icid: Some(call.icid.clone()),
        bind_num: Some(call.to.clone()),
        session_id: Some(call.session_id.clone()),
        subscription_id,
        caller_num: Some(call.from.clone()),
        callee_num: Some(call.to.clone()),
        fwd_display_num: forward.map(|(_, display)| display.clone()),
        fwd_dst_num: forward.map(|(callee, _)| callee.clone()),
        call_in_time: Some(format_event_time(call.start)),
        call_out_unasw_rsn: Some(0),
        record_flag: Some(0),
        service_type: Some(service_type_of(call.mode).to_owned()),
        host_name: Some(HOST_NAME.to_owned()),
        user_data: route.bound.user_data.clone().filter(|_| x_mode),
        notify_mode: x_mode.then(|| BLOCK.to_owned()),
        extend_num: route.digits.clone().filter(|d| !d.is_empty()),
        ..FeeInfo::default()
    }
}

/// The CDR fields of an answered call; a recording when the binding (or answer) asked for one.
fn answered(fee: &mut FeeInfo, route: &Route, at: OffsetDateTime) {
    fee.fwd_answer_time = Some(format_event_time(at));
    if route.bound.record_flag {
        let icid = fee.icid.clone().unwrap_or_default();
        fee.record_flag = Some(1);
        fee.record_start_time = Some(format_event_time(at));
        fee.record_object_name = Some(format!("{}.wav", icid.replace('.', "")));
        fee.record_bucket_name = Some(format!("sim-{}", fee.app_key.as_deref().unwrap_or("")));
        fee.record_domain = Some(RECORD_DOMAIN.to_owned());
    }
}

fn service_type_of(mode: Mode) -> &'static str {
    match mode {
        Mode::Ax => service_type::AX,
        Mode::Axb => service_type::AXB,
        Mode::Axe => service_type::AXE,
        Mode::Axyb => service_type::AXYB,
        Mode::X => service_type::X,
    }
}
