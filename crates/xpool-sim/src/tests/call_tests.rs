//! Calls through each mode's bindings (routing, events, CDR) and the X-mode answer, against an
//! app's state directly; the pushes themselves are covered by tests/platform/pushes.rs.

use axum::http::Method;
use serde_json::json;
use time::OffsetDateTime;

use super::super::call::play::{Call, play};
use super::super::call::route::{Callbacks, Dialed, Route, Routing, route};
use super::super::call::xmode::decide;
use super::super::server::Endpoint;
use super::{Harness, X1, X2, X3, a};
use xpool_platform::Mode;
use xpool_platform::push::state as code;
use xpool_platform::push::{CallinAnswer, CloseInfo, ConnectInfo, EventType, service_type};

impl Harness {
    /// Routes `from` → `to` (keying in `extension` if prompted).
    fn route(&mut self, from: &str, to: &str, extension: Option<&str>) -> Route {
        self.route_with(&Callbacks::new(), from, to, extension)
    }

    fn route_with(
        &mut self,
        callbacks: &Callbacks,
        from: &str,
        to: &str,
        extension: Option<&str>,
    ) -> Route {
        self.state.purge(self.now);
        let dialed = Dialed {
            from,
            to,
            extension,
        };
        route(&mut self.state, &self.config, callbacks, &dialed, self.now)
    }
}

/// The callee of a forwarded call, or the code of a refused one.
fn outcome(route: &Route) -> Result<(String, u64), u64> {
    match &route.routing {
        Routing::Forward {
            callee, direction, ..
        } => Ok((callee.clone(), *direction)),
        Routing::Refuse { code, .. } => Err(*code),
    }
}

fn call(mode: Mode, from: &str, to: &str, answer: bool, talk_seconds: u64) -> Call {
    Call {
        app_key: "k".into(),
        mode,
        session_id: "s1".into(),
        icid: "i1".into(),
        from: from.into(),
        to: to.into(),
        answer,
        talk_seconds,
        start: OffsetDateTime::UNIX_EPOCH,
    }
}

#[test]
fn axb_connects_a_and_b_as_the_direction_allows() {
    let mut h = Harness::new("AXB", "", &[(X1, "010")]);
    let bind = json!({"callerNum": a(1), "calleeNum": a(2), "relationNum": X1, "callDirection": 1,
        "userData": "order-1"});
    let id = h.ok(Endpoint::Axb, &Method::POST, bind)["subscriptionId"].clone();
    let out = h.route(&a(1), X1, None);
    assert_eq!(outcome(&out), Ok((a(2), 1)), "A calls B: direction 1");
    assert_eq!(out.bound.id.as_deref(), id.as_str());
    assert_eq!(out.bound.user_data.as_deref(), Some("order-1"));
    assert_eq!(
        outcome(&h.route(&a(2), X1, None)),
        Err(code::DIRECTION_NOT_ALLOWED)
    );
    assert_eq!(outcome(&h.route(&a(3), X1, None)), Err(code::NO_BINDING));
    let modify = json!({"subscriptionId": id, "callDirection": 0});
    h.expect(Endpoint::Axb, &Method::PUT, modify, "0");
    assert_eq!(outcome(&h.route(&a(2), X1, None)), Ok((a(1), 0)));
}

#[test]
fn ax_reaches_a_and_lets_a_call_its_temporary_callee() {
    let mut h = Harness::new("AX", "", &[(X1, "010"), (X2, "010")]);
    h.ok(
        Endpoint::Ax,
        &Method::POST,
        json!({"origNum": a(1), "privateNum": X1}),
    );
    assert_eq!(outcome(&h.route(&a(5), X1, None)), Ok((a(1), 0)));
    assert_eq!(outcome(&h.route(&a(1), X1, None)), Err(code::AX_NO_CALLEE));
    assert_eq!(outcome(&h.route(&a(5), X2, None)), Err(code::NO_PERMISSION));
    let callee = json!({"origNum": a(1), "privateNum": X1, "calleeNum": a(2), "duration": 60});
    h.expect(Endpoint::AxCallee, &Method::PUT, callee, "0");
    assert_eq!(outcome(&h.route(&a(1), X1, None)), Ok((a(2), 1)));
    h.advance(60);
    assert_eq!(outcome(&h.route(&a(1), X1, None)), Err(code::AX_NO_CALLEE));
}

