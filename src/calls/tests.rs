//! The call log over a pool on a temporary store: X-mode routes, the change feed, call events
//! and CDRs merged, deduplicated and linked, SMS, number status, and retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::lifecycle::{AppSetup, BindParams, Binding, BindingKey, NumberStatus, RetentionPolicy};
use crate::platform::Mode;
use crate::platform::push::{CallEvent, EventType, FeeInfo, NumInfo, SmsEvent, StatusInfo};

const START: i64 = 1_700_000_000_000;
const X: &str = "+8617000000001";
const A: &str = "+8613800000001";
const B: &str = "+8613900000002";

#[derive(Debug)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Fixture {
    store: Arc<Store>,
    pool: Arc<Pool>,
    log: CallLog,
    clock: Arc<ManualClock>,
}

fn app(mode: Mode) -> AppSetup {
    AppSetup::without_platform("calls", mode)
}

impl Fixture {
    async fn new() -> Fixture {
        let store = Arc::new(Store::open_temporary().unwrap());
        let clock = Arc::new(ManualClock(AtomicI64::new(START)));
        Fixture::on(store, clock, true).await
    }

    async fn on(store: Arc<Store>, clock: Arc<ManualClock>, add: bool) -> Fixture {
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let retention = RetentionPolicy {
            released_ms: 3_600_000,
            request_ms: 3_600_000,
        };
        let pool = Arc::new(
            Pool::open(
                Arc::clone(&store),
                vec![app(Mode::X)],
                &dyn_clock,
                retention,
            )
            .unwrap(),
        );
        if add {
            let numbers = [
                (X.to_owned(), "010".to_owned()),
                ("+8617000000002".to_owned(), "010".to_owned()),
            ];
            pool.add_configured_numbers("calls", &numbers)
                .await
                .unwrap();
        }
        let log = CallLog::new(
            Arc::clone(&store),
            Arc::clone(&pool),
            dyn_clock,
            CallLogSettings {
                retention_days: 31,
                watch_retention_hours: 24,
            },
        );
        Fixture {
            store,
            pool,
            log,
            clock,
        }
    }

    async fn bind(&self, a: &str, b: &str, x: Option<&str>) -> Binding {
        let params = BindParams {
            app: "calls".into(),
            party_a: a.into(),
            party_b: Some(b.into()),
            x_number: x.map(str::to_owned),
            ..BindParams::default()
        };
        self.pool
            .bind(params, Duration::from_secs(1))
            .await
            .unwrap()
    }

    fn changes(&self, after: u64) -> Vec<Change> {
        self.log
            .changes_after(after, &ChangeFilter::default(), 100)
            .unwrap()
    }
}

fn event(kind: EventType, session: &str, time: &str, f: impl FnOnce(&mut StatusInfo)) -> CallEvent {
    let mut info = StatusInfo {
        timestamp: Some(time.into()),
        session_id: Some(session.into()),
        ..StatusInfo::default()
    };
    f(&mut info);
    CallEvent {
        event_type: kind,
        status_info: info,
    }
}

#[tokio::test]
async fn x_mode_routes_follow_bindings_and_survive_a_restart() {
    let f = Fixture::new().await;
    let b = f.bind(A, B, Some(X)).await;
    let app = f.pool.app("calls").unwrap();
    let route = app.route_call(A, X).unwrap();
    assert_eq!(route.callee, B);
    assert_eq!(route.binding_id, b.id);
    assert_eq!(app.route_call(B, X).unwrap().callee, A);
    assert_eq!(app.route_call("+8613700000003", X), None);
    assert_eq!(app.route_call(A, "+8617000000002"), None);

    let (store, clock) = (Arc::clone(&f.store), Arc::clone(&f.clock));
    drop(f);
    let f = Fixture::on(store, clock, false).await;
    let app = f.pool.app("calls").unwrap();
    assert_eq!(
        app.route_call(A, X).unwrap().callee,
        B,
        "restored at start-up"
    );
    f.pool.unbind(&BindingKey::Id(b.id)).await.unwrap();
    assert_eq!(app.route_call(A, X), None, "gone with its binding");

    // The same caller on the same X by a new binding: its calls go by the new one.
    let c = "+8613700000003";
    let again = f.bind(A, c, Some(X)).await;
    let route = app.route_call(A, X).unwrap();
    assert_eq!((route.binding_id, route.callee.as_str()), (again.id, c));
    assert_eq!(app.route_call(B, X), None, "B left with the first binding");
}

