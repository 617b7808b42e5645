//! A platform that stalls (the simulator's `hang_ms`, like a SIGSTOPped process) or loses
//! answers while many callers Bind with request ids, each giving up long before the platform
//! answers and trying again. Afterwards every request id maps to exactly one live binding,
//! locally and on the platform, no pair of parties is bound twice, a retried request id returns
//! the binding its first answer named, and a reconciliation finds nothing to adopt.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use crate::support::*;

/// Callers, one request id (and one pair of parties) each.
const CALLERS: u32 = 120;
/// The daemon's `timeout_ms`: far shorter than the stall.
const TIMEOUT_MS: u32 = 400;
/// How long the faults last while the callers arrive, steadily, one after another.
const FAULTY: Duration = Duration::from_secs(3);

/// AXB on 4 Xs with room for every caller twice over. A lost bind's reservation is dropped
/// once the platform has said twice, `pending_recheck_ms` (= `timeout_ms`) apart, that it does
/// not have it.
fn setup() -> Setup {
    Setup::new(vec![
        App::new("rides", "k-axb", "AXB")
            .both("max_bindings_per_x", 100)
            .daemon("timeout_ms", TIMEOUT_MS)
            .numbers(8617000000001, &["010", "010", "010", "021"]),
    ])
    .server("max_request_wait_ms", 1000)
}

fn request(i: u32) -> pb::BindRequest {
    pb::BindRequest {
        request_id: format!("ride-{i}"),
        ttl: xpool::grpc::ttl(3600),
        ..bind_any("rides", &party(2 * i), Some(&party(2 * i + 1)))
    }
}

/// Binds `request(i)` with `deadline` until a Bind succeeds, pausing between tries; every
/// refusal must be one a caller retries.
async fn caller(mut c: BindingServiceClient<Channel>, i: u32, deadline: Duration) -> pb::Binding {
    loop {
        let mut req = tonic::Request::new(request(i));
        req.set_timeout(deadline);
        match c.bind(req).await {
            Ok(b) => return b.into_inner(),
            Err(s) if s.code() == Code::Unavailable => assert_retry_hint(&s),
            // The deadline passed (tonic's client reports its own timer as CANCELLED).
            Err(s) => assert!(
                matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled),
                "ride-{i}: {s:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(150 + u64::from(i % 7) * 50)).await;
    }
}

/// Sets `faults` on the platform, starts the callers one after another over [`FAULTY`], clears
/// the faults and waits for every caller's binding.
async fn load(d: &Daemon, mut faults: Value, deadline: Duration) -> BTreeMap<u32, pb::Binding> {
    let conns = clients(d, 4).await;
    faults["app_key"] = json!("k-axb");
    d.sim.faults(faults).await;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let c = conns[i as usize % conns.len()].clone();
            let start = FAULTY * i / CALLERS;
            tokio::spawn(async move {
                tokio::time::sleep(start).await;
                (i, caller(c, i, deadline).await)
            })
        })
        .collect();
    tokio::time::sleep(FAULTY).await;
    d.sim.faults(json!({"app_key": "k-axb"})).await;
    within("every caller bound", async {
        let mut answers = BTreeMap::new();
        for t in tasks {
            let (i, b) = t.await.unwrap();
            assert_eq!(b.state(), pb::BindingState::Active, "ride-{i}: {b:?}");
            answers.insert(i, b);
        }
        answers
    })
    .await
}

/// Each request id has one live binding, on the platform and here, the one its caller got.
async fn assert_one_binding_per_request(d: &Daemon, answers: &BTreeMap<u32, pb::Binding>) {
    within("resolution", settle_in_background(d, "rides")).await;
    let mut on_platform: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for b in d.sim.bindings("k-axb").await {
        let pair = (text(&b, "a"), text(&b, "b"));
        on_platform
            .entry(pair)
            .or_default()
            .push(text(&b, "subscriptionId"));
    }
    let wrong: Vec<String> = answers
        .iter()
        .filter_map(|(i, first)| {
            let live = on_platform.get(&(party(2 * i), party(2 * i + 1)));
            (live != Some(&vec![first.subscription_id.clone()]))
                .then(|| format!("ride-{i}: got {}, live {live:?}", first.subscription_id))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} request ids do not have exactly the binding their caller got on the platform: {wrong:#?}",
        wrong.len(),
        answers.len()
    );
    for (i, first) in answers {
        let again = d.bind_ok(request(*i)).await;
        assert_eq!(again.binding_id, first.binding_id, "ride-{i} retried");
        let stored = d.get_by_request("rides", &format!("ride-{i}")).await;
        assert_eq!(stored.binding_id, first.binding_id, "ride-{i} looked up");
    }
    assert_eq!(on_platform.len(), answers.len(), "{on_platform:?}");
    let report = d.reconcile("rides").await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        (report.orphans_adopted, report.ghosts_freed),
        (0, 0),
        "nothing the daemon lost track of: {report:?}"
    );
    let acked: Vec<pb::Binding> = answers.values().cloned().collect();
    assert_in_step(d, "rides", "k-axb", &acked).await;
}

