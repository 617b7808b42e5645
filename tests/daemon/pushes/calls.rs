//! Calls end to end, as a platform team sees them: a Bind, a call the simulator plays through
//! the binding, and the call record over gRPC (`CallService`), linked to its binding with the
//! platform's hang-up code; the same push twice stored once; a CDR batch with a broken record;
//! number status taking an X out of rotation; the Watch stream of it all, resumed.

use std::time::Duration;

use serde_json::json;
use xpool::grpc::pb;
use xpool::grpc::pb::call_service_client::CallServiceClient;

use super::*;

/// One app per mode, every platform app pushing to the receiver.
fn every_mode() -> Setup {
    Setup::new(vec![
        App::new("rides", "k-axb", "AXB").numbers(8617000000001, &["010", "010"]),
        App::new("drivers", "k-ax", "AX").numbers(8617100000001, &["010", "010"]),
        App::new("stores", "k-axe", "AXE")
            .both("extension_digits", 2)
            .numbers(8617200000001, &["010"]),
        App::new("chat", "k-axyb", "AXYB").numbers(8617300000001, &["010", "010"]),
        App::new("xmode", "k-x", "X").numbers(8617600000001, &["010"]),
    ])
    .receiver()
}

/// Talk time of every answered call here.
const TALK_SECONDS: i64 = 60;

/// Plays a call of `app_key` from `from` to `to` (with the `extra` fields of `/sim/call`),
/// then moves the simulator's clock past the call's end so that its CDR is pushed too; the
/// control's answer (`sessionId`, `stateCode`, `connectedTo`).
async fn call(d: &Daemon, app_key: &str, from: &str, to: &str, extra: Value) -> Value {
    let mut body = json!({"app_key": app_key, "from": from, "to": to,
        "talk_seconds": TALK_SECONDS});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let answer = d.sim.control_post("/sim/call", body).await;
    d.sim.advance_clock(2 * TALK_SECONDS as u64).await;
    answer
}

async fn call_service(d: &Daemon) -> CallServiceClient<tonic::transport::Channel> {
    CallServiceClient::connect(d.addr.clone()).await.unwrap()
}

/// Every call record `req` lists (one page is enough here).
async fn records(d: &Daemon, req: pb::ListCallRecordsRequest) -> Vec<pb::CallRecord> {
    let page = rpc(
        "ListCallRecords",
        call_service(d).await.list_call_records(req),
    )
    .await
    .unwrap();
    assert!(page.next_page_token.is_empty(), "one page");
    page.call_records
}

/// The one call record of binding `id`.
async fn record_of(d: &Daemon, id: &str) -> pb::CallRecord {
    let req = pb::ListCallRecordsRequest {
        binding_id: id.into(),
        ..Default::default()
    };
    let mut list = records(d, req).await;
    assert_eq!(list.len(), 1, "one call through {id}: {list:#?}");
    list.remove(0)
}

/// Every call event `req` lists.
async fn events(d: &Daemon, req: pb::ListCallEventsRequest) -> Vec<pb::CallEvent> {
    let page = rpc(
        "ListCallEvents",
        call_service(d).await.list_call_events(req),
    )
    .await
    .unwrap();
    assert!(page.next_page_token.is_empty(), "one page");
    page.call_events
}

fn event_types(record: &pb::CallRecord) -> Vec<pb::CallEventType> {
    record.events.iter().map(|e| e.event_type()).collect()
}