#[tokio::test]
async fn the_feed_has_every_binding_change_in_order_and_resumes_from_a_cursor() {
    let f = Fixture::new().await;
    assert_eq!(f.log.last_change(), 0);
    let b = f.bind(A, B, None).await;
    f.pool.unbind(&BindingKey::Id(b.id)).await.unwrap();
    let all = f.changes(0);
    let kinds: Vec<ChangeKind> = all.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [ChangeKind::BindingBound, ChangeKind::BindingReleased]
    );
    assert!(all[0].seq < all[1].seq);
    assert_eq!(all[0].binding.as_ref().unwrap().id, b.id);
    assert_eq!(f.log.last_change(), all[1].seq);
    // Resuming after the first sees only the second.
    let rest = f.changes(all[0].seq);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].seq, all[1].seq);
    // A filter on kind and app.
    let only_released = ChangeFilter {
        apps: vec!["calls".into()],
        kinds: vec![ChangeKind::BindingReleased],
    };
    let page = f.log.scan_changes(0, &only_released, 10).unwrap();
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.cursor, all[1].seq);
    let other_app = ChangeFilter {
        apps: vec!["rides".into()],
        kinds: vec![],
    };
    let page = f.log.scan_changes(0, &other_app, 10).unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(page.cursor, all[1].seq, "read past what it filtered out");
}