/// The platform stalls far longer than `timeout_ms` and the callers' deadlines; when it
/// resumes it carries out what queued up, lookups before the binds they look for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_platform_binds_each_request_id_once() {
    let d = Daemon::start_with(setup()).await;
    let answers = load(&d, json!({"hang_ms": 60_000}), Duration::from_millis(1000)).await;
    assert_one_binding_per_request(&d, &answers).await;
    d.stop().await;
}

/// Half the binds are carried out and never answered, and every caller gives up before the
/// daemon's own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_bind_each_request_id_once() {
    let d = Daemon::start_with(setup()).await;
    let faults = json!({"lost_response_rate": 0.5});
    let answers = load(&d, faults, Duration::from_millis(u64::from(TIMEOUT_MS / 2))).await;
    assert_one_binding_per_request(&d, &answers).await;
    d.stop().await;
}

/// A caller whose deadline comes before the platform's answer hears UNAVAILABLE with a retry
/// hint before the deadline, and the Bind goes on: its reservation stays PENDING under its
/// request id, a retry meanwhile is told the same (never a second binding), and once the
/// platform answers, the request id has the one binding the first attempt made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_outliving_its_callers_deadline_keeps_its_reservation() {
    let d = Daemon::start_with(setup().app("rides", |a| a.daemon("timeout_ms", 5000))).await;
    let mut c = d.bindings().await;
    let with_deadline = || {
        let mut req = tonic::Request::new(request(1));
        req.set_timeout(Duration::from_millis(2000));
        req
    };
    d.sim
        .faults(json!({"app_key": "k-axb", "hang_ms": 60_000}))
        .await;
    for attempt in ["first", "retry"] {
        let refused = c.bind(with_deadline()).await.expect_err(attempt);
        assert_retry_hint(&refused);
    }
    let pending = d.get_by_request("rides", "ride-1").await;
    assert_eq!(pending.state(), pb::BindingState::Pending, "{pending:?}");
    d.sim.faults(json!({"app_key": "k-axb"})).await;
    let bound = within("the bind answered", async {
        loop {
            match c.bind(with_deadline()).await {
                Ok(b) => return b.into_inner(),
                Err(s) => assert_retry_hint(&s),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(bound.binding_id, pending.binding_id, "{bound:?}");
    assert_eq!(bound.state(), pb::BindingState::Active, "{bound:?}");
    assert_eq!(d.sim.bindings("k-axb").await.len(), 1);
    stop_in_step(d, "rides", "k-axb").await;
}

/// A Bind whose platform call the stall held gives up (its reservation PENDING); the platform
/// carries the call out when it resumes, and a reconciliation that runs before anything else
/// asked about the reservation completes it, request_id and all, instead of adopting the
/// platform's binding as an orphan.
async fn a_late_bind_is_completed_by_reconciliation(app: App, req: pb::BindRequest) {
    let (name, key) = (app.name.clone(), app.key.clone().unwrap());
    let d = Daemon::start_with(Setup::new(vec![app.daemon("timeout_ms", TIMEOUT_MS)])).await;
    d.sim
        .faults(json!({"app_key": key, "hang_ms": 60_000}))
        .await;
    let refused = d.bind_refused(req.clone(), Code::Unavailable).await;
    assert_retry_hint(&refused);
    d.sim.faults(json!({"app_key": key})).await;
    within("the held bind carried out", async {
        while d.sim.bindings(&key).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The resolver's next round is seconds away: the reconciliation comes first.
    let report = d.reconcile(&name).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        (report.orphans_adopted, report.pending_resolved),
        (0, 1),
        "{report:?}"
    );
    let bound = d.get_by_request(&name, &req.request_id).await;
    assert_eq!(bound.state(), pb::BindingState::Active, "{bound:?}");
    assert_eq!(d.bind_ok(req).await.binding_id, bound.binding_id, "retried");
    assert_eq!(d.sim.bindings(&key).await.len(), 1);
    stop_in_step(d, &name, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_completes_an_axb_bind_the_platform_carried_out_late() {
    let app = App::new("rides", "k-axb", "AXB").numbers(8617000000001, &["010", "010"]);
    a_late_bind_is_completed_by_reconciliation(app, request(1)).await;
}

/// AXYB, where the platform picks X: the reservation has none until the platform answers, and
/// what the stall held is the first of the bind's two steps, half a binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_completes_an_axyb_bind_the_platform_carried_out_late() {
    let app = App::new("chat", "k-axyb", "AXYB").numbers(8617300000001, &["010", "010"]);
    let req = pb::BindRequest {
        request_id: "chat-1".into(),
        ..in_area("chat", &party(1), Some(&party(2)), "010")
    };
    a_late_bind_is_completed_by_reconciliation(app, req).await;
}
