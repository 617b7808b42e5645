//! Errors clients act on without parsing messages: each reason the daemon gives through the
//! simulator, with its code, its `ErrorInfo` metadata, and a retry hint (`RetryInfo`,
//! `retry-after-ms`, `grpc-retry-pushback-ms`) exactly when waiting helps — as a client decodes
//! them with `tonic_types::StatusExt`. Bad input (`INVALID_FIELD` with its `BadRequest`,
//! `UNKNOWN_APP`, `BINDING_NOT_FOUND`, `NUMBER_NOT_IN_POOL`, `NUMBER_EXISTS`,
//! `MESSAGE_TOO_LARGE`) is checked in `input`, the store's refusals (`STORAGE_FULL`,
//! `STORAGE_FAILED`, `BACKUP_REFUSED`) in `storage`.

use std::time::Duration;

use serde_json::json;
use tonic::Code;
use xpool::grpc::pb;

use crate::support::*;

/// drivers (AX, no fallback areas) with six numbers: two in 010, one in 021, three in 0755.
fn six_drivers() -> Setup {
    Setup::standard().app("drivers", |a| {
        a.renumber(
            8617100000001,
            &["010", "010", "021", "0755", "0755", "0755"],
        )
    })
}

/// `reason` with `meta`, and no retry hint: the same call fails again until something changes.
#[track_caller]
fn assert_final(s: &tonic::Status, code: Code, reason: &str, meta: &[(&str, &str)]) {
    let r = assert_reason(s, code, reason, meta);
    assert_eq!(r.retry, None, "{s:?}");
}

/// Nothing of `app` is left PENDING or ACTIVE, locally or (for a platform app) upstream.
async fn assert_nothing_bound(d: &Daemon, app: &str, key: &str) {
    for state in [pb::BindingState::Pending, pb::BindingState::Active] {
        assert!(d.list(app, state).await.is_empty(), "{app}: {state:?}");
    }
    assert!(
        d.sim.bindings(key).await.is_empty(),
        "{app} on the platform"
    );
}

fn update(binding_id: &str) -> pb::UpdateBindingRequest {
    pb::UpdateBindingRequest {
        binding_id: binding_id.into(),
        ttl: xpool::grpc::ttl(600),
        ..Default::default()
    }
}