/// A call that was answered and talked for [`TALK_SECONDS`], as the simulator played it, and
/// as a record: linked to `binding`, with its events, CDR, times and hang-up code.
#[track_caller]
fn assert_answered(record: &pb::CallRecord, binding: &pb::Binding, played: &Value, from: &str) {
    use pb::CallEventType as T;
    let what = format!("{} call: {record:#?}", binding.app);
    assert_eq!(played["stateCode"], 0, "{played}");
    assert_eq!(record.session_id, text(played, "sessionId"), "{what}");
    assert_eq!(record.binding_id, binding.binding_id, "{what}");
    assert_eq!(record.app, binding.app, "{what}");
    assert_eq!(record.x_number, binding.x_number, "{what}");
    assert_eq!(record.caller, from, "{what}");
    assert_eq!(record.state_code, Some(0), "{what}");
    assert!(!record.state_text.is_empty(), "{what}");
    assert!(record.has_cdr, "{what}");
    assert_eq!(
        record.duration.map(|d| d.seconds),
        Some(TALK_SECONDS),
        "{what}"
    );
    let (start, answer, end) = (
        record.start_time.expect(&what),
        record.answer_time.expect(&what),
        record.end_time.expect(&what),
    );
    assert!(
        start.seconds <= answer.seconds && answer.seconds < end.seconds,
        "{what}"
    );
    // AXE: the caller keys in the extension first.
    let collect = (binding.mode() == pb::Mode::Axe).then_some(T::CollectInfo);
    let expected: Vec<T> = [T::Callin]
        .into_iter()
        .chain(collect)
        .chain([T::Callout, T::Alerting, T::Answer, T::Disconnect])
        .collect();
    assert_eq!(event_types(record), expected, "{what}");
    for event in &record.events {
        assert_eq!(event.binding_id, binding.binding_id, "{what}");
        assert_eq!(event.session_id, record.session_id, "{what}");
    }
}

#[tokio::test]
async fn every_modes_call_is_recorded_against_its_binding() {
    let d = Daemon::start_with(every_mode()).await;
    let (a, b, c) = (party(1), party(2), party(3));

    // AX: anyone who calls X reaches A.
    let ax = d.bind_ok(bind("drivers", &a, None)).await;
    let played = call(&d, "k-ax", &c, &ax.x_number, json!({})).await;
    assert_eq!(played["connectedTo"], a.as_str(), "{played}");
    assert_answered(&record_of(&d, &ax.binding_id).await, &ax, &played, &c);

    // AXB: A reaches B through X.
    let axb = d.bind_ok(bind("rides", &a, Some(&b))).await;
    let played = call(&d, "k-axb", &a, &axb.x_number, json!({})).await;
    assert_eq!(played["connectedTo"], b.as_str(), "{played}");
    assert_answered(&record_of(&d, &axb.binding_id).await, &axb, &played, &a);

    // AXE: the caller keys in the extension.
    let axe = d.bind_ok(bind("stores", &a, None)).await;
    assert!(!axe.extension.is_empty());
    let extra = json!({"extension": axe.extension});
    let played = call(&d, "k-axe", &c, &axe.x_number, extra).await;
    assert_eq!(played["connectedTo"], a.as_str(), "{played}");
    assert_answered(&record_of(&d, &axe.binding_id).await, &axe, &played, &c);

    // AXYB: B reaches A through X.
    let axyb = d.bind_ok(bind("chat", &a, Some(&b))).await;
    let played = call(&d, "k-axyb", &b, &axyb.x_number, json!({})).await;
    assert_eq!(played["connectedTo"], a.as_str(), "{played}");
    assert_answered(&record_of(&d, &axyb.binding_id).await, &axyb, &played, &b);

    // X: the receiver's answer connects A to B; its userData links the record.
    let x = d.bind_ok(bind("xmode", &a, Some(&b))).await;
    let played = call(&d, "k-x", &a, &x.x_number, json!({})).await;
    assert_eq!(played["connectedTo"], b.as_str(), "{played}");
    assert_answered(&record_of(&d, &x.binding_id).await, &x, &played, &a);

    // Each app's records are its own.
    for app in ["drivers", "rides", "stores", "chat", "xmode"] {
        let req = pb::ListCallRecordsRequest {
            app: app.into(),
            ..Default::default()
        };
        assert_eq!(records(&d, req).await.len(), 1, "{app}");
    }
    d.stop().await;
}

