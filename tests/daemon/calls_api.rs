//! CallService and WatchService from the outside: bad filters and tokens are INVALID_ARGUMENT
//! naming the field, an unknown app is NOT_FOUND, reflection (as grpcurl reads it) lists and
//! describes both services, ListNumbers and GetPoolStats show the platform's number status. And
//! Watch end to end: a Bind seen as BINDING_BOUND, a resume token that goes on after its event,
//! a stream that ends at shutdown with its token.

use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::call_service_client::CallServiceClient;
use xpool::grpc::pb::watch_service_client::WatchServiceClient;

use crate::contract::tools::{output, python_tools, said};
use crate::support::*;

async fn calls(d: &Daemon) -> CallServiceClient<Channel> {
    CallServiceClient::connect(d.addr.clone()).await.unwrap()
}

async fn watcher(d: &Daemon) -> WatchServiceClient<Channel> {
    WatchServiceClient::connect(d.addr.clone()).await.unwrap()
}

/// The filters of a listing; every listing takes the same.
#[derive(Debug, Clone, Default)]
struct Filters {
    app: String,
    binding_id: String,
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
    page_size: i32,
    page_token: String,
}

/// Runs each listing with `f`; the status of each (`Ok(())` when it answered).
async fn each_listing(d: &Daemon, f: &Filters) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let mut c = calls(d).await;
    let records = pb::ListCallRecordsRequest {
        app: f.app.clone(),
        binding_id: f.binding_id.clone(),
        start_time: f.start,
        end_time: f.end,
        page_size: f.page_size,
        page_token: f.page_token.clone(),
        ..Default::default()
    };
    let events = pb::ListCallEventsRequest {
        app: f.app.clone(),
        binding_id: f.binding_id.clone(),
        start_time: f.start,
        end_time: f.end,
        page_size: f.page_size,
        page_token: f.page_token.clone(),
        ..Default::default()
    };
    let messages = pb::ListMessagesRequest {
        app: f.app.clone(),
        binding_id: f.binding_id.clone(),
        start_time: f.start,
        end_time: f.end,
        page_size: f.page_size,
        page_token: f.page_token.clone(),
        ..Default::default()
    };
    vec![
        (
            "ListCallRecords",
            rpc("ListCallRecords", c.list_call_records(records))
                .await
                .map(drop),
        ),
        (
            "ListCallEvents",
            rpc("ListCallEvents", c.list_call_events(events))
                .await
                .map(drop),
        ),
        (
            "ListMessages",
            rpc("ListMessages", c.list_messages(messages))
                .await
                .map(drop),
        ),
    ]
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

