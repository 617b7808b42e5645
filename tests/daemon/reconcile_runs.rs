//! Reconciliations as runs: Reconcile answers at once with a QUEUED run while the platform is
//! slow, the run goes to its final state with its counts, runs queue one at a time, a watch
//! streams a run to its end, errors are structured (number, platform result code), unknown run
//! ids are NOT_FOUND, bad requests are refused before any run exists, the list pages newest
//! first and shows scheduled runs, and a full run cancelled at shutdown resumes where it was.
//!
//! The simulator's latency keeps a run going long enough to be seen queued and running; no
//! test asserts how long anything takes.

use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::ReconcileRunState as State;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;

use crate::support::platform::wire::*;
use crate::support::*;

/// The AXB app's numbers.
const AXB_X: [&str; 4] = [
    "+8617000000001",
    "+8617000000002",
    "+8617000000003",
    "+8617000000004",
];

/// Latency of every AXB platform call while a test wants a run to take a while.
const SLOW_MS: u64 = 300;

fn rides(dry_run: bool) -> pb::ReconcileRequest {
    pb::ReconcileRequest {
        app: "rides".into(),
        numbers: Vec::new(),
        dry_run,
    }
}

/// Starts a run, which must be accepted; the run as answered.
async fn start(
    c: &mut ReconcileServiceClient<Channel>,
    req: pb::ReconcileRequest,
) -> pb::ReconcileRun {
    let run = rpc("Reconcile", c.reconcile(req)).await.unwrap();
    assert!(!run.run_id.is_empty(), "{run:?}");
    run
}

async fn get(
    c: &mut ReconcileServiceClient<Channel>,
    run_id: &str,
) -> Result<pb::ReconcileRun, tonic::Status> {
    let req = pb::GetReconcileRunRequest {
        run_id: run_id.into(),
    };
    rpc("GetReconcileRun", c.get_reconcile_run(req)).await
}