#[test]
fn ax_call_direction_one_lets_only_a_call_through_x() {
    let mut h = Harness::new("AX", "", &[(X1, "010"), (X2, "010")]);
    let bind = json!({"origNum": a(1), "privateNum": X1, "callDirection": 1});
    h.ok(Endpoint::Ax, &Method::POST, bind);
    let callee = json!({"origNum": a(1), "privateNum": X1, "calleeNum": a(2)});
    h.expect(Endpoint::AxCallee, &Method::PUT, callee, "0");
    assert_eq!(
        outcome(&h.route(&a(5), X1, None)),
        Err(code::DIRECTION_NOT_ALLOWED)
    );
    assert_eq!(outcome(&h.route(&a(1), X1, None)), Ok((a(2), 1)));
    let bind = json!({"origNum": a(3), "privateNum": X2, "callDirection": 2});
    h.ok(Endpoint::Ax, &Method::POST, bind);
    let callee = json!({"origNum": a(3), "privateNum": X2, "calleeNum": a(2)});
    h.expect(Endpoint::AxCallee, &Method::PUT, callee, "0");
    assert_eq!(
        outcome(&h.route(&a(3), X2, None)),
        Err(code::DIRECTION_NOT_ALLOWED)
    );
    assert_eq!(outcome(&h.route(&a(5), X2, None)), Ok((a(3), 0)));
}

#[test]
fn axe_prompts_for_the_extension_and_calls_back() {
    let mut h = Harness::new("AXE", "extension_digits = 2", &[(X1, "010")]);
    let bind = json!({"bindNum": a(1), "virtualNum": X1, "extendNum": "07"});
    let id = h.ok(Endpoint::Axe, &Method::POST, bind)["subscriptionId"].clone();
    let bind = json!({"bindNum": a(2), "virtualNum": X1, "extendNum": "08",
        "callbackNum": a(9)});
    h.ok(Endpoint::Axe, &Method::POST, bind);

    let reached = h.route(&a(5), X1, Some("07"));
    assert_eq!(outcome(&reached), Ok((a(1), 0)));
    assert_eq!(reached.digits.as_deref(), Some("07"));
    let empty = h.route(&a(5), X1, None);
    assert_eq!(
        (outcome(&empty), empty.digits.as_deref()),
        (Err(code::EMPTY_EXTENSION), Some(""))
    );
    assert_eq!(
        outcome(&h.route(&a(5), X1, Some("09"))),
        Err(code::AXE_NO_BINDING)
    );
    assert_eq!(
        outcome(&h.route(&a(5), X1, Some("7"))),
        Err(code::AXE_NO_BINDING)
    );

    // A calls X: the last party that reached it, else its callbackNum, else 8019.
    assert_eq!(
        outcome(&h.route(&a(1), X1, None)),
        Err(code::CALLBACK_NOT_FOUND)
    );
    assert_eq!(outcome(&h.route(&a(2), X1, None)), Ok((a(9), 1)));
    let mut callbacks = Callbacks::new();
    callbacks.insert(id.as_str().unwrap().to_owned(), (a(5), h.now));
    assert_eq!(
        outcome(&h.route_with(&callbacks, &a(1), X1, None)),
        Ok((a(5), 1))
    );
}

#[test]
fn axe_callback_records_lapse_with_callback_expired_time() {
    let mut h = Harness::new("AXE", "extension_digits = 1", &[(X1, "010")]);
    let bind = json!({"bindNum": a(1), "virtualNum": X1, "timeUnit": "1",
        "bindExpiredTime": 60, "callbackExpiredTime": 10});
    let id = h.ok(Endpoint::Axe, &Method::POST, bind)["subscriptionId"].clone();
    let mut callbacks = Callbacks::new();
    callbacks.insert(id.as_str().unwrap().to_owned(), (a(5), h.now));
    h.advance(599);
    assert!(outcome(&h.route_with(&callbacks, &a(1), X1, None)).is_ok());
    h.advance(1);
    let lapsed = h.route_with(&callbacks, &a(1), X1, None);
    assert_eq!(outcome(&lapsed), Err(code::CALLBACK_NOT_FOUND));
}