#[tokio::test]
async fn pool_refusals_carry_their_reason_and_metadata() {
    let d = Daemon::start_with(six_drivers()).await;
    let mut c = d.bindings().await;
    let n3 = "+8617100000003";

    // An area the app has no numbers in at all is a configuration error, not an exhausted
    // pool; a request that may fall back elsewhere is bound there.
    let unknown = in_area("drivers", &party(1), None, "0999");
    let err = d
        .bind_refused(unknown.clone(), Code::FailedPrecondition)
        .await;
    let meta = [("app", "drivers"), ("area", "0999")];
    assert_final(&err, Code::FailedPrecondition, "UNKNOWN_AREA", &meta);
    assert_nothing_bound(&d, "drivers", "k-ax").await;
    let fallback = d
        .bind_ok(in_area("rides", &party(1), Some(&party(2)), "0999"))
        .await;
    assert_eq!(
        fallback.area_code, "021",
        "rides falls back to 021: {fallback:?}"
    );

    // 021's one number is taken: exhausted, with where else numbers are free, retryable.
    let taken = d.bind_ok(in_area("drivers", &party(10), None, "021")).await;
    assert_eq!(taken.x_number, n3);
    let err = d
        .bind_refused(
            in_area("drivers", &party(11), None, "021"),
            Code::ResourceExhausted,
        )
        .await;
    let meta = [
        ("app", "drivers"),
        ("areas", "021"),
        ("free_elsewhere", "5"),
    ];
    let r = assert_reason(&err, Code::ResourceExhausted, "POOL_EXHAUSTED", &meta);
    assert_eq!(r.retry, Some(Duration::from_secs(5)));

    // The bound number pinned for someone else; removed while it carries the binding.
    let pinned_req = pinned("drivers", &party(12), None, n3);
    let err = d.bind_refused(pinned_req, Code::FailedPrecondition).await;
    let meta = [("app", "drivers"), ("number", n3)];
    assert_final(&err, Code::FailedPrecondition, "NUMBER_UNAVAILABLE", &meta);
    let remove = pb::RemoveNumbersRequest {
        app: "drivers".into(),
        numbers: vec![n3.to_owned()],
    };
    let err = d.pool().await.remove_numbers(remove).await.unwrap_err();
    let meta = [("app", "drivers"), ("number", n3), ("bindings", "1")];
    assert_final(&err, Code::FailedPrecondition, "NUMBER_IN_USE", &meta);

    // AX: one party holds at most five numbers.
    for _ in 0..5 {
        d.bind_ok(bind_any("drivers", &party(1), None)).await;
    }
    let err = d
        .bind_refused(
            bind_any("drivers", &party(1), None),
            Code::FailedPrecondition,
        )
        .await;
    let meta = [("app", "drivers"), ("limit", "5")];
    assert_final(&err, Code::FailedPrecondition, "PARTY_AT_LIMIT", &meta);

    // A request_id used again for other parties.
    let with_id = |a: u32, b: u32| pb::BindRequest {
        request_id: "order-1".into(),
        ..bind("rides", &party(a), Some(&party(b)))
    };
    let first = d.bind_ok(with_id(3, 4)).await;
    let err = d
        .bind_refused(with_id(5, 6), Code::FailedPrecondition)
        .await;
    let meta = [
        ("app", "rides"),
        ("request_id", "order-1"),
        ("binding_id", first.binding_id.as_str()),
    ];
    assert_final(&err, Code::FailedPrecondition, "REQUEST_ID_CONFLICT", &meta);

    // UpdateBinding of a released binding, and of an AXYB one (no modify on the platform).
    d.unbind_ok(&first.binding_id).await;
    let err = c
        .update_binding(update(&first.binding_id))
        .await
        .unwrap_err();
    let meta = [
        ("app", "rides"),
        ("binding_id", first.binding_id.as_str()),
        ("state", "RELEASED"),
    ];
    assert_final(&err, Code::FailedPrecondition, "BINDING_NOT_ACTIVE", &meta);
    let chat = d.bind_ok(bind("chat", &party(1), Some(&party(2)))).await;
    let err = c
        .update_binding(update(&chat.binding_id))
        .await
        .unwrap_err();
    let meta = [("app", "chat"), ("mode", "AXYB")];
    assert_final(&err, Code::FailedPrecondition, "MODE_UNSUPPORTED", &meta);
    d.stop().await;
}

/// The standard apps, plus an AXB app whose platform side has recording off and one whose
/// daemon side has the wrong secret.
fn with_platform_troubles() -> Setup {
    let mut setup = Setup::standard();
    setup.apps.extend([
        App::new("norec", "k-norec", "AXB")
            .sim("recording_enabled", false)
            .numbers(8617500000001, &["010"]),
        App::new("locked", "k-locked", "AXB")
            .daemon("app_secret", "not-the-secret")
            .numbers(8617600000001, &["010"]),
    ]);
    setup
}