#[tokio::test]
async fn calls_that_fail_are_recorded_with_the_platforms_code() {
    let d = Daemon::start_with(every_mode()).await;
    let (a, b, stranger) = (party(1), party(2), party(9));
    let axb = d.bind_ok(bind("rides", &a, Some(&b))).await;

    // B does not pick up.
    let unanswered = call(&d, "k-axb", &a, &axb.x_number, json!({"answer": false})).await;
    let code = unanswered["stateCode"].as_i64().unwrap();
    assert_ne!(code, 0, "{unanswered}");
    let record = record_of(&d, &axb.binding_id).await;
    assert_eq!(record.state_code, Some(code as i32), "{record:#?}");
    assert!(record.answer_time.is_none(), "{record:#?}");
    assert_eq!(record.duration.map(|d| d.seconds).unwrap_or(0), 0);
    assert!(!record.state_text.is_empty());

    // A stranger calls X: no binding, 8014; recorded on the X, linked to nothing.
    let unbound = call(&d, "k-axb", &stranger, &axb.x_number, json!({})).await;
    assert_eq!(unbound["stateCode"], 8014, "{unbound}");
    let by_party = pb::ListCallRecordsRequest {
        party: stranger.clone(),
        ..Default::default()
    };
    let list = records(&d, by_party).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(
        (list[0].state_code, list[0].binding_id.as_str()),
        (Some(8014), ""),
        "{list:#?}"
    );
    assert_eq!(list[0].x_number, axb.x_number);

    // X mode: a caller with no binding on X is closed by the receiver, 8017.
    let x = d.bind_ok(bind("xmode", &a, Some(&b))).await;
    let closed = call(&d, "k-x", &stranger, &x.x_number, json!({})).await;
    assert_eq!(closed["stateCode"], 8017, "{closed}");
    let req = pb::ListCallRecordsRequest {
        app: "xmode".into(),
        ..Default::default()
    };
    let list = records(&d, req).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(
        (list[0].state_code, list[0].binding_id.as_str()),
        (Some(8017), ""),
        "{list:#?}"
    );
    assert_eq!(list[0].caller, stranger);
    d.stop().await;
}