#[test]
fn axyb_connects_b_to_a_through_x_and_a_to_b_through_y() {
    let mut h = Harness::new("AXYB", "", &[(X1, "010"), (X2, "010"), (X3, "010")]);
    let ax = h.ok(
        Endpoint::Axyb,
        &Method::POST,
        json!({"origNum": a(1), "areaCode": "010"}),
    );
    let (id, x) = (ax["subscriptionId"].clone(), ax["relationNumber"].clone());
    let x = x.as_str().unwrap();
    let yb = json!({"origNum": a(2), "subscriptionId": id});
    let y = h.ok(Endpoint::Axyb, &Method::POST, yb)["relationNumber"].clone();
    let y = y.as_str().unwrap();

    let b_calls = h.route(&a(2), x, None);
    assert_eq!(outcome(&b_calls), Ok((a(1), 0)));
    assert!(matches!(&b_calls.routing, Routing::Forward { display, .. } if display == y));
    let a_calls = h.route(&a(1), y, None);
    assert_eq!(outcome(&a_calls), Ok((a(2), 1)));
    assert!(matches!(&a_calls.routing, Routing::Forward { display, .. } if display == x));
    assert_eq!(
        outcome(&h.route(&a(1), x, None)),
        Err(code::AXYB_OWN_NUMBER)
    );
    assert_eq!(
        outcome(&h.route(&a(2), y, None)),
        Err(code::AXYB_OWN_NUMBER)
    );
    assert_eq!(
        outcome(&h.route(&a(7), y, None)),
        Err(code::AXYB_NO_BINDING)
    );

    // A stranger calling X gets a Y of its own (the last free number), then none is left.
    assert_eq!(outcome(&h.route(&a(3), x, None)), Ok((a(1), 0)));
    assert_eq!(h.state.list().len(), 2);
    assert_eq!(outcome(&h.route(&a(4), x, None)), Err(code::AXYB_NO_Y));
}

#[test]
fn an_answered_call_plays_every_event_and_a_connected_cdr() {
    let mut h = Harness::new("AXB", "", &[(X1, "010")]);
    let bind = json!({"callerNum": a(1), "calleeNum": a(2), "relationNum": X1,
        "recordFlag": true, "userData": "u1"});
    h.ok(Endpoint::Axb, &Method::POST, bind);
    let route = h.route(&a(1), X1, None);
    let played = play(&call(Mode::Axb, &a(1), X1, true, 100), &route);
    let kinds: Vec<EventType> = played.events.iter().map(|e| e.event_type).collect();
    use EventType::*;
    assert_eq!(kinds, [Callin, Callout, Alerting, Answer, Disconnect]);
    let callin = &played.events[0].status_info;
    assert_eq!(
        (callin.subscription_id.as_ref(), callin.user_data.as_deref()),
        (None, Some("u1"))
    );
    let last = &played.events[4].status_info;
    assert_eq!(
        (last.state_code, last.subscription_id.as_ref()),
        (Some(0), route.bound.id.as_ref())
    );
    assert_eq!(last.called.as_deref(), Some(a(2).as_str()));
    assert_eq!(played.state_code, code::NORMAL);
    let fee = &played.fee;
    assert_eq!(fee.direction, Some(1));
    assert_eq!(fee.fwd_dst_num.as_deref(), Some(a(2).as_str()));
    assert_eq!(fee.fwd_answer_time.as_deref(), Some("1970-01-01 00:00:06"));
    assert_eq!(fee.call_end_time.as_deref(), Some("1970-01-01 00:01:46"));
    assert_eq!(
        (fee.record_flag, fee.ul_fail_reason, fee.fail_time.as_ref()),
        (Some(1), Some(0), None)
    );
    assert_eq!(fee.service_type.as_deref(), Some(service_type::AXB));
    assert_eq!(fee.user_data, None, "userData is in X-mode CDRs only");
}