async fn list(
    c: &mut ReconcileServiceClient<Channel>,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListReconcileRunsResponse, tonic::Status> {
    let req = pb::ListReconcileRunsRequest {
        page_size,
        page_token: page_token.into(),
    };
    rpc("ListReconcileRuns", c.list_reconcile_runs(req)).await
}

/// An AXB binding of A and B on X made on the platform behind the daemon's back.
async fn orphan_axb(d: &Daemon, a: u32, b: u32, x: &str) {
    d.sim
        .client("k-axb")
        .axb_bind(&AxbBindRequest {
            caller_num: party(a),
            callee_num: party(b),
            relation_num: Some(x.into()),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn slow_platform(d: &Daemon) {
    d.sim
        .faults(json!({"app_key": "k-axb", "latency_ms": SLOW_MS}))
        .await;
}

fn rank(s: State) -> u8 {
    match s {
        State::Unspecified => 0,
        State::Queued => 1,
        State::Running => 2,
        State::Succeeded | State::Failed | State::Cancelled => 3,
    }
}

#[tokio::test]
async fn a_run_is_answered_at_once_while_the_platform_is_slow_and_succeeds_with_its_counts() {
    let d = Daemon::start().await;
    orphan_axb(&d, 1, 2, AXB_X[0]).await;
    orphan_axb(&d, 3, 4, AXB_X[2]).await;
    slow_platform(&d).await;
    let mut c = d.reconciler().await;
    let asked = start(&mut c, rides(false)).await;
    // Answered before the run could have done anything: 4 numbers at SLOW_MS each.
    assert_eq!(asked.state(), State::Queued, "{asked:?}");
    assert_eq!((asked.app.as_str(), asked.dry_run), ("rides", false));
    assert!(asked.create_time.is_some() && asked.start_time.is_none() && asked.end_time.is_none());
    assert_eq!(asked.xs_checked, 0);

    // Polled to its end: the state only moves forward, the counts only grow.
    let mut last = asked.clone();
    let done = within("the run", async {
        loop {
            let now = get(&mut c, &asked.run_id).await.unwrap();
            assert!(
                rank(now.state()) >= rank(last.state()),
                "{last:?} → {now:?}"
            );
            assert!(now.xs_checked >= last.xs_checked, "{last:?} → {now:?}");
            if is_final(&now) {
                return now;
            }
            last = now;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(done.state(), State::Succeeded, "{done:?}");
    assert_eq!(
        (done.xs_total, done.xs_checked, done.orphans_adopted),
        (4, 4, 2),
        "{done:?}"
    );
    assert!(done.errors.is_empty() && done.error_count == 0, "{done:?}");
    let (create, start, end) = (
        done.create_time.unwrap(),
        done.start_time.unwrap(),
        done.end_time.unwrap(),
    );
    let key = |t: &prost_types::Timestamp| (t.seconds, t.nanos);
    assert!(
        key(&create) <= key(&start) && key(&start) <= key(&end),
        "{done:?}"
    );
    // Asked again, it is the same.
    assert_eq!(get(&mut c, &asked.run_id).await.unwrap(), done);
    d.stop().await;
}

#[tokio::test]
async fn a_second_run_queues_behind_the_first_and_starts_after_it_ends() {
    let d = Daemon::start().await;
    orphan_axb(&d, 1, 2, AXB_X[1]).await;
    slow_platform(&d).await;
    let mut c = d.reconciler().await;
    let first = start(&mut c, rides(true)).await;
    let second = start(&mut c, rides(false)).await;
    assert_eq!(second.state(), State::Queued, "{second:?}");
    assert_ne!(first.run_id, second.run_id);

    let watched = watch_run(&mut c, &second.run_id).await;
    // By the time the second runs, the first has ended.
    let first = get(&mut c, &first.run_id).await.unwrap();
    let second = watched.last().unwrap().clone();
    assert_eq!(first.state(), State::Succeeded, "{first:?}");
    let end = first.end_time.unwrap();
    let begin = second.start_time.unwrap();
    assert!(
        (end.seconds, end.nanos) <= (begin.seconds, begin.nanos),
        "{first:?} {second:?}"
    );
    // Each has its own counts: the dry run only counted the orphan, the second adopted it.
    assert_eq!((first.dry_run, first.orphans_adopted), (true, 1));
    assert_eq!((second.dry_run, second.orphans_adopted), (false, 1));
    assert_eq!(second.state(), State::Succeeded, "{second:?}");
    // Newest first.
    let page = list(&mut c, 0, "").await.unwrap();
    let ids: Vec<&str> = page.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, [second.run_id.as_str(), first.run_id.as_str()]);
    assert_eq!(page.next_page_token, "");
    d.stop().await;
}

#[tokio::test]
async fn a_watch_streams_a_run_to_its_end() {
    let d = Daemon::start().await;
    orphan_axb(&d, 1, 2, AXB_X[3]).await;
    slow_platform(&d).await;
    let mut c = d.reconciler().await;
    let run = start(&mut c, rides(false)).await;
    // watch_run checks that the stream ends right after the final state.
    let stream = watch_run(&mut c, &run.run_id).await;
    let states: Vec<State> = stream.iter().map(|r| r.state()).collect();
    assert!(states.contains(&State::Running), "{states:?}");
    for pair in stream.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(rank(a.state()) <= rank(b.state()), "{a:?} → {b:?}");
        assert!(a.xs_checked <= b.xs_checked, "{a:?} → {b:?}");
    }
    let end = stream.last().unwrap();
    assert_eq!(end.state(), State::Succeeded, "{end:?}");
    assert_eq!((end.xs_checked, end.orphans_adopted), (4, 1), "{end:?}");
    // A finished run's watch sends its final state once and ends.
    let again = watch_run(&mut c, &run.run_id).await;
    assert_eq!(again, std::slice::from_ref(end));
    d.stop().await;
}

/// Errors are entries, not strings: each names the app and number, and carries the result
/// code the platform answered (the simulator's injected internal error, 1010001).
#[tokio::test]
async fn errors_name_the_number_and_the_platform_result_code() {
    let d = Daemon::start().await;
    d.sim
        .faults(json!({"app_key": "k-axb", "error_rate": 1.0}))
        .await;
    let run = d.reconcile("rides").await;
    assert_eq!(run.state(), State::Failed, "{run:?}");
    assert_eq!((run.xs_checked, run.error_count), (4, 4), "{run:?}");
    let mut numbers: Vec<&str> = run.errors.iter().map(|e| e.number.as_str()).collect();
    numbers.sort();
    assert_eq!(numbers, AXB_X);
    for e in &run.errors {
        assert_eq!(e.app, "rides", "{e:?}");
        assert_eq!(e.platform_code, "1010001", "{e:?}");
        assert_eq!(e.binding_id, "", "{e:?}");
        assert!(!e.message.is_empty(), "{e:?}");
    }
    // Another app's run is not affected.
    let other = d.reconcile("drivers").await;
    assert_eq!(other.state(), State::Succeeded, "{other:?}");
    d.sim.faults(json!({"app_key": "k-axb"})).await;
    d.stop().await;
}

#[tokio::test]
async fn an_unknown_or_malformed_run_id_is_refused() {
    Daemon::run(async |d| {
        let mut c = d.reconciler().await;
        d.reconcile("rides").await;
        let unknown = "0190b3a6-7c4e-7def-8abc-0123456789ab";
        let err = get(&mut c, unknown).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let req = pb::WatchReconcileRunRequest {
            run_id: unknown.into(),
        };
        let err = c.watch_reconcile_run(req).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        for bad in ["", "run-1"] {
            let err = get(&mut c, bad).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
            assert!(err.message().contains("run_id"), "{err:?}");
        }
    })
    .await;
}

/// Unknown app, numbers without an app, a malformed or unknown number: refused by Reconcile
/// itself, and no run is made.
#[tokio::test]
async fn bad_requests_are_refused_before_a_run_is_made() {
    Daemon::run(async |d| {
        let mut c = d.reconciler().await;
        let refused = [
            ("nope", vec![], Code::NotFound, "nope"),
            ("", vec![AXB_X[0]], Code::InvalidArgument, "numbers"),
            (
                "rides",
                vec!["8617000000001"],
                Code::InvalidArgument,
                "numbers",
            ),
            (
                "rides",
                vec![AXB_X[0], "+8617099999999"],
                Code::NotFound,
                "+8617099999999",
            ),
        ];
        for (app, numbers, code, named) in refused {
            let req = pb::ReconcileRequest {
                app: app.into(),
                numbers: numbers.iter().map(|n| (*n).to_owned()).collect(),
                dry_run: false,
            };
            let err = c.reconcile(req).await.unwrap_err();
            assert_eq!(err.code(), code, "{app:?} {numbers:?}: {err:?}");
            assert!(err.message().contains(named), "{err:?}");
        }
        assert!(list(&mut c, 0, "").await.unwrap().runs.is_empty());
        // With an app, only the named numbers are checked.
        let run = d
            .reconcile_and_wait(pb::ReconcileRequest {
                app: "rides".into(),
                numbers: vec![AXB_X[0].into(), AXB_X[2].into()],
                dry_run: false,
            })
            .await;
        assert_eq!(run.numbers, [AXB_X[0], AXB_X[2]]);
        assert_eq!(
            (run.state(), run.xs_total, run.xs_checked),
            (State::Succeeded, 2, 2)
        );
    })
    .await;
}

#[tokio::test]
async fn the_list_pages_newest_first() {
    Daemon::run(async |d| {
        let mut c = d.reconciler().await;
        let mut made = Vec::new();
        for app in ["rides", "drivers", "stores"] {
            made.push(d.reconcile(app).await.run_id);
        }
        made.reverse();
        let first = list(&mut c, 2, "").await.unwrap();
        assert_eq!(first.runs.len(), 2);
        assert_ne!(first.next_page_token, "");
        let second = list(&mut c, 2, &first.next_page_token).await.unwrap();
        assert_eq!(second.next_page_token, "");
        let ids: Vec<String> = first
            .runs
            .iter()
            .chain(&second.runs)
            .map(|r| r.run_id.clone())
            .collect();
        assert_eq!(ids, made);
        assert_eq!(first.runs[0].app, "stores");
        for (size, token) in [(-1, ""), (0, "junk")] {
            let err = list(&mut c, size, token).await.unwrap_err();
            assert_eq!(
                err.code(),
                Code::InvalidArgument,
                "{size} {token:?}: {err:?}"
            );
        }
    })
    .await;
}

/// Scheduled reconciliations are runs like any other: of every app, in the list.
#[tokio::test]
async fn scheduled_runs_appear_in_the_list() {
    let setup = Setup::standard().daemon_section("[reconcile]\ninterval_seconds = 1\n");
    let d = Daemon::start_with(setup).await;
    let mut c = d.reconciler().await;
    let run = within("a scheduled run", async {
        loop {
            let page = list(&mut c, 0, "").await.unwrap();
            if let Some(run) = page.runs.into_iter().find(is_final) {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(run.app, "", "all apps: {run:?}");
    assert_eq!(run.state(), State::Succeeded, "{run:?}");
    // 4 AXB + 3 AX + 2 AXE + 4 AXYB numbers; the X-mode app has no platform.
    assert_eq!(run.xs_checked, 13, "{run:?}");
    d.stop().await;
}

/// A full run stopped by a shutdown ends CANCELLED; after the restart the next full run of the
/// app checks only the numbers the cancelled one had not finished.
#[tokio::test]
async fn a_full_run_cancelled_at_shutdown_resumes_after_the_restart() {
    let d = Daemon::start().await;
    d.sim
        .faults(json!({"app_key": "k-axb", "latency_ms": 1000}))
        .await;
    let mut c = d.reconciler().await;
    let run = start(&mut c, rides(false)).await;
    let req = pb::WatchReconcileRunRequest {
        run_id: run.run_id.clone(),
    };
    let mut stream = c.watch_reconcile_run(req).await.unwrap().into_inner();
    // Stop once it has checked a number (it has more to check: one a second).
    within("the first number checked", async {
        while let Some(r) = stream.message().await.unwrap() {
            if r.xs_checked > 0 {
                return;
            }
        }
        panic!("the stream ended first");
    })
    .await;
    // The stream ends with the run's final state as the daemon stops.
    let last = async {
        let mut last = None;
        while let Ok(Some(r)) = stream.message().await {
            last = Some(r);
        }
        last.expect("a final state")
    };
    let (d, cancelled) = within("the restart", async { tokio::join!(d.restart(), last) }).await;
    assert_eq!(cancelled.state(), State::Cancelled, "{cancelled:?}");
    let done = cancelled.xs_checked;
    assert!((1..4).contains(&done), "{cancelled:?}");
    d.sim.faults(json!({"app_key": "k-axb"})).await;
    let resumed = d.reconcile("rides").await;
    assert_eq!(resumed.state(), State::Succeeded, "{resumed:?}");
    assert_eq!(
        (resumed.xs_total, resumed.xs_checked),
        (4 - done, 4 - done),
        "{resumed:?}"
    );
    // The restart forgot the runs before it.
    let err = get(&mut d.reconciler().await, &run.run_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    d.stop().await;
}

/// While 20 runs wait, another is refused with UNAVAILABLE and a retry hint; a shutdown then
/// cancels them all.
#[tokio::test]
async fn too_many_queued_runs_are_refused() {
    let d = Daemon::start().await;
    d.sim
        .faults(json!({"app_key": "k-axb", "latency_ms": 2000}))
        .await;
    let mut c = d.reconciler().await;
    let mut accepted = Vec::new();
    let refused = loop {
        match c.reconcile(rides(true)).await {
            Ok(run) => accepted.push(run.into_inner()),
            Err(s) => break s,
        }
        assert!(accepted.len() <= 21, "never refused");
    };
    // 20 queued, and perhaps one already running.
    assert!((20..=21).contains(&accepted.len()), "{}", accepted.len());
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.metadata().get("retry-after-ms").is_some(),
        "{refused:?}"
    );
    let last = accepted.last().unwrap().run_id.clone();
    let watching = tokio::spawn(async move { watch_run(&mut c, &last).await });
    d.stop().await;
    let end = watching.await.unwrap();
    assert_eq!(end.last().unwrap().state(), State::Cancelled);
}
