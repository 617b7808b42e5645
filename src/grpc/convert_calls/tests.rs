use super::*;

fn field(e: PoolError) -> String {
    match e {
        PoolError::InvalidArgument { field, .. } => field,
        other => panic!("not INVALID_ARGUMENT: {other:?}"),
    }
}

fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos })
}

const BINDING: &str = "0190c8a2-7d4e-7b1c-9f3a-2b5c6d7e8f90";
const CALL: &str = "0190c8a2-7d4e-7b1c-9f3a-000000000001";

fn records(r: pb::ListCallRecordsRequest) -> Result<CallPage<CallId>, PoolError> {
    CallPage::try_from(r)
}

#[test]
fn timestamps_round_up_to_whole_milliseconds() {
    let ms = |s, n| {
        millis_ceil(
            "t",
            Timestamp {
                seconds: s,
                nanos: n,
            },
        )
    };
    assert_eq!(ms(1, 0).unwrap(), 1000);
    assert_eq!(ms(1, 1).unwrap(), 1001);
    assert_eq!(ms(1, 999_000_000).unwrap(), 1999);
    assert_eq!(ms(1, 999_999_999).unwrap(), 2000);
    assert_eq!(ms(-1, 500_000_000).unwrap(), -500);
    for (s, n) in [
        (0, -1),
        (0, 1_000_000_000),
        (MAX_SECONDS + 1, 0),
        (MIN_SECONDS - 1, 0),
    ] {
        assert_eq!(field(ms(s, n).unwrap_err()), "t", "{s} {n}");
    }
}

#[test]
fn a_listing_reads_its_filters() {
    let page = records(pb::ListCallRecordsRequest {
        app: "rides".into(),
        binding_id: BINDING.into(),
        party: "+8613900000001".into(),
        x_number: "+8617010000001".into(),
        start_time: ts(100, 0),
        end_time: ts(200, 1),
        page_size: 0,
        page_token: String::new(),
    })
    .unwrap();
    assert_eq!(
        page.filter,
        CallFilter {
            app: Some("rides".into()),
            binding_id: crate::lifecycle::BindingId::parse(BINDING),
            party: Some("+8613900000001".into()),
            x: Some("+8617010000001".into()),
            from_ms: Some(100_000),
            to_ms: Some(200_001),
        }
    );
    assert_eq!((page.after, page.limit), (None, page::DEFAULT_PAGE_SIZE));
    let all = records(pb::ListCallRecordsRequest::default()).unwrap();
    assert_eq!(all.filter, CallFilter::default());
}

#[test]
fn bad_filters_are_refused_naming_the_field() {
    let bad = |r: pb::ListCallRecordsRequest| field(records(r).unwrap_err());
    assert_eq!(
        bad(pb::ListCallRecordsRequest {
            binding_id: "not-a-binding".into(),
            ..Default::default()
        }),
        "binding_id"
    );
    for (start, end) in [(200, 100), (100, 100)] {
        assert_eq!(
            bad(pb::ListCallRecordsRequest {
                start_time: ts(start, 0),
                end_time: ts(end, 0),
                ..Default::default()
            }),
            "end_time",
            "{start}..{end}"
        );
    }
    assert_eq!(
        bad(pb::ListCallRecordsRequest {
            start_time: ts(0, -5),
            ..Default::default()
        }),
        "start_time"
    );
    assert_eq!(
        bad(pb::ListCallRecordsRequest {
            page_size: -1,
            ..Default::default()
        }),
        "page_size"
    );
    assert_eq!(
        bad(pb::ListCallRecordsRequest {
            page_token: "junk".into(),
            ..Default::default()
        }),
        "page_token"
    );
}

#[test]
fn a_page_token_goes_on_with_the_same_filters_only() {
    let request = |app: &str, page_token: String| pb::ListCallRecordsRequest {
        app: app.into(),
        start_time: ts(100, 0),
        page_token,
        ..Default::default()
    };
    let first = records(request("rides", String::new())).unwrap();
    let token = first.filters.token(CALL);
    let next = records(request("rides", token.clone())).unwrap();
    assert_eq!(next.after, CallId::parse(CALL));
    assert_eq!(
        field(records(request("parcels", token.clone())).unwrap_err()),
        "page_token"
    );
    // Another listing with the same filters does not take it either.
    let messages = CallPage::<CallId>::try_from(pb::ListMessagesRequest {
        app: "rides".into(),
        start_time: ts(100, 0),
        page_token: token,
        ..Default::default()
    });
    assert_eq!(field(messages.unwrap_err()), "page_token");
    // A token of this call and filters whose position is not a call id.
    let wrong = first.filters.token("12/3");
    assert_eq!(
        field(records(request("rides", wrong)).unwrap_err()),
        "page_token"
    );
}