#[test]
fn unanswered_refused_and_capped_calls_end_with_their_codes() {
    let mut h = Harness::new("AXB", "", &[(X1, "010")]);
    let bind = json!({"callerNum": a(1), "calleeNum": a(2), "relationNum": X1, "maxDuration": 1});
    h.ok(Endpoint::Axb, &Method::POST, bind);
    let route = h.route(&a(1), X1, None);

    let rejected = play(&call(Mode::Axb, &a(1), X1, false, 100), &route);
    let kinds: Vec<EventType> = rejected.events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        kinds,
        [
            EventType::Callin,
            EventType::Callout,
            EventType::Alerting,
            EventType::Disconnect
        ]
    );
    assert_eq!(rejected.state_code, code::CALLEE_REJECTED);
    assert_eq!(
        (rejected.fee.fwd_unasw_rsn, rejected.fee.sip_status_code),
        (Some(21), Some(603))
    );
    assert!(rejected.fee.fail_time.is_some() && rejected.fee.fwd_answer_time.is_none());

    let capped = play(&call(Mode::Axb, &a(1), X1, true, 100), &route);
    assert_eq!(capped.state_code, code::MAX_DURATION);
    assert_eq!(
        capped.fee.call_end_time.as_deref(),
        Some("1970-01-01 00:01:06")
    );

    let nobody = h.route(&a(3), X1, None);
    let refused = play(&call(Mode::Axb, &a(3), X1, true, 100), &nobody);
    let kinds: Vec<EventType> = refused.events.iter().map(|e| e.event_type).collect();
    assert_eq!(kinds, [EventType::Callin, EventType::Disconnect]);
    let fee = &refused.fee;
    assert_eq!(
        (fee.direction, fee.ul_fail_reason),
        (Some(2), Some(code::NO_BINDING))
    );
    assert_eq!(
        fee.subscription_id.as_deref(),
        Some(""),
        "an empty subscriptionId"
    );
    assert_eq!(fee.fwd_dst_num, None);
}

#[test]
fn the_x_mode_answer_decides_the_route() {
    let connect = |info: ConnectInfo| decide(Some(CallinAnswer::connect(info)), X1);
    let to = |n: &str| ConnectInfo {
        callee_num: n.into(),
        user_data: Some("u".into()),
        max_duration: Some(2),
        ..ConnectInfo::default()
    };
    let route = connect(to(&a(2)));
    assert!(
        matches!(&route.routing, Routing::Forward { callee, display, .. } if *callee == a(2) && display == X1)
    );
    assert_eq!(
        (route.bound.user_data.as_deref(), route.bound.max_minutes),
        (Some("u"), 2)
    );
    assert_eq!(outcome(&connect(to("13800000002"))), Err(code::NO_BINDING));
    let too_long = ConnectInfo {
        max_duration: Some(7200),
        ..to(&a(2))
    };
    assert_eq!(outcome(&connect(too_long)), Err(code::NO_BINDING));
    let close = decide(
        Some(CallinAnswer::close(CloseInfo {
            close_hint_tone: None,
            user_data: Some("bye".into()),
        })),
        X1,
    );
    assert_eq!(
        (outcome(&close), close.bound.user_data.as_deref()),
        (Err(code::X_CLOSED), Some("bye"))
    );
    assert_eq!(outcome(&decide(None, X1)), Err(code::NO_BINDING));

    let played = play(&call(Mode::X, &a(1), X1, true, 10), &route);
    let callin = &played.events[0].status_info;
    assert!(callin.is_block() && callin.user_data.is_none());
    assert_eq!(played.events[1].status_info.user_data.as_deref(), Some("u"));
    assert_eq!(played.fee.notify_mode.as_deref(), Some("Block"));
    assert_eq!(
        (
            played.fee.user_data.as_deref(),
            played.fee.subscription_id.as_ref()
        ),
        (Some("u"), None)
    );
}