#[tokio::test]
async fn events_are_merged_by_session_stored_once_and_linked_to_their_binding() {
    let f = Fixture::new().await;
    let b = f.bind(A, B, Some(X)).await;
    let user_data = b.id.to_string();
    let s = "s-1@callenabler";
    // Out of order: the disconnect and the answer come before the callin.
    let disconnect = event(EventType::Disconnect, s, "2024-03-01 02:17:40", |i| {
        i.caller = Some(A.into());
        i.called = Some(B.into());
        i.state_code = Some(0);
        i.user_data = Some(user_data.clone());
    });
    assert_eq!(
        f.log.record_event("calls", &disconnect).await.unwrap(),
        Stored::New
    );
    assert_eq!(
        f.log.record_event("calls", &disconnect).await.unwrap(),
        Stored::Duplicate,
        "a retried push is stored once"
    );
    let answer = event(EventType::Answer, s, "2024-03-01 02:15:07", |i| {
        i.called = Some(B.into());
        i.user_data = Some(user_data.clone());
    });
    f.log.record_event("calls", &answer).await.unwrap();
    let callin = event(EventType::Callin, s, "2024-03-01 02:14:55", |i| {
        i.caller = Some(A.into());
        i.called = Some(X.into());
        i.notify_mode = Some("Block".into());
    });
    f.log.record_event("calls", &callin).await.unwrap();

    let (calls, more) = f.log.list_calls(&CallFilter::default(), None, 10).unwrap();
    assert!(!more);
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(
        c.binding_id,
        Some(b.id),
        "linked by X and caller, and by userData"
    );
    assert_eq!(c.x.as_deref(), Some(X));
    assert_eq!(c.caller.as_deref(), Some(A));
    assert_eq!(c.callee.as_deref(), Some(B));
    assert_eq!(c.state_code, Some(0));
    assert_eq!(
        c.state_text.as_deref(),
        Some("normal hang-up after the call was connected")
    );
    assert_eq!(c.duration_seconds, 153);
    let order: Vec<&str> = c.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        order,
        ["callin", "answer", "disconnect"],
        "in the order they happened"
    );
    // Filters: by binding, party, X; a party of nothing finds nothing.
    let by = |filter: CallFilter| f.log.list_calls(&filter, None, 10).unwrap().0.len();
    assert_eq!(
        by(CallFilter {
            binding_id: Some(b.id),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(CallFilter {
            party: Some(B.into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(CallFilter {
            x: Some(X.into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(CallFilter {
            party: Some("+8613700000009".into()),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        by(CallFilter {
            to_ms: Some(START - 1),
            ..Default::default()
        }),
        0
    );
    // Events page through the call in order.
    let (first, more) = f.log.list_events(&CallFilter::default(), None, 2).unwrap();
    assert!(more);
    assert_eq!(first.len(), 2);
    let cursor = EventCursor {
        call_id: first[1].call_id,
        index: 1,
    };
    let (rest, more) = f
        .log
        .list_events(&CallFilter::default(), Some(cursor), 2)
        .unwrap();
    assert!(!more);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event_type, "disconnect");
    // Each stored event is on the feed once.
    let events = f
        .changes(0)
        .into_iter()
        .filter(|c| c.kind == ChangeKind::CallEvent)
        .count();
    assert_eq!(events, 3);
}

fn fee(session: &str, icid: &str) -> FeeInfo {
    FeeInfo {
        session_id: Some(session.into()),
        icid: Some(icid.into()),
        bind_num: Some(X.into()),
        caller_num: Some(A.into()),
        fwd_dst_num: Some(B.into()),
        call_in_time: Some("2024-03-01 02:14:55".into()),
        fwd_answer_time: Some("2024-03-01 02:15:07".into()),
        call_end_time: Some("2024-03-01 02:17:40".into()),
        record_flag: Some(1),
        record_domain: Some("ostor.example.com".into()),
        record_bucket_name: Some("sp".into()),
        record_object_name: Some("1.wav".into()),
        ..FeeInfo::default()
    }
}

#[tokio::test]
async fn cdrs_join_their_call_once_and_unknown_ones_are_skipped() {
    let f = Fixture::new().await;
    let b = f.bind(A, B, Some(X)).await;
    let mut no_session = fee("", "");
    no_session.session_id = None;
    no_session.icid = None;
    let mut elsewhere = fee("s-9", "i-9");
    elsewhere.bind_num = Some("+8617999999999".into());
    let batch = [fee("s-1", "i-1"), fee("s-2", "i-2"), no_session, elsewhere];
    let counts = f.log.record_fees(None, &batch).await.unwrap();
    assert_eq!(
        counts,
        FeeCounts {
            stored: 2,
            duplicates: 0,
            skipped: 2
        }
    );
    let again = f.log.record_fees(None, &batch[..2]).await.unwrap();
    assert_eq!(
        again,
        FeeCounts {
            stored: 0,
            duplicates: 2,
            skipped: 0
        }
    );
    let (calls, _) = f
        .log
        .list_calls(
            &CallFilter {
                binding_id: Some(b.id),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(calls.len(), 2, "linked by X and parties");
    assert!(calls.iter().all(|c| c.has_cdr && c.duration_seconds == 153));
    assert_eq!(
        calls[0].recording,
        Some(Recording {
            domain: "ostor.example.com".into(),
            bucket: "sp".into(),
            object: "1.wav".into()
        })
    );
}

#[tokio::test]
async fn sms_are_stored_once_per_identifier_and_mode_with_their_segments() {
    let f = Fixture::new().await;
    let sms = SmsEvent {
        sms_identifier: Some("m-1".into()),
        notification_mode: Some("Block".into()),
        calling: Some(A.into()),
        virtual_number: Some(X.into()),
        sms_content: Some("你".repeat(71)),
        ..SmsEvent::default()
    };
    assert_eq!(f.log.record_sms("calls", &sms).await.unwrap(), Stored::New);
    assert_eq!(
        f.log.record_sms("calls", &sms).await.unwrap(),
        Stored::Duplicate
    );
    let notify = SmsEvent {
        notification_mode: Some("Notify".into()),
        ..sms.clone()
    };
    assert_eq!(
        f.log.record_sms("calls", &notify).await.unwrap(),
        Stored::New
    );
    let (messages, _) = f
        .log
        .list_messages(&CallFilter::default(), None, 10)
        .unwrap();
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| m.segments == 2));
}

#[tokio::test]
async fn a_number_the_platform_holds_is_not_handed_out_until_it_is_normal_again() {
    let f = Fixture::new().await;
    let app = f.pool.app("calls").unwrap();
    let status = |code: &str| NumInfo {
        number: X.into(),
        status: code.into(),
        cause: Some("2".into()),
    };
    let counts = app.set_number_status(&[status("10")]).await.unwrap();
    assert_eq!(counts.changed, 1);
    assert_eq!(
        app.set_number_status(&[status("10")])
            .await
            .unwrap()
            .unchanged,
        1
    );
    let unknown = NumInfo {
        number: "+8617999999999".into(),
        ..status("10")
    };
    assert_eq!(app.set_number_status(&[unknown]).await.unwrap().skipped, 1);
    let stats = app.stats();
    assert_eq!(stats[0].held_by_platform, 1);
    assert_eq!(stats[0].free, 1);
    // Binds never get it: all go to the other number.
    for n in 0..5 {
        let b = f
            .bind(
                &format!("+861380000010{n}"),
                &format!("+861390000020{n}"),
                None,
            )
            .await;
        assert_ne!(b.x, X);
    }
    let feed = f.changes(0);
    let held = feed
        .iter()
        .find(|c| c.kind == ChangeKind::NumberStatus)
        .unwrap();
    assert_eq!(
        held.number.as_ref().unwrap().status,
        NumberStatus::Unavailable
    );
    assert_eq!(held.number.as_ref().unwrap().cause.as_deref(), Some("2"));

    // It survives a restart, and "5" puts it back.
    let (store, clock) = (Arc::clone(&f.store), Arc::clone(&f.clock));
    drop(f);
    drop(app);
    let f = Fixture::on(store, clock, false).await;
    let app = f.pool.app("calls").unwrap();
    assert_eq!(app.stats()[0].held_by_platform, 1);
    app.set_number_status(&[status("5")]).await.unwrap();
    assert_eq!(app.stats()[0].held_by_platform, 0);
    let b = f.bind("+8613800000200", "+8613900000200", Some(X)).await;
    assert_eq!(b.x, X);
}

#[tokio::test]
async fn retention_deletes_old_calls_and_old_feed_entries_and_a_stale_token_is_out_of_range() {
    let f = Fixture::new().await;
    f.bind(A, B, None).await;
    let e = event(EventType::Callin, "s-1", "2024-03-01 02:14:55", |i| {
        i.caller = Some(A.into());
        i.called = Some(X.into());
    });
    f.log.record_event("calls", &e).await.unwrap();
    let first = f.changes(0)[0].seq;
    assert_eq!(f.log.prune().await.unwrap(), CallLogRound::default());
    f.clock.0.fetch_add(25 * 3_600_000, Ordering::SeqCst);
    let round = f.log.prune().await.unwrap();
    assert_eq!(round.changes, 2);
    assert_eq!(round.calls, 0, "calls are kept for days");
    // With nothing kept, a token from before the pruned changes is already out of range.
    assert_eq!(
        f.log
            .changes_after(first, &ChangeFilter::default(), 10)
            .unwrap_err()
            .reason(),
        crate::lifecycle::Reason::WatchExpired
    );
    f.bind("+8613800000300", "+8613900000300", None).await;
    let err = f
        .log
        .changes_after(first, &ChangeFilter::default(), 10)
        .unwrap_err();
    assert_eq!(err.reason(), crate::lifecycle::Reason::WatchExpired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_callin_is_linked_to_its_route_and_rides_the_next_sync() {
    let f = Arc::new(Fixture::new().await);
    let b = f.bind(A, B, Some(X)).await;
    let route = f.pool.app("calls").unwrap().route_call(A, X).unwrap();
    let callin = event(EventType::Callin, "s-9", "2024-03-01 02:14:55", |i| {
        i.caller = Some(A.into());
        i.called = Some(X.into());
        i.notify_mode = Some("Block".into());
    });
    let syncs = f.store.sync_count();
    let stored = {
        let (f, callin) = (Arc::clone(&f), callin.clone());
        let routed = Some(route.binding_id.into());
        tokio::spawn(async move { f.log.record_answered_callin("calls", &callin, routed).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stored.is_finished(), "it asks for no sync of its own");
    assert_eq!(f.store.sync_count(), syncs);

    // The next write someone waits for makes it durable too.
    f.bind("+8613700000003", "+8613700000004", Some(X)).await;
    let stored = tokio::time::timeout(Duration::from_secs(10), stored).await;
    assert_eq!(stored.unwrap().unwrap().unwrap(), Stored::New);
    let (calls, _) = f.log.list_calls(&CallFilter::default(), None, 10).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].binding_id,
        Some(b.id),
        "the binding the answer connected"
    );
    assert_eq!(
        f.log.record_event("calls", &callin).await.unwrap(),
        Stored::Duplicate,
        "stored once, whichever way it came"
    );
}
