use super::*;
use crate::calls::{CallEventEntry, CallId, Message};
use crate::lifecycle::NumberStatus;

fn field(e: PoolError) -> String {
    match e {
        PoolError::InvalidArgument { field, .. } => field,
        other => panic!("not INVALID_ARGUMENT: {other:?}"),
    }
}

#[test]
fn a_watch_request_is_checked() {
    let start = |r: pb::WatchRequest| WatchStart::try_from(r);
    let all = start(pb::WatchRequest::default()).unwrap();
    assert_eq!(
        (all.filter, all.from),
        (ChangeFilter::default(), WatchFrom::Now)
    );
    let narrow = start(pb::WatchRequest {
        apps: vec!["rides".into()],
        kinds: vec![
            pb::WatchKind::BindingBound.into(),
            pb::WatchKind::Message.into(),
        ],
        resume_token: resume::token(42),
        from_oldest: false,
    })
    .unwrap();
    assert_eq!(narrow.filter.apps, ["rides"]);
    assert_eq!(
        narrow.filter.kinds,
        [ChangeKind::BindingBound, ChangeKind::Message]
    );
    assert_eq!(narrow.from, WatchFrom::After(42));
    let oldest = start(pb::WatchRequest {
        from_oldest: true,
        ..Default::default()
    });
    assert_eq!(oldest.unwrap().from, WatchFrom::Oldest);

    let bad = |r: pb::WatchRequest| field(start(r).unwrap_err());
    assert_eq!(
        bad(pb::WatchRequest {
            resume_token: "AQ==".into(),
            ..Default::default()
        }),
        "resume_token"
    );
    assert_eq!(
        bad(pb::WatchRequest {
            resume_token: resume::token(1),
            from_oldest: true,
            ..Default::default()
        }),
        "from_oldest"
    );
    assert_eq!(
        bad(pb::WatchRequest {
            kinds: vec![pb::WatchKind::CallEvent.into(), 0],
            ..Default::default()
        }),
        "kinds[1]"
    );
    assert_eq!(
        bad(pb::WatchRequest {
            kinds: vec![99],
            ..Default::default()
        }),
        "kinds[0]"
    );
    assert_eq!(
        bad(pb::WatchRequest {
            apps: vec!["rides".into(), String::new()],
            ..Default::default()
        }),
        "apps[1]"
    );
}

#[test]
fn every_watch_kind_is_a_change_kind_and_back() {
    for value in 1..=8 {
        let kind = change_kind(value).unwrap_or_else(|| panic!("{value}"));
        assert_eq!(i32::from(watch_kind(kind)), value);
    }
    assert_eq!(change_kind(9), None);
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

fn message() -> Message {
    Message {
        id: CallId([4; 16]),
        app: "rides".into(),
        sms_identifier: "sms-1".into(),
        notification_mode: "Notify".into(),
        calling: Some("+8613900000001".into()),
        called: None,
        x: Some("+8617010000001".into()),
        binding_id: None,
        subscription_id: None,
        time_ms: Some(5_000),
        segments: 2,
        content: Some("hello".into()),
        received_ms: 5_100,
    }
}

#[test]
fn changes_carry_the_payload_of_their_kind() {
    use pb::watch_event::Payload;
    let change = |kind| Change {
        seq: 7,
        at_ms: 9_000,
        app: "rides".into(),
        kind,
        binding: None,
        number: Some(NumberStatusChange {
            number: "+8617010000001".into(),
            status: NumberStatus::Unavailable,
            cause: Some("2".into()),
        }),
        call_event: Some(event(CallId([1; 16]), "answer")),
        message: Some(message()),
    };
    let number = pb::WatchEvent::from(change(ChangeKind::NumberStatus));
    assert_eq!(number.resume_token, resume::token(7));
    assert_eq!(number.kind(), pb::WatchKind::NumberStatus);
    assert_eq!(number.event_time, Some(timestamp(9_000)));
    let Some(Payload::NumberStatus(n)) = number.payload else {
        panic!("{number:?}")
    };
    assert_eq!(
        (n.status(), n.cause.as_str()),
        (pb::NumberStatus::Unavailable, "2")
    );
    let call = pb::WatchEvent::from(change(ChangeKind::CallEvent)).payload;
    assert!(matches!(call, Some(Payload::CallEvent(e)) if e.event_type_name == "answer"));
    let sms = pb::WatchEvent::from(change(ChangeKind::Message)).payload;
    let Some(Payload::Message(m)) = sms else {
        panic!("{sms:?}")
    };
    assert_eq!((m.segments, m.content.as_str()), (2, "hello"));
    assert_eq!(m.send_time, Some(timestamp(5_000)));
    assert_eq!(m.receive_time, Some(timestamp(5_100)));
    assert_eq!(m.called, "");
    // A binding change without its binding has no payload rather than another kind's.
    let bound = pb::WatchEvent::from(change(ChangeKind::BindingBound));
    assert_eq!(
        (bound.kind(), bound.payload),
        (pb::WatchKind::BindingBound, None)
    );
}

#[test]
fn number_statuses_map_one_to_one() {
    for (status, want) in [
        (NumberStatus::Normal, pb::NumberStatus::Normal),
        (NumberStatus::Paused, pb::NumberStatus::Paused),
        (NumberStatus::Unavailable, pb::NumberStatus::Unavailable),
        (NumberStatus::BindingFrozen, pb::NumberStatus::BindingFrozen),
    ] {
        assert_eq!(number_status(status), want);
    }
}