#[tokio::test]
async fn platform_refusals_carry_the_platform_code() {
    let d = Daemon::start_with(with_platform_troubles()).await;

    // Refused for good by the platform: recording not enabled (1012012), a pinned number the
    // platform says is not the app's (1012001).
    let record = pb::BindRequest {
        call_options: Some(pb::CallOptions {
            record: Some(true),
            ..Default::default()
        }),
        ..bind("norec", &party(1), Some(&party(2)))
    };
    let err = d.bind_refused(record, Code::FailedPrecondition).await;
    let meta = [("app", "norec"), ("platform_code", "1012012")];
    assert_final(&err, Code::FailedPrecondition, "PLATFORM_REJECTED", &meta);
    assert_nothing_bound(&d, "norec", "k-norec").await;
    let gone = "+8617000000004";
    let removed = json!({"app_key": "k-axb", "remove": [gone]});
    d.sim.control_post("/sim/numbers", removed).await;
    let err = d
        .bind_refused(
            pinned("rides", &party(1), Some(&party(2)), gone),
            Code::FailedPrecondition,
        )
        .await;
    let meta = [
        ("app", "rides"),
        ("number", gone),
        ("platform_code", "1012001"),
    ];
    assert_final(&err, Code::FailedPrecondition, "PLATFORM_REJECTED", &meta);

    // Credentials refused: the circuit opens at once, and later calls are not sent.
    for attempt in ["first", "second"] {
        let err = d
            .bind_refused(
                bind("locked", &party(1), Some(&party(2))),
                Code::Unavailable,
            )
            .await;
        let r = assert_reason(
            &err,
            Code::Unavailable,
            "CIRCUIT_OPEN",
            &[("app", "locked")],
        );
        assert!(r.retry.is_some(), "{attempt}: {err:?}");
    }
    assert_eq!(d.sim.requests("k-locked").await, 1);

    // Waiting helps: flow control (1010010) and the platform's own faults (1010001).
    for (fault, reason, code) in [
        ("flow_control_rate", "PLATFORM_RATE_LIMITED", "1010010"),
        ("error_rate", "PLATFORM_UNAVAILABLE", "1010001"),
    ] {
        let mut faults = json!({"app_key": "k-axb"});
        faults[fault] = 1.0.into();
        d.sim.faults(faults).await;
        let err = d
            .bind_refused(bind("rides", &party(3), Some(&party(4))), Code::Unavailable)
            .await;
        let meta = [("app", "rides"), ("platform_code", code)];
        assert_reason(&err, Code::Unavailable, reason, &meta);
        assert_retry_hint(&err);
    }
    d.sim.faults(json!({"app_key": "k-axb"})).await;
    assert_nothing_bound(&d, "rides", "k-axb").await;

    // The platform refuses every number the pool holds free: after three, the caller hears
    // that the pool is out of step (the numbers await reconciliation), and may retry.
    let all = ["+8617000000001", "+8617000000002", "+8617000000003"];
    let removed = json!({"app_key": "k-axb", "remove": all});
    d.sim.control_post("/sim/numbers", removed).await;
    let err = d
        .bind_refused(
            in_area("rides", &party(5), Some(&party(6)), "010"),
            Code::Unavailable,
        )
        .await;
    assert_reason(
        &err,
        Code::Unavailable,
        "POOL_OUT_OF_SYNC",
        &[("app", "rides")],
    );
    assert_retry_hint(&err);
    assert_nothing_bound(&d, "rides", "k-axb").await;
    d.stop().await;
}

/// A Bind still waiting for the platform when the caller's deadline comes: its outcome is not
/// known yet, and the caller may retry (with the same request_id).
#[tokio::test]
async fn a_bind_past_its_deadline_is_outcome_unknown() {
    let d = Daemon::start().await;
    d.sim
        .faults(json!({"app_key": "k-axb", "hang_ms": 60_000}))
        .await;
    let mut req = tonic::Request::new(pb::BindRequest {
        request_id: "ride-1".into(),
        ..bind("rides", &party(1), Some(&party(2)))
    });
    req.set_timeout(Duration::from_millis(1000));
    let err = d.bindings().await.bind(req).await.unwrap_err();
    assert_reason(&err, Code::Unavailable, "OUTCOME_UNKNOWN", &[]);
    assert_retry_hint(&err);
    // The platform resumes and carries the held call out; the bind settles.
    d.sim.faults(json!({"app_key": "k-axb"})).await;
    within("the bind settled", settle_in_background(&d, "rides")).await;
    d.stop().await;
}