/// The bodies the simulator pushed to `app_key`, with the URL each went to.
async fn pushed(d: &Daemon, app_key: &str) -> Vec<(String, Value)> {
    let pushes = sim_pushes(d, app_key).await;
    pushes["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (text(p, "url"), p["body"].clone()))
        .collect()
}

/// POSTs `body` to `url` signed as the AXB app, as the platform does; the HTTP status.
async fn push_again(url: &str, body: &Value) -> u16 {
    let request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json;charset=UTF-8")
        .body(body.to_string());
    let signed = sign(
        request,
        Scheme::Aksk,
        "k-axb",
        "s-axb",
        OffsetDateTime::now_utc(),
    );
    send(signed).await.0
}

#[tokio::test]
async fn a_repeated_push_is_stored_once() {
    let d = Daemon::start_with(every_mode()).await;
    let (a, b) = (party(1), party(2));
    let axb = d.bind_ok(bind("rides", &a, Some(&b))).await;
    call(&d, "k-axb", &a, &axb.x_number, json!({})).await;
    let before = record_of(&d, &axb.binding_id).await;
    assert!(before.has_cdr && before.events.len() == 5, "{before:#?}");

    // The platform sends everything again (a retry whose first answer it lost), newest first.
    let pushes = pushed(&d, "k-axb").await;
    assert_eq!(pushes.len(), 6, "five events and a CDR");
    for (url, body) in pushes.iter().rev() {
        assert_eq!(push_again(url, body).await, 200, "{body}");
    }
    let after = record_of(&d, &axb.binding_id).await;
    assert_eq!(after.events, before.events);
    assert_eq!(after.duration, before.duration);
    let req = pb::ListCallEventsRequest {
        binding_id: axb.binding_id.clone(),
        ..Default::default()
    };
    assert_eq!(events(&d, req).await.len(), 5, "each event once");
    d.stop().await;
}

#[tokio::test]
async fn a_cdr_batch_with_a_broken_record_stores_the_others() {
    let d = Daemon::start_with(every_mode()).await;
    let (a, b) = (party(1), party(2));
    let axb = d.bind_ok(bind("rides", &a, Some(&b))).await;
    call(&d, "k-axb", &a, &axb.x_number, json!({})).await;
    let (url, cdr) = pushed(&d, "k-axb")
        .await
        .into_iter()
        .find(|(_, body)| body["eventType"] == "fee")
        .expect("a CDR was pushed");
    // Two more calls' records around one that cannot be read (text where a number belongs).
    let template = &cdr["feeLst"][0];
    let mut first = template.clone();
    first["sessionId"] = json!("merged-1");
    let mut second = template.clone();
    second["sessionId"] = json!("merged-2");
    let mut broken = template.clone();
    broken["sessionId"] = json!("merged-broken");
    broken["direction"] = json!("sideways");
    let batch = json!({"eventType": "fee", "feeLst": [first, broken, second]});
    assert_eq!(push_again(&url, &batch).await, 200, "the batch is taken");

    let req = pb::ListCallRecordsRequest {
        binding_id: axb.binding_id.clone(),
        ..Default::default()
    };
    let mut sessions: Vec<String> = records(&d, req)
        .await
        .into_iter()
        .inspect(|r| assert!(r.has_cdr, "{r:#?}"))
        .map(|r| r.session_id)
        .collect();
    let played = text(&cdr["feeLst"][0], "sessionId");
    let mut expected = ["merged-1", "merged-2", played.as_str()];
    sessions.sort();
    expected.sort();
    assert_eq!(sessions, expected);
    d.stop().await;
}

/// The free count and the numbers the platform holds of `app`'s pool.
async fn free_and_held(d: &Daemon, app: &str) -> (i64, i64) {
    let stats = d.pool_stats(app).await;
    stats.areas.iter().fold((0, 0), |(free, held), area| {
        (
            free + i64::from(area.free),
            held + i64::from(area.held_by_platform),
        )
    })
}

/// `/sim/numstatus`: the platform sets `number`'s status and pushes it.
async fn set_status(d: &Daemon, app_key: &str, number: &str, status: &str) {
    let mut body = json!({"app_key": app_key, "number": number, "status": status});
    if status == "10" {
        body["cause"] = json!("1");
    }
    let answer = d.sim.control_post("/sim/numstatus", body).await;
    assert_eq!(answer["delivered"], true, "{answer}");
}

#[tokio::test]
async fn an_unavailable_number_leaves_rotation_until_it_is_normal_again() {
    let d = Daemon::start_with(every_mode()).await;
    let xs = list_numbers(&mut d.pool().await, "drivers").await;
    let (gone, kept) = (&xs[0].number, &xs[1].number);
    assert_eq!(free_and_held(&d, "drivers").await, (2, 0));

    set_status(&d, "k-ax", gone, "10").await;
    assert_eq!(free_and_held(&d, "drivers").await, (1, 1));
    let listed = list_numbers(&mut d.pool().await, "drivers").await;
    let status = |n: &str| listed.iter().find(|x| x.number == n).unwrap().status();
    assert_eq!(status(gone), pb::NumberStatus::Unavailable);
    assert_eq!(status(kept), pb::NumberStatus::Normal);
    // The one X left serves; after it, nothing: the unavailable X is never picked.
    let first = d.bind_ok(bind("drivers", &party(1), None)).await;
    assert_eq!(&first.x_number, kept);
    d.bind_refused(
        bind("drivers", &party(2), None),
        tonic::Code::ResourceExhausted,
    )
    .await;

    // It survives a restart.
    let d = d.restart().await;
    assert_eq!(free_and_held(&d, "drivers").await, (0, 1));

    // Back to normal: in rotation again.
    set_status(&d, "k-ax", gone, "5").await;
    assert_eq!(free_and_held(&d, "drivers").await, (1, 0));
    let second = d.bind_ok(bind("drivers", &party(2), None)).await;
    assert_eq!(&second.x_number, gone);
    d.stop().await;
}

fn binding_id(e: &pb::WatchEvent) -> &str {
    match &e.payload {
        Some(pb::watch_event::Payload::Binding(b)) => &b.binding_id,
        Some(pb::watch_event::Payload::CallEvent(c)) => &c.binding_id,
        other => panic!("no binding in {e:?}: {other:?}"),
    }
}

/// What a test compares of a Watch event: its kind and binding.
fn seen(e: &pb::WatchEvent) -> (pb::WatchKind, String) {
    (e.kind(), binding_id(e).to_owned())
}

#[tokio::test]
async fn a_watch_sees_binds_an_expiry_and_a_call_and_resumes_where_it_stopped() {
    use pb::WatchKind as K;
    let d = Daemon::start_with(every_mode()).await;
    let apps = pb::WatchRequest {
        apps: vec!["drivers".into(), "rides".into()],
        ..Default::default()
    };
    let mut watching = Watching::open(&d, apps.clone()).await;
    let mut brief = bind("drivers", &party(1), None);
    brief.ttl = xpool::grpc::ttl(120);
    let brief = d.bind_ok(brief).await;
    let axb = d.bind_ok(bind("rides", &party(2), Some(&party(3)))).await;
    let bound = [watching.next_event().await, watching.next_event().await];
    assert_eq!(
        bound.each_ref().map(seen),
        [
            (K::BindingBound, brief.binding_id.clone()),
            (K::BindingBound, axb.binding_id.clone())
        ]
    );
    // The watcher goes away; meanwhile the AX binding expires and a call goes through the AXB.
    drop(watching);
    d.sim.advance_clock(120).await;
    d.clock.advance(120_000);
    within("the AX binding's expiry", async {
        while d.state(&brief.binding_id).await != pb::BindingState::Expired {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let played = call(&d, "k-axb", &party(2), &axb.x_number, json!({})).await;
    assert_eq!(played["stateCode"], 0);

    let missed = [(K::BindingExpired, brief.binding_id.clone())]
        .into_iter()
        .chain((0..5).map(|_| (K::CallEvent, axb.binding_id.clone())))
        .collect::<Vec<_>>();
    // Resumed after the last event it handled: what it missed, in order, and nothing twice.
    let resumed = pb::WatchRequest {
        resume_token: bound[1].resume_token.clone(),
        ..apps.clone()
    };
    let mut watching = Watching::open(&d, resumed).await;
    let mut got = Vec::new();
    for _ in 0..missed.len() {
        got.push(watching.next_event().await);
    }
    assert_eq!(got.iter().map(seen).collect::<Vec<_>>(), missed);
    let types: Vec<pb::CallEventType> = got[1..]
        .iter()
        .map(|e| match &e.payload {
            Some(pb::watch_event::Payload::CallEvent(c)) => c.event_type(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(types, event_types(&record_of(&d, &axb.binding_id).await));
    assert!(
        watching.quiet_for(Duration::from_millis(300)).await,
        "nothing repeated"
    );
    // From the oldest change kept: all of it, once.
    let oldest = pb::WatchRequest {
        from_oldest: true,
        ..apps
    };
    let mut watching = Watching::open(&d, oldest).await;
    let mut all = Vec::new();
    for _ in 0..bound.len() + missed.len() {
        all.push(seen(&watching.next_event().await));
    }
    let expected: Vec<_> = bound.iter().map(seen).chain(missed).collect();
    assert_eq!(all, expected);
    assert!(watching.quiet_for(Duration::from_millis(300)).await);
    d.stop().await;
}

#[tokio::test]
async fn a_frozen_number_keeps_its_bindings_but_takes_no_new_ones() {
    let d = Daemon::start_with(every_mode()).await;
    let xs = list_numbers(&mut d.pool().await, "rides").await;
    let (frozen, other) = (&xs[0].number, &xs[1].number);
    let (a, b) = (party(1), party(2));
    let kept = d.bind_ok(pinned("rides", &a, Some(&b), frozen)).await;

    set_status(&d, "k-axb", frozen, "11").await;
    assert_eq!(d.state(&kept.binding_id).await, pb::BindingState::Active);
    let played = call(&d, "k-axb", &a, frozen, json!({})).await;
    assert_eq!(
        played["connectedTo"],
        b.as_str(),
        "the binding still connects"
    );
    for i in 0..4 {
        let fresh = d
            .bind_ok(bind("rides", &party(10 + i), Some(&party(20 + i))))
            .await;
        assert_eq!(&fresh.x_number, other, "new binds avoid the frozen X");
    }
    let refused = d
        .bind_refused(
            pinned("rides", &party(30), Some(&party(31)), frozen),
            tonic::Code::FailedPrecondition,
        )
        .await;
    assert!(refused.message().contains(frozen.as_str()), "{refused:?}");

    set_status(&d, "k-axb", frozen, "5").await;
    d.bind_ok(pinned("rides", &party(30), Some(&party(31)), frozen))
        .await;
    d.stop().await;
}