#[tokio::test]
async fn listings_refuse_bad_filters_naming_the_field_and_unknown_apps() {
    let d = Daemon::start().await;
    let cases = [
        (
            "binding_id",
            Filters {
                binding_id: "not-a-binding".into(),
                ..Default::default()
            },
        ),
        (
            "end_time",
            Filters {
                start: at(1_700_000_100),
                end: at(1_700_000_000),
                ..Default::default()
            },
        ),
        (
            "page_token",
            Filters {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
        ),
        (
            "page_size",
            Filters {
                page_size: -1,
                ..Default::default()
            },
        ),
    ];
    for (field, filters) in &cases {
        for (listing, answer) in each_listing(&d, filters).await {
            let status = answer.expect_err(listing);
            assert_bad_field(&status, field);
        }
    }
    let unknown = Filters {
        app: "nope".into(),
        ..Default::default()
    };
    for (listing, answer) in each_listing(&d, &unknown).await {
        let status = answer.expect_err(listing);
        assert_reason(&status, Code::NotFound, "UNKNOWN_APP", &[("app", "nope")]);
    }
    d.stop().await;
}

/// The first status of a Watch of `req`: its refusal, or the stream's first error.
async fn watch_refused(d: &Daemon, req: pb::WatchRequest) -> tonic::Status {
    let answered = rpc("Watch", watcher(d).await.watch(req)).await;
    match answered {
        Err(status) => status,
        Ok(mut stream) => loop {
            match tokio::time::timeout(WATCH_WAIT, stream.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => panic!("the stream ended without an error"),
                Ok(Err(status)) => break status,
                Err(_) => panic!("the Watch was accepted"),
            }
        },
    }
}

#[tokio::test]
async fn watch_refuses_bad_requests_naming_the_field_and_unknown_apps() {
    let d = Daemon::start().await;
    let malformed = watch_refused(
        &d,
        pb::WatchRequest {
            resume_token: "not-a-token".into(),
            ..Default::default()
        },
    )
    .await;
    assert_bad_field(&malformed, "resume_token");
    // A well-formed token ahead of every change this daemon stored: another store's.
    let foreign = watch_refused(
        &d,
        pb::WatchRequest {
            resume_token: "AQAAAAAAAAPo".into(),
            ..Default::default()
        },
    )
    .await;
    assert_bad_field(&foreign, "resume_token");
    let both = watch_refused(
        &d,
        pb::WatchRequest {
            resume_token: "AQAAAAAAAAAB".into(),
            from_oldest: true,
            ..Default::default()
        },
    )
    .await;
    assert_bad_field(&both, "from_oldest");
    let kind = watch_refused(
        &d,
        pb::WatchRequest {
            kinds: vec![pb::WatchKind::BindingBound.into(), 0],
            ..Default::default()
        },
    )
    .await;
    assert_bad_field(&kind, "kinds[1]");
    let unknown = watch_refused(
        &d,
        pb::WatchRequest {
            apps: vec!["rides".into(), "nope".into()],
            ..Default::default()
        },
    )
    .await;
    assert_reason(&unknown, Code::NotFound, "UNKNOWN_APP", &[("app", "nope")]);
    d.stop().await;
}

/// `grpcurl -plaintext ADDR ARGS…` with the contract tests' grpcurl; its standard output.
async fn grpcurl(d: &Daemon, args: &[&str]) -> String {
    let tools = python_tools();
    let addr = d.addr.trim_start_matches("http://");
    let mut cmd = tokio::process::Command::new("grpcurl");
    cmd.env("PATH", tools.search_path())
        .arg("-plaintext")
        .arg(addr)
        .args(args);
    let what = format!("grpcurl {args:?}");
    let out = output(&what, &mut cmd, Duration::from_secs(30)).await;
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        said(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn reflection_lists_and_describes_the_call_and_watch_services() {
    let d = Daemon::start().await;
    let listed = grpcurl(&d, &["list"]).await;
    for service in ["xpool.v1.CallService", "xpool.v1.WatchService"] {
        assert!(listed.lines().any(|l| l == service), "{service}:\n{listed}");
    }
    let calls = grpcurl(&d, &["describe", "xpool.v1.CallService"]).await;
    for rpc in ["ListCallRecords", "ListCallEvents", "ListMessages"] {
        assert!(calls.contains(&format!("rpc {rpc} (")), "{rpc}:\n{calls}");
    }
    let watch = grpcurl(&d, &["describe", "xpool.v1.WatchService"]).await;
    assert!(
        watch.contains("returns ( stream .xpool.v1.WatchResponse )"),
        "{watch}"
    );
    // The messages a client needs resolve through their imports (Binding, CallEvent, ...).
    let event = grpcurl(&d, &["describe", "xpool.v1.WatchEvent"]).await;
    for field in [
        ".xpool.v1.Binding binding",
        ".xpool.v1.CallEvent call_event",
    ] {
        assert!(event.contains(field), "{field}:\n{event}");
    }
    d.stop().await;
}

#[tokio::test]
async fn fresh_numbers_are_normal_and_none_is_held_by_the_platform() {
    let d = Daemon::start().await;
    let mut pool = d.pool().await;
    let numbers = list_numbers(&mut pool, "rides").await;
    assert!(!numbers.is_empty());
    for n in &numbers {
        assert_eq!(n.status(), pb::NumberStatus::Normal, "{n:?}");
    }
    let stats = rpc(
        "GetPoolStats",
        pool.get_pool_stats(pb::GetPoolStatsRequest {
            app: "rides".into(),
        }),
    )
    .await
    .unwrap();
    assert!(!stats.areas.is_empty());
    for area in &stats.areas {
        assert_eq!(area.held_by_platform, 0, "{area:?}");
    }
    d.stop().await;
}

// Watch end to end: these need the change feed. ---------------------------------------------

fn rides_bind(i: u32) -> pb::BindRequest {
    pb::BindRequest {
        app: "rides".into(),
        party_a: party(2 * i),
        party_b: party(2 * i + 1),
        ..Default::default()
    }
}

fn bound_id(e: &pb::WatchEvent) -> &str {
    match &e.payload {
        Some(pb::watch_event::Payload::Binding(b)) => &b.binding_id,
        other => panic!("no binding in {e:?}: {other:?}"),
    }
}

fn bindings_only() -> pb::WatchRequest {
    pb::WatchRequest {
        apps: vec!["rides".into()],
        kinds: vec![
            pb::WatchKind::BindingBound.into(),
            pb::WatchKind::BindingReleased.into(),
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_watch_sees_a_bind_as_binding_bound() {
    let d = Daemon::start().await;
    let mut watching = Watching::open(&d, bindings_only()).await;
    let b = d.bind_ok(rides_bind(1)).await;
    let e = watching.next_event().await;
    assert_eq!(e.kind(), pb::WatchKind::BindingBound);
    assert_eq!(e.app, "rides");
    assert!(e.event_time.is_some());
    assert_eq!(bound_id(&e), b.binding_id);
    assert!(!e.resume_token.is_empty());
    d.stop().await;
}

#[tokio::test]
async fn a_resumed_watch_gets_only_what_came_after_its_token() {
    let d = Daemon::start().await;
    let mut watching = Watching::open(&d, bindings_only()).await;
    let first = d.bind_ok(rides_bind(1)).await;
    let seen = watching.next_event().await;
    assert_eq!(bound_id(&seen), first.binding_id);
    drop(watching);
    // While nobody watches: another Bind, and the first binding's release.
    let second = d.bind_ok(rides_bind(2)).await;
    d.unbind_ok(&first.binding_id).await;

    let resumed = pb::WatchRequest {
        resume_token: seen.resume_token.clone(),
        ..bindings_only()
    };
    let mut watching = Watching::open(&d, resumed).await;
    assert_eq!(
        watching.start, seen.resume_token,
        "it starts where it was asked to"
    );
    let e = watching.next_event().await;
    assert_eq!(
        (e.kind(), bound_id(&e)),
        (pb::WatchKind::BindingBound, second.binding_id.as_str())
    );
    let e = watching.next_event().await;
    assert_eq!(
        (e.kind(), bound_id(&e)),
        (pb::WatchKind::BindingReleased, first.binding_id.as_str())
    );
    d.stop().await;
}

#[tokio::test]
async fn shutdown_ends_a_watch_with_shutting_down_and_its_token() {
    let d = Daemon::start().await;
    let mut watching = Watching::open(&d, bindings_only()).await;
    let b = d.bind_ok(rides_bind(1)).await;
    let seen = watching.next_event().await;
    assert_eq!(bound_id(&seen), b.binding_id);
    let mut stream = watching.stream;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(d.stop());
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => break status,
            Err(_) => panic!("the Watch did not end at shutdown"),
        }
    };
    let r = assert_reason(&ended, Code::Unavailable, "SHUTTING_DOWN", &[]);
    assert_eq!(r.meta("resume_token"), seen.resume_token);
    drop(stream);
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the daemon stops")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the watch held up shutdown: {:?}",
        started.elapsed()
    );
}