#[test]
fn event_positions_round_trip() {
    let cursor = EventCursor {
        call_id: CallId::parse(CALL).unwrap(),
        index: 7,
    };
    let page = CallPage::<EventCursor>::try_from(pb::ListCallEventsRequest::default()).unwrap();
    let token = page.filters.token(&event_position(&cursor));
    let next = CallPage::<EventCursor>::try_from(pb::ListCallEventsRequest {
        page_token: token,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(next.after, Some(cursor));
    for junk in ["", "7", "x/1", &format!("{CALL}/"), &format!("{CALL}/-1")] {
        assert_eq!(parse_event_position(junk), None, "{junk}");
    }
}

fn event(call: CallId, event_type: &str) -> CallEventEntry {
    CallEventEntry {
        call_id: call,
        app: "rides".into(),
        session_id: "s".into(),
        event_type: event_type.into(),
        time_ms: None,
        caller: None,
        called: None,
        state_code: None,
        state_text: None,
        subscription_id: None,
        user_data: None,
        binding_id: None,
        received_ms: 0,
    }
}

#[test]
fn the_next_events_page_starts_after_the_last_events_place_in_its_call() {
    let (a, b) = (CallId([1; 16]), CallId([2; 16]));
    let page = [event(a, "callin"), event(a, "callout"), event(b, "callin")];
    let at = |call, index| {
        Some(EventCursor {
            call_id: call,
            index,
        })
    };
    assert_eq!(next_event_cursor(None, &page), at(b, 0));
    assert_eq!(next_event_cursor(None, &page[..2]), at(a, 1));
    // The page goes on in the call where the previous one stopped.
    assert_eq!(next_event_cursor(at(a, 4), &page[..2]), at(a, 6));
    assert_eq!(next_event_cursor(at(a, 4), &page), at(b, 0));
    assert_eq!(next_event_cursor(at(a, 4), &[]), None);
}

#[test]
fn event_types_keep_their_wire_name() {
    let call = CallId([1; 16]);
    for (name, want) in [
        ("callin", pb::CallEventType::Callin),
        ("collectInfo", pb::CallEventType::CollectInfo),
        ("callout", pb::CallEventType::Callout),
        ("alerting", pb::CallEventType::Alerting),
        ("answer", pb::CallEventType::Answer),
        ("disconnect", pb::CallEventType::Disconnect),
        ("transfer", pb::CallEventType::Unspecified),
    ] {
        let e = pb::CallEvent::from(event(call, name));
        assert_eq!((e.event_type(), e.event_type_name.as_str()), (want, name));
    }
}

#[test]
fn a_call_record_shows_every_field() {
    let id = CallId([3; 16]);
    let binding = crate::lifecycle::BindingId::parse(BINDING).unwrap();
    let mut disconnect = event(id, "disconnect");
    disconnect.state_code = Some(0);
    disconnect.time_ms = Some(61_000);
    let record = CallRecord {
        id,
        app: "rides".into(),
        session_id: "1200_1029@host".into(),
        binding_id: Some(binding),
        subscription_id: Some("sub-1".into()),
        x: Some("+8617010000001".into()),
        caller: Some("+8613900000001".into()),
        callee: Some("+8613900000002".into()),
        direction: Some(1),
        start_ms: Some(1_000),
        answer_ms: Some(2_000),
        end_ms: Some(61_000),
        duration_seconds: 59,
        state_code: Some(0),
        state_text: Some("normal hang-up".into()),
        recording: Some(Recording {
            domain: "d".into(),
            bucket: "b".into(),
            object: "o.wav".into(),
        }),
        has_cdr: true,
        events: vec![event(id, "callin"), disconnect],
        first_seen_ms: 1_000,
        updated_ms: 62_500,
    };
    let pb = pb::CallRecord::from(record);
    assert_eq!(pb.call_id, id.to_string());
    assert_eq!(pb.binding_id, BINDING);
    assert_eq!(pb.x_number, "+8617010000001");
    assert_eq!((pb.direction, pb.state_code), (Some(1), Some(0)));
    assert_eq!(pb.start_time, Some(timestamp(1_000)));
    assert_eq!(pb.answer_time, Some(timestamp(2_000)));
    assert_eq!(pb.end_time, Some(timestamp(61_000)));
    assert_eq!(pb.duration.map(|d| (d.seconds, d.nanos)), Some((59, 0)));
    assert_eq!(pb.recording.unwrap().object, "o.wav");
    assert!(pb.has_cdr);
    assert_eq!(pb.events.len(), 2);
    assert_eq!(pb.events[1].state_code, Some(0));
    assert_eq!(pb.events[1].event_time, Some(timestamp(61_000)));
    assert_eq!(pb.create_time, Some(timestamp(1_000)));
    assert_eq!(pb.update_time, Some(timestamp(62_500)));
}
