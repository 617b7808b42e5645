//! Bad input: every validation rule of the API answers INVALID_ARGUMENT naming the field (or
//! NOT_FOUND for an unknown but well-formed binding), and changes nothing, neither locally nor on
//! the platform; random requests never crash the daemon. Also health checking, server reflection
//! (v1 and v1alpha) and a clean shutdown.

use std::time::Duration;

use proptest::prelude::*;
use tonic::transport::Channel;
use tonic::{Code, Status};
use xpool::grpc::pb;

use crate::common::*;

/// The simulator apps behind the daemon's upstream apps.
const KEYS: [&str; 4] = ["k-axb", "k-ax", "k-axe", "k-axyb"];
/// Every configured app.
const APPS: [&str; 5] = ["rides", "drivers", "stores", "chat", "local"];

// Helpers -------------------------------------------------------------------------------------

/// Requests the simulator has counted, per app key.
async fn sim_requests(d: &Daemon) -> Vec<u64> {
    let mut out = Vec::new();
    for key in KEYS {
        out.push(d.sim.requests(key).await);
    }
    out
}

/// Every number of every app, as the daemon reports it.
async fn all_numbers(d: &Daemon) -> Vec<pb::NumberInfo> {
    let mut c = d.pool().await;
    let mut out = Vec::new();
    for app in APPS {
        out.extend(
            c.list_numbers(pb::ListNumbersRequest {
                app: app.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .numbers,
        );
    }
    out
}

/// What a rejected request must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    requests: Vec<u64>,
    sim_bindings: Vec<Vec<serde_json::Value>>,
    local: Vec<pb::Binding>,
    numbers: Vec<pb::NumberInfo>,
}

async fn snapshot(d: &Daemon) -> Snapshot {
    let mut sim_bindings = Vec::new();
    for key in KEYS {
        sim_bindings.push(d.sim.bindings(key).await);
    }
    Snapshot {
        requests: sim_requests(d).await,
        sim_bindings,
        local: d.list("", pb::BindingState::Unspecified).await,
        numbers: all_numbers(d).await,
    }
}

async fn assert_unchanged(d: &Daemon, before: &Snapshot, case: &str) {
    let after = snapshot(d).await;
    assert_eq!(
        after.requests, before.requests,
        "{case}: the platform was called"
    );
    assert_eq!(
        after.sim_bindings, before.sim_bindings,
        "{case}: the platform's bindings changed"
    );
    assert_eq!(after.local, before.local, "{case}: local bindings changed");
    assert_eq!(after.numbers, before.numbers, "{case}: the pool changed");
}

/// The call failed with `code` and a message that starts with `field:`.
fn assert_rejected<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
    field: &str,
    case: &str,
) {
    let err = match result {
        Ok(r) => panic!("{case}: accepted: {:?}", r.into_inner()),
        Err(e) => e,
    };
    assert_eq!(err.code(), code, "{case}: {err:?}");
    assert!(
        err.message().starts_with(&format!("{field}:")),
        "{case}: the message does not name {field}: {:?}",
        err.message()
    );
}

fn with(mut r: pb::BindRequest, f: impl FnOnce(&mut pb::BindRequest)) -> pb::BindRequest {
    f(&mut r);
    r
}

fn axb() -> pb::BindRequest {
    bind("rides", &party(1), Some(&party(2)))
}
fn ax() -> pb::BindRequest {
    bind("drivers", &party(1), None)
}
fn axe() -> pb::BindRequest {
    bind("stores", &party(1), None)
}
fn axyb() -> pb::BindRequest {
    bind("chat", &party(1), Some(&party(2)))
}
fn x_mode() -> pb::BindRequest {
    bind("local", &party(1), Some(&party(2)))
}

/// (case, request, field): each request is a valid one with one thing wrong.
fn bad_binds() -> Vec<(&'static str, pb::BindRequest, &'static str)> {
    vec![
        // Parties.
        (
            "party_a missing",
            with(axb(), |r| r.party_a.clear()),
            "party_a",
        ),
        (
            "party_a without +",
            with(axb(), |r| r.party_a = "8613900000001".into()),
            "party_a",
        ),
        (
            "party_a with letters",
            with(axb(), |r| r.party_a = "+86139abc00001".into()),
            "party_a",
        ),
        (
            "party_a with a dash",
            with(axb(), |r| r.party_a = "+86-13900000001".into()),
            "party_a",
        ),
        (
            "party_a too long (16 digits)",
            with(axb(), |r| r.party_a = "+8613900000000123".into()),
            "party_a",
        ),
        (
            "party_a too short (7 digits)",
            with(axb(), |r| r.party_a = "+8613900".into()),
            "party_a",
        ),
        (
            "party_a country code 0",
            with(axb(), |r| r.party_a = "+0613900000001".into()),
            "party_a",
        ),
        (
            "party_a with a space for +",
            with(axb(), |r| r.party_a = " 8613900000001".into()),
            "party_a",
        ),
        (
            "party_b same as party_a",
            with(axb(), |r| r.party_b = r.party_a.clone()),
            "party_b",
        ),
        (
            "party_b same as party_a (AXYB)",
            with(axyb(), |r| r.party_b = r.party_a.clone()),
            "party_b",
        ),
        (
            "party_b without +",
            with(axb(), |r| r.party_b = "13900000002".into()),
            "party_b",
        ),
        (
            "party_b with letters",
            with(axb(), |r| r.party_b = "+86139zz000002".into()),
            "party_b",
        ),
        (
            "party_b for AX",
            with(ax(), |r| r.party_b = party(2)),
            "party_b",
        ),
        (
            "party_b for AXE",
            with(axe(), |r| r.party_b = party(2)),
            "party_b",
        ),
        (
            "party_b missing for AXB",
            with(axb(), |r| r.party_b.clear()),
            "party_b",
        ),
        (
            "party_b missing for AXYB",
            with(axyb(), |r| r.party_b.clear()),
            "party_b",
        ),
        (
            "party_b missing for X",
            with(x_mode(), |r| r.party_b.clear()),
            "party_b",
        ),
        // App.
        ("unknown app", with(axb(), |r| r.app = "nope".into()), "app"),
        ("empty app", with(axb(), |r| r.app.clear()), "app"),
        (
            "app differing in case",
            with(axb(), |r| r.app = "Rides".into()),
            "app",
        ),
        // Area.
        (
            "area_code with letters",
            with(axb(), |r| r.area_code = "01a".into()),
            "area_code",
        ),
        (
            "area_code of one digit",
            with(axb(), |r| r.area_code = "0".into()),
            "area_code",
        ),
        (
            "area_code of 7 digits",
            with(axb(), |r| r.area_code = "0101010".into()),
            "area_code",
        ),
        (
            "area_code with a +",
            with(axb(), |r| r.area_code = "+86".into()),
            "area_code",
        ),
        // Ranges.
        (
            "ttl_seconds over 90 days",
            with(axb(), |r| r.ttl_seconds = 7_776_001),
            "ttl_seconds",
        ),
        (
            "ttl_seconds u64::MAX",
            with(axb(), |r| r.ttl_seconds = u64::MAX),
            "ttl_seconds",
        ),
        (
            "ttl_seconds over 90 days (AX)",
            with(ax(), |r| r.ttl_seconds = 7_776_001),
            "ttl_seconds",
        ),
        (
            "AXE ttl not whole minutes",
            with(axe(), |r| r.ttl_seconds = 90),
            "ttl_seconds",
        ),
        (
            "AXE ttl under a minute",
            with(axe(), |r| r.ttl_seconds = 59),
            "ttl_seconds",
        ),
        (
            "AXYB ttl under a minute",
            with(axyb(), |r| r.ttl_seconds = 30),
            "ttl_seconds",
        ),
        (
            "max_call_minutes over 1440",
            with(axb(), |r| r.max_call_minutes = 1441),
            "max_call_minutes",
        ),
        (
            "max_call_minutes u32::MAX",
            with(ax(), |r| r.max_call_minutes = u32::MAX),
            "max_call_minutes",
        ),
        // User data.
        (
            "user_data of 257 characters",
            with(axb(), |r| r.user_data = "u".repeat(257)),
            "user_data",
        ),
        (
            "user_data with {",
            with(axb(), |r| r.user_data = "order{42".into()),
            "user_data",
        ),
        (
            "user_data with }",
            with(axb(), |r| r.user_data = "order}42".into()),
            "user_data",
        ),
        (
            "user_data with CJK",
            with(axb(), |r| r.user_data = "订单42".into()),
            "user_data",
        ),
        (
            "user_data with hangul",
            with(axb(), |r| r.user_data = "주문".into()),
            "user_data",
        ),
        (
            "user_data with fullwidth",
            with(axb(), |r| r.user_data = "ＡＢ".into()),
            "user_data",
        ),
        (
            "user_data of 257 CJK-free multibyte chars",
            with(axb(), |r| r.user_data = "é".repeat(257)),
            "user_data",
        ),
        // Extension and pins.
        (
            "extension on AXB",
            with(axb(), |r| {
                r.x_number = "+8617000000001".into();
                r.extension = "12".into()
            }),
            "extension",
        ),
        (
            "extension on AX",
            with(ax(), |r| {
                r.x_number = "+8617100000001".into();
                r.extension = "12".into()
            }),
            "extension",
        ),
        (
            "extension on X",
            with(x_mode(), |r| {
                r.x_number = "+8617400000001".into();
                r.extension = "12".into()
            }),
            "extension",
        ),
        (
            "AXE extension of 3 digits",
            with(axe(), |r| {
                r.x_number = "+8617200000001".into();
                r.extension = "123".into()
            }),
            "extension",
        ),
        (
            "AXE extension of 1 digit",
            with(axe(), |r| {
                r.x_number = "+8617200000001".into();
                r.extension = "1".into()
            }),
            "extension",
        ),
        (
            "AXE extension all zeros",
            with(axe(), |r| {
                r.x_number = "+8617200000001".into();
                r.extension = "00".into()
            }),
            "extension",
        ),
        (
            "AXE extension with letters",
            with(axe(), |r| {
                r.x_number = "+8617200000001".into();
                r.extension = "1a".into()
            }),
            "extension",
        ),
        (
            "AXE extension of 5 digits",
            with(axe(), |r| {
                r.x_number = "+8617200000001".into();
                r.extension = "12345".into()
            }),
            "extension",
        ),
        (
            "AXE extension without x_number",
            with(axe(), |r| r.extension = "12".into()),
            "extension",
        ),
        (
            "x_number without +",
            with(axb(), |r| r.x_number = "8617000000001".into()),
            "x_number",
        ),
        (
            "x_number with letters",
            with(axb(), |r| r.x_number = "+86170000000x1".into()),
            "x_number",
        ),
        (
            "x_number not in the app's pool",
            with(axb(), |r| r.x_number = "+8617999999999".into()),
            "x_number",
        ),
        (
            "x_number of another app",
            with(axb(), |r| r.x_number = "+8617100000001".into()),
            "x_number",
        ),
        (
            "x_number not in the AXE pool",
            with(axe(), |r| {
                r.x_number = "+8617999999999".into();
                r.extension = "12".into()
            }),
            "x_number",
        ),
        (
            "x_number for AXYB",
            with(axyb(), |r| r.x_number = "+8617300000001".into()),
            "x_number",
        ),
        // Enums and the idempotency key.
        (
            "call_direction 4",
            with(axb(), |r| r.call_direction = 4),
            "call_direction",
        ),
        (
            "call_direction -1",
            with(axb(), |r| r.call_direction = -1),
            "call_direction",
        ),
        (
            "call_direction i32::MAX",
            with(ax(), |r| r.call_direction = i32::MAX),
            "call_direction",
        ),
        (
            "request_id of 129 characters",
            with(axb(), |r| r.request_id = "r".repeat(129)),
            "request_id",
        ),
        (
            "request_id non-ASCII",
            with(axb(), |r| r.request_id = "订单-1".into()),
            "request_id",
        ),
        (
            "request_id with a space",
            with(axb(), |r| r.request_id = "order 1".into()),
            "request_id",
        ),
        (
            "request_id with a control character",
            with(axb(), |r| r.request_id = "order\n1".into()),
            "request_id",
        ),
    ]
}

// One test per validation rule -----------------------------------------------------------------

#[tokio::test]
async fn every_bad_bind_is_invalid_argument_naming_the_field_and_changes_nothing() {
    let d = Daemon::start().await;
    let mut c = d.bindings().await;
    let before = snapshot(&d).await;
    assert!(before.local.is_empty());
    for (case, req, field) in bad_binds() {
        assert_rejected(c.bind(req).await, Code::InvalidArgument, field, case);
        assert_unchanged(&d, &before, case).await;
    }
    // The same requests with nothing wrong are accepted: each rejection above was about its
    // field. The limits themselves are allowed.
    let boundary = with(axb(), |r| {
        r.ttl_seconds = 7_776_000;
        r.max_call_minutes = 1_440;
        r.user_data = "u".repeat(256);
        r.request_id = "r".repeat(128);
        r.call_direction = pb::CallDirection::BToAOnly.into();
        r.area_code = "010".into();
    });
    for (case, req) in [
        ("AXB at the limits", boundary),
        ("AX", with(ax(), |r| r.user_data = "é".repeat(256))),
        (
            "AXE pinned",
            with(axe(), |r| {
                r.x_number = "+8617200000001".into();
                r.extension = "12".into();
                r.ttl_seconds = 120;
            }),
        ),
        ("AXYB", axyb()),
        ("X", x_mode()),
    ] {
        let b = c.bind(req).await;
        assert!(b.is_ok(), "{case}: a valid request was refused: {b:?}");
    }
    assert_eq!(d.list("", pb::BindingState::Active).await.len(), 5);
    d.stop().await;
}

#[tokio::test]
async fn bad_unbind_and_get_binding_are_refused_and_change_nothing() {
    let d = Daemon::start().await;
    let mut c = d.bindings().await;
    let live = c
        .bind(with(axb(), |r| r.request_id = "order-1".into()))
        .await
        .unwrap()
        .into_inner();
    let before = snapshot(&d).await;
    assert_eq!(before.local.len(), 1);
    assert_eq!(before.sim_bindings[0].len(), 1);

    let unknown_id = "0190a3c4-0000-7000-8000-000000000000";
    type Key = (&'static str, String, String, String, Code, &'static str);
    let cases: Vec<Key> = vec![
        (
            "neither id",
            "".into(),
            "".into(),
            "".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "neither id, app only",
            "".into(),
            "".into(),
            "rides".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "both ids",
            live.binding_id.clone(),
            "order-1".into(),
            "rides".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "malformed binding_id",
            "not-a-binding".into(),
            "".into(),
            "".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "binding_id with a trailing char",
            format!("{}x", live.binding_id),
            "".into(),
            "".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "request_id without app",
            "".into(),
            "order-1".into(),
            "".into(),
            Code::InvalidArgument,
            "app",
        ),
        (
            "request_id with an unknown app",
            "".into(),
            "order-1".into(),
            "nope".into(),
            Code::InvalidArgument,
            "app",
        ),
    ];
    for (case, binding_id, request_id, app, code, field) in cases {
        let unbind = c
            .unbind(pb::UnbindRequest {
                binding_id: binding_id.clone(),
                request_id: request_id.clone(),
                app: app.clone(),
            })
            .await;
        assert_rejected(unbind, code, field, &format!("Unbind, {case}"));
        assert_unchanged(&d, &before, &format!("Unbind, {case}")).await;
        let get = c
            .get_binding(pb::GetBindingRequest {
                binding_id,
                request_id,
                app,
            })
            .await;
        assert_rejected(get, code, field, &format!("GetBinding, {case}"));
    }

    // Well-formed but unknown: NOT_FOUND, naming what was looked up.
    let not_found: Vec<(&str, pb::UnbindRequest)> = vec![
        (
            "unknown binding_id",
            pb::UnbindRequest {
                binding_id: unknown_id.into(),
                ..Default::default()
            },
        ),
        (
            "unknown request_id",
            pb::UnbindRequest {
                request_id: "order-2".into(),
                app: "rides".into(),
                ..Default::default()
            },
        ),
        (
            "request_id of another app",
            pb::UnbindRequest {
                request_id: "order-1".into(),
                app: "drivers".into(),
                ..Default::default()
            },
        ),
    ];
    for (case, req) in not_found {
        let pb::UnbindRequest {
            binding_id,
            request_id,
            app,
        } = req.clone();
        for (what, result) in [
            ("Unbind", c.unbind(req).await),
            (
                "GetBinding",
                c.get_binding(pb::GetBindingRequest {
                    binding_id: binding_id.clone(),
                    request_id: request_id.clone(),
                    app,
                })
                .await,
            ),
        ] {
            let err = result.expect_err(case);
            assert_eq!(err.code(), Code::NotFound, "{what}, {case}: {err:?}");
            let named = if binding_id.is_empty() {
                "request_id"
            } else {
                unknown_id
            };
            assert!(
                err.message().contains(named),
                "{what}, {case}: {:?}",
                err.message()
            );
        }
        assert_unchanged(&d, &before, case).await;
    }

    // UpdateBinding: a malformed id, a lifetime past 90 days, an unknown id.
    let update = |binding_id: &str, ttl_seconds: u64| pb::UpdateBindingRequest {
        binding_id: binding_id.into(),
        ttl_seconds,
    };
    let cases = [
        ("UpdateBinding, no binding_id", update("", 60), "binding_id"),
        (
            "UpdateBinding, malformed binding_id",
            update("nope", 60),
            "binding_id",
        ),
        (
            "UpdateBinding, ttl over 90 days",
            update(&live.binding_id, 7_776_001),
            "ttl_seconds",
        ),
        (
            "UpdateBinding, ttl u64::MAX",
            update(&live.binding_id, u64::MAX),
            "ttl_seconds",
        ),
    ];
    for (case, req, field) in cases {
        assert_rejected(
            c.update_binding(req).await,
            Code::InvalidArgument,
            field,
            case,
        );
        assert_unchanged(&d, &before, case).await;
    }
    let err = c.update_binding(update(unknown_id, 60)).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "UpdateBinding, unknown id: {err:?}"
    );
    assert!(err.message().contains(unknown_id), "{err:?}");
    assert_unchanged(&d, &before, "UpdateBinding, unknown id").await;

    // The live binding is untouched and still found both ways.
    let got = c
        .get_binding(pb::GetBindingRequest {
            request_id: "order-1".into(),
            app: "rides".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, live);
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    d.stop().await;
}

#[tokio::test]
async fn bad_list_bindings_requests_are_refused() {
    let d = Daemon::start().await;
    let mut c = d.bindings().await;
    c.bind(axb()).await.unwrap();
    let before = snapshot(&d).await;
    let cases: Vec<(&str, pb::ListBindingsRequest, &str)> = vec![
        (
            "page_size 1001",
            pb::ListBindingsRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            "page_size u32::MAX",
            pb::ListBindingsRequest {
                page_size: u32::MAX,
                ..Default::default()
            },
            "page_size",
        ),
        (
            "garbage page_token",
            pb::ListBindingsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            "page_token of 70,000 bytes",
            pb::ListBindingsRequest {
                page_token: "t".repeat(70_000),
                ..Default::default()
            },
            "page_token",
        ),
        (
            "state 99",
            pb::ListBindingsRequest {
                state: 99,
                ..Default::default()
            },
            "state",
        ),
        (
            "state -1",
            pb::ListBindingsRequest {
                state: -1,
                ..Default::default()
            },
            "state",
        ),
        (
            "unknown app",
            pb::ListBindingsRequest {
                app: "nope".into(),
                ..Default::default()
            },
            "app",
        ),
    ];
    for (case, req, field) in cases {
        assert_rejected(
            c.list_bindings(req).await,
            Code::InvalidArgument,
            field,
            case,
        );
    }
    // page_size 1000 is the limit, not past it.
    let page = c
        .list_bindings(pb::ListBindingsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.bindings.len(), 1);
    assert_unchanged(&d, &before, "ListBindings").await;
    d.stop().await;
}

#[tokio::test]
async fn bad_pool_service_requests_are_refused_and_change_nothing() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    let before = snapshot(&d).await;
    let spec = |number: &str, area: &str| pb::NumberSpec {
        number: number.into(),
        area_code: area.into(),
    };
    let good = spec("+8617000000099", "010");

    let add = |app: &str, numbers: Vec<pb::NumberSpec>| pb::AddNumbersRequest {
        app: app.into(),
        numbers,
    };
    let add_cases: Vec<(&str, pb::AddNumbersRequest, &str)> = vec![
        ("AddNumbers, empty app", add("", vec![good.clone()]), "app"),
        (
            "AddNumbers, unknown app",
            add("nope", vec![good.clone()]),
            "app",
        ),
        ("AddNumbers, no numbers", add("rides", vec![]), "numbers"),
        (
            "AddNumbers, number without +",
            add("rides", vec![spec("8617000000099", "010")]),
            "numbers",
        ),
        (
            "AddNumbers, number with letters",
            add("rides", vec![spec("+86170000000ab", "010")]),
            "numbers",
        ),
        (
            "AddNumbers, empty number",
            add("rides", vec![spec("", "010")]),
            "numbers",
        ),
        (
            "AddNumbers, area with letters",
            add("rides", vec![spec("+8617000000099", "01x")]),
            "numbers",
        ),
        (
            "AddNumbers, empty area",
            add("rides", vec![spec("+8617000000099", "")]),
            "numbers",
        ),
        (
            "AddNumbers, area of 7 digits",
            add("rides", vec![spec("+8617000000099", "0101010")]),
            "numbers",
        ),
        // All or nothing: the good number before the bad one is not added either.
        (
            "AddNumbers, good then bad",
            add("rides", vec![good.clone(), spec("+86170000000ab", "010")]),
            "numbers",
        ),
        (
            "AddNumbers, good then bad area",
            add(
                "local",
                vec![spec("+8617400000099", "021"), spec("+8617400000098", "x")],
            ),
            "numbers",
        ),
    ];
    for (case, req, field) in add_cases {
        assert_rejected(c.add_numbers(req).await, Code::InvalidArgument, field, case);
        assert_unchanged(&d, &before, case).await;
    }

    for app in ["", "nope"] {
        let case = format!("app {app:?}");
        assert_rejected(
            c.drain_numbers(pb::DrainNumbersRequest {
                app: app.into(),
                numbers: vec!["+8617000000001".into()],
            })
            .await,
            Code::InvalidArgument,
            "app",
            &format!("DrainNumbers, {case}"),
        );
        assert_rejected(
            c.remove_numbers(pb::RemoveNumbersRequest {
                app: app.into(),
                numbers: vec!["+8617000000001".into()],
            })
            .await,
            Code::InvalidArgument,
            "app",
            &format!("RemoveNumbers, {case}"),
        );
        assert_rejected(
            c.list_numbers(pb::ListNumbersRequest {
                app: app.into(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "app",
            &format!("ListNumbers, {case}"),
        );
        assert_rejected(
            c.get_pool_stats(pb::GetPoolStatsRequest { app: app.into() })
                .await,
            Code::InvalidArgument,
            "app",
            &format!("GetPoolStats, {case}"),
        );
        assert_unchanged(&d, &before, &case).await;
    }
    assert_rejected(
        c.list_numbers(pb::ListNumbersRequest {
            app: "rides".into(),
            page_size: 1001,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
        "ListNumbers, page_size 1001",
    );

    // The good number alone is added: the refusals above were about the bad ones.
    let added = c
        .add_numbers(add("rides", vec![good]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((added.added, added.updated), (1, 0));
    d.stop().await;
}

/// Huge values (past the 16 KiB header list a tonic/hyper client accepts) must still come back
/// as a readable status, not a protocol error that kills the connection: the daemon's messages
/// must not echo unbounded input into `grpc-message`.
#[tokio::test]
async fn huge_values_are_refused_with_a_readable_status() {
    let d = Daemon::start().await;
    let huge = "9".repeat(70_000);
    let before = snapshot(&d).await;
    let mut failures = Vec::new();
    let mut note = |case: &str, result: Result<(), Status>, code: Code| match result {
        Err(s) if s.code() == code && std::error::Error::source(&s).is_none() => {}
        other => failures.push(format!("{case}: {:.300}", format!("{other:?}"))),
    };
    let mut c = d.bindings().await;
    let cases: Vec<(&str, pb::BindRequest)> = vec![
        ("Bind, huge app", with(axb(), |r| r.app = huge.clone())),
        (
            "Bind, huge party_a",
            with(axb(), |r| r.party_a = huge.clone()),
        ),
        (
            "Bind, huge party_b",
            with(axb(), |r| r.party_b = huge.clone()),
        ),
        (
            "Bind, huge area_code",
            with(axb(), |r| r.area_code = huge.clone()),
        ),
        (
            "Bind, huge x_number",
            with(axb(), |r| r.x_number = huge.clone()),
        ),
        (
            "Bind, huge request_id",
            with(axb(), |r| r.request_id = huge.clone()),
        ),
        (
            "Bind, huge user_data",
            with(axb(), |r| r.user_data = huge.clone()),
        ),
        (
            "Bind, huge extension",
            with(axe(), |r| r.extension = huge.clone()),
        ),
    ];
    for (case, req) in cases {
        // A fresh connection each time: a GOAWAY on one must not hide the next case.
        let mut c = d.bindings().await;
        note(case, c.bind(req).await.map(|_| ()), Code::InvalidArgument);
    }
    let get = |binding_id: &str, request_id: &str, app: &str| pb::GetBindingRequest {
        binding_id: binding_id.into(),
        request_id: request_id.into(),
        app: app.into(),
    };
    for (case, req, code) in [
        (
            "GetBinding, huge binding_id",
            get(&huge, "", ""),
            Code::InvalidArgument,
        ),
        (
            "GetBinding, huge app",
            get("", "r-1", &huge),
            Code::InvalidArgument,
        ),
        (
            "GetBinding, huge request_id",
            get("", &huge, "rides"),
            Code::NotFound,
        ),
    ] {
        let mut c = d.bindings().await;
        note(case, c.get_binding(req.clone()).await.map(|_| ()), code);
        let mut c = d.bindings().await;
        let pb::GetBindingRequest {
            binding_id,
            request_id,
            app,
        } = req;
        note(
            &case.replace("GetBinding", "Unbind"),
            c.unbind(pb::UnbindRequest {
                binding_id,
                request_id,
                app,
            })
            .await
            .map(|_| ()),
            code,
        );
    }
    note(
        "ListBindings, huge app",
        c.list_bindings(pb::ListBindingsRequest {
            app: huge.clone(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        Code::InvalidArgument,
    );
    let mut p = d.pool().await;
    note(
        "GetPoolStats, huge app",
        p.get_pool_stats(pb::GetPoolStatsRequest { app: huge.clone() })
            .await
            .map(|_| ()),
        Code::InvalidArgument,
    );
    let mut p = d.pool().await;
    note(
        "AddNumbers, huge number",
        p.add_numbers(pb::AddNumbersRequest {
            app: "rides".into(),
            numbers: vec![pb::NumberSpec {
                number: huge.clone(),
                area_code: "010".into(),
            }],
        })
        .await
        .map(|_| ()),
        Code::InvalidArgument,
    );
    assert_unchanged(&d, &before, "huge values").await;
    assert!(
        failures.is_empty(),
        "{} of the huge requests did not come back as a readable status:\n{}",
        failures.len(),
        failures.join("\n")
    );
    d.stop().await;
}

// Random requests ---------------------------------------------------------------------------

const X_NUMBERS: [&str; 6] = [
    "+8617000000001",
    "+8617100000001",
    "+8617200000001",
    "+8617300000001",
    "+8617400000001",
    "+8617999999999",
];

fn text() -> BoxedStrategy<String> {
    text_unboxed().boxed()
}

fn text_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => any::<String>(),
        2 => "\\PC{0,40}",
        1 => "[ -~]{0,300}",
        3 => "\\+86[0-9]{6,14}",
        1 => "[+0-9]{0,18}",
        // Long, but not so long that an echo of it overflows the client's 16 KiB header
        // limit: that is its own test (`huge_values_are_refused_with_a_readable_status`).
        1 => (1_000usize..4_000).prop_map(|n| "9".repeat(n)),
        1 => "[\u{4e00}-\u{9fff}{}]{1,300}",
    ]
}

fn app_name() -> BoxedStrategy<String> {
    app_name_unboxed().boxed()
}

fn app_name_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(APPS.to_vec()).prop_map(String::from),
        1 => text(),
    ]
}

fn party_text() -> BoxedStrategy<String> {
    party_text_unboxed().boxed()
}

fn party_text_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..6).prop_map(party),
        2 => text(),
    ]
}

fn bind_request() -> BoxedStrategy<pb::BindRequest> {
    bind_request_unboxed().boxed()
}

fn bind_request_unboxed() -> impl Strategy<Value = pb::BindRequest> {
    let numbers = (
        app_name(),
        party_text(),
        party_text(),
        prop_oneof![3 => Just(String::new()), 2 => prop::sample::select(vec!["010", "021", "0755", "999"]).prop_map(String::from), 1 => text()],
        any::<bool>(),
        ttl(),
        prop_oneof![3 => Just(String::new()), 1 => "[a-z0-9-]{1,8}", 1 => text()],
    );
    let rest = (
        prop_oneof![3 => Just(String::new()), 2 => prop::sample::select(X_NUMBERS.to_vec()).prop_map(String::from), 1 => text()],
        prop_oneof![3 => Just(String::new()), 2 => "[0-9]{0,5}", 1 => text()],
        prop_oneof![-2i32..6, any::<i32>()],
        any::<bool>(),
        prop_oneof![0u32..1500, any::<u32>()],
        prop_oneof![2 => Just(String::new()), 1 => text(), 1 => "[ -z|~]{1,260}"],
    );
    (numbers, rest).prop_map(
        |(
            (app, party_a, party_b, area_code, any_area, ttl_seconds, request_id),
            (x_number, extension, call_direction, record, max_call_minutes, user_data),
        )| pb::BindRequest {
            app,
            party_a,
            party_b,
            area_code,
            any_area,
            ttl_seconds,
            request_id,
            x_number,
            extension,
            call_direction,
            record,
            max_call_minutes,
            user_data,
        },
    )
}

/// A Bind that is valid, or nearly: the app's own mode rules, a few parties, request ids that
/// repeat (idempotency), pins into the app's pool, and now and then one field from
/// [`bind_request`].
fn plausible_bind() -> BoxedStrategy<pb::BindRequest> {
    plausible_bind_unboxed().boxed()
}

fn plausible_bind_unboxed() -> impl Strategy<Value = pb::BindRequest> {
    let base = (
        0usize..APPS.len(),
        0u32..6,
        0u32..6,
        prop_oneof![Just(""), Just("010"), Just("021"), Just("0755")],
        any::<bool>(),
        prop_oneof![
            Just(0u64),
            (1u64..120).prop_map(|m| m * 60),
            Just(7_776_000u64)
        ],
        prop_oneof![2 => Just(String::new()), 1 => (0u8..4).prop_map(|i| format!("r{i}"))],
        prop::option::weighted(0.2, 0usize..4),
    );
    let extra = (
        prop::option::weighted(0.2, 1u8..100),
        0i32..4,
        prop_oneof![3 => Just(0u32), 1 => 0u32..=1440],
        prop_oneof![3 => Just(String::new()), 1 => "[a-z0-9-]{1,16}"],
        prop::option::weighted(0.25, (0usize..13, bind_request())),
    );
    (base, extra).prop_map(
        |(
            (app, a, b, area, any_area, ttl_seconds, request_id, pin),
            (ext, call_direction, max_call_minutes, user_data, swap),
        )| {
            let app = APPS[app];
            let pool: &[&str] = match app {
                "rides" => &[
                    "+8617000000001",
                    "+8617000000002",
                    "+8617000000003",
                    "+8617000000004",
                ],
                "drivers" => &["+8617100000001", "+8617100000002", "+8617100000003"],
                "stores" => &["+8617200000001", "+8617200000002"],
                _ => &["+8617400000001", "+8617400000002"],
            };
            let needs_b = matches!(app, "rides" | "chat" | "local");
            let mut r = pb::BindRequest {
                app: app.into(),
                party_a: party(a),
                party_b: if needs_b && a != b {
                    party(b)
                } else if needs_b {
                    party(b + 6)
                } else {
                    String::new()
                },
                area_code: area.into(),
                any_area,
                ttl_seconds,
                request_id,
                x_number: match pin {
                    Some(i) if app != "chat" => pool[i % pool.len()].into(),
                    _ => String::new(),
                },
                extension: String::new(),
                call_direction,
                record: false,
                max_call_minutes,
                user_data,
            };
            if app == "stores" && !r.x_number.is_empty() {
                r.extension = ext.map(|e| format!("{e:02}")).unwrap_or_default();
            }
            if let Some((field, random)) = swap {
                match field {
                    0 => r.app = random.app,
                    1 => r.party_a = random.party_a,
                    2 => r.party_b = random.party_b,
                    3 => r.area_code = random.area_code,
                    4 => r.ttl_seconds = random.ttl_seconds,
                    5 => r.request_id = random.request_id,
                    6 => r.x_number = random.x_number,
                    7 => r.extension = random.extension,
                    8 => r.call_direction = random.call_direction,
                    9 => r.record = random.record,
                    10 => r.max_call_minutes = random.max_call_minutes,
                    11 => r.user_data = random.user_data,
                    _ => r.any_area = random.any_area,
                }
            }
            r
        },
    )
}

fn ttl() -> BoxedStrategy<u64> {
    ttl_unboxed().boxed()
}

fn ttl_unboxed() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..8_000_000,
        (0u64..3).prop_map(|m| m * 60),
        Just(7_776_000u64)
    ]
}

fn binding_id() -> BoxedStrategy<String> {
    binding_id_unboxed().boxed()
}

fn binding_id_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![any::<u128>().prop_map(uuid_text), text(),]
}

fn uuid_text(n: u128) -> String {
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[derive(Debug, Clone)]
enum Call {
    Bind(pb::BindRequest),
    Unbind(pb::UnbindRequest),
    Get(pb::GetBindingRequest),
    List(pb::ListBindingsRequest),
    Update(pb::UpdateBindingRequest),
    /// A new lifetime for the k-th binding made so far.
    KnownUpdate {
        k: usize,
        ttl_seconds: u64,
    },
    /// Unbind or look up the k-th binding made so far (by id or by request id).
    Known {
        k: usize,
        unbind: bool,
        by_request: bool,
    },
}

fn call() -> BoxedStrategy<Call> {
    call_unboxed().boxed()
}

fn call_unboxed() -> impl Strategy<Value = Call> {
    prop_oneof![
        3 => bind_request().prop_map(Call::Bind),
        5 => plausible_bind().prop_map(Call::Bind),
        2 => (binding_id(), text(), app_name()).prop_map(|(binding_id, request_id, app)| Call::Unbind(pb::UnbindRequest { binding_id, request_id, app })),
        2 => (binding_id(), text(), app_name()).prop_map(|(binding_id, request_id, app)| Call::Get(pb::GetBindingRequest { binding_id, request_id, app })),
        2 => (app_name(), party_text(), text(), prop_oneof![-1i32..7, any::<i32>()], prop_oneof![0u32..5, any::<u32>()], prop_oneof![3 => Just(String::new()), 1 => binding_id()])
            .prop_map(|(app, party, x_number, state, page_size, page_token)| Call::List(pb::ListBindingsRequest { app, party, x_number, state, page_size, page_token })),
        2 => (0usize..8, any::<bool>(), any::<bool>()).prop_map(|(k, unbind, by_request)| Call::Known { k, unbind, by_request }),
        1 => (binding_id(), ttl()).prop_map(|(binding_id, ttl_seconds)| Call::Update(pb::UpdateBindingRequest { binding_id, ttl_seconds })),
        2 => (0usize..8, ttl()).prop_map(|(k, ttl_seconds)| Call::KnownUpdate { k, ttl_seconds }),
    ]
}

/// A status the daemon may answer: not a crash (transport error), not an internal error.
fn check_status(what: &str, status: &Status) {
    let transport = std::error::Error::source(status)
        .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some());
    assert!(
        !transport,
        "{what}: transport error (did the daemon panic?): {status:?}"
    );
    assert!(
        !matches!(
            status.code(),
            Code::Internal | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
        ),
        "{what}: {status:?}"
    );
    if status.code() == Code::Unavailable {
        assert!(
            status.message().contains("retry after"),
            "{what}: not the daemon's UNAVAILABLE: {status:?}"
        );
    }
    if status.code() == Code::InvalidArgument {
        let field = status.message().split(':').next().unwrap_or_default();
        assert!(
            !field.is_empty() && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{what}: INVALID_ARGUMENT without a field: {status:?}"
        );
    }
}

async fn random_calls(d: &Daemon, calls: &[Call]) {
    let mut c = d.bindings().await;
    let mut made: Vec<pb::Binding> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let what = format!("call {i}");
        let result = match call.clone() {
            Call::Bind(req) => {
                let before = sim_requests(d).await;
                let r = c.bind(req.clone()).await;
                match &r {
                    Ok(b) => made.push(b.get_ref().clone()),
                    Err(e) if e.code() == Code::InvalidArgument => {
                        // Refused input never reaches the platform.
                        assert_eq!(
                            sim_requests(d).await,
                            before,
                            "{what}: a Bind refused with {e:?} reached the platform: {req:?}"
                        );
                    }
                    Err(_) => {}
                }
                r.map(|_| ())
            }
            Call::Unbind(req) => c.unbind(req).await.map(|_| ()),
            Call::Get(req) => c.get_binding(req).await.map(|_| ()),
            Call::List(req) => c.list_bindings(req).await.map(|_| ()),
            Call::Update(req) => c.update_binding(req).await.map(|_| ()),
            Call::KnownUpdate { k, ttl_seconds } => {
                let Some(b) = (!made.is_empty()).then(|| made[k % made.len()].clone()) else {
                    continue;
                };
                c.update_binding(pb::UpdateBindingRequest {
                    binding_id: b.binding_id,
                    ttl_seconds,
                })
                .await
                .map(|_| ())
            }
            Call::Known {
                k,
                unbind,
                by_request,
            } => {
                let Some(b) = (!made.is_empty()).then(|| made[k % made.len()].clone()) else {
                    continue;
                };
                let (binding_id, request_id, app) = if by_request && !b.request_id.is_empty() {
                    (String::new(), b.request_id.clone(), b.app.clone())
                } else {
                    (b.binding_id.clone(), String::new(), String::new())
                };
                if unbind {
                    c.unbind(pb::UnbindRequest {
                        binding_id,
                        request_id,
                        app,
                    })
                    .await
                    .map(|_| ())
                } else {
                    let got = c
                        .get_binding(pb::GetBindingRequest {
                            binding_id,
                            request_id,
                            app,
                        })
                        .await;
                    if let Ok(g) = &got {
                        assert_eq!(g.get_ref().binding_id, b.binding_id, "{what}");
                    }
                    got.map(|_| ())
                }
            }
        };
        if let Err(status) = result {
            check_status(&format!("{what} {call:?}"), &status);
        }
    }
    // Still serving: a valid Bind on a fresh connection, with parties no random call used.
    let mut fresh = d.bindings().await;
    let mut ok = bind("rides", "+8615000000001", Some("+8615000000002"));
    ok.any_area = true;
    let b = fresh
        .bind(ok)
        .await
        .expect("a valid Bind after random calls");
    assert_eq!(b.get_ref().state(), pb::BindingState::Active);
    // Nothing was left half-written.
    let pending = d.list("", pb::BindingState::Pending).await;
    assert!(
        pending.is_empty(),
        "PENDING bindings after random calls: {pending:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_crash_the_daemon(calls in prop::collection::vec(call(), 1..24)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Boxed: the futures of a debug build are large for a test thread's stack.
        rt.block_on(Box::pin(async {
            let d = Daemon::start().await;
            Box::pin(random_calls(&d, &calls)).await;
            d.stop().await;
        }));
    }
}

// Health, reflection, shutdown -------------------------------------------------------------

async fn channel(d: &Daemon) -> Channel {
    Channel::from_shared(d.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_is_serving_and_goes_not_serving_on_shutdown() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let d = Daemon::start().await;
    let ch = channel(&d).await;
    let mut h = HealthClient::new(ch.clone());
    for service in ["", "xpool.v1.BindingService", "xpool.v1.PoolService"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let err = h
        .check(HealthCheckRequest {
            service: "xpool.v1.Nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Watch each service, then begin shutdown: every watch sees NOT_SERVING before the daemon
    // stops (the watches hold the connection open; they are dropped before the grace ends).
    let mut watches = Vec::new();
    for service in ["", "xpool.v1.BindingService", "xpool.v1.PoolService"] {
        let mut w = h
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = w.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving, "{service:?}");
        watches.push((service, w));
    }
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(d.stop());
    let mut seen = Vec::new();
    for (service, w) in &mut watches {
        let next = tokio::time::timeout(Duration::from_secs(2), w.message()).await;
        let status = match next {
            Ok(Ok(Some(m))) => format!("{:?}", m.status()),
            Ok(Ok(None)) => "stream ended".to_owned(),
            Ok(Err(e)) => format!("error {e:?}"),
            Err(_) => "no change within 2 s".to_owned(),
        };
        seen.push((*service, status));
    }
    drop(watches);
    drop(h);
    drop(ch);
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the daemon stops")
        .unwrap();
    let elapsed = started.elapsed();
    for (service, status) in &seen {
        assert_eq!(
            status, "NotServing",
            "health of {service:?} during shutdown; all: {seen:?}"
        );
    }
    // Only the watches were in flight, and they ended as soon as they were dropped.
    assert!(
        elapsed < Duration::from_secs(4),
        "shutdown took {elapsed:?}"
    );
}

/// Sends `requests` on one reflection stream of the given protocol and returns the answers as
/// (service names, file descriptors, error codes) per request.
macro_rules! reflect {
    ($proto:ident, $ch:expr, $requests:expr) => {{
        use tonic_reflection::pb::$proto::ServerReflectionRequest;
        use tonic_reflection::pb::$proto::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$proto::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$proto::server_reflection_response::MessageResponse;
        let requests: Vec<ServerReflectionRequest> = $requests
            .into_iter()
            .map(|r: Reflect| ServerReflectionRequest {
                host: String::new(),
                message_request: Some(match r {
                    Reflect::List => MessageRequest::ListServices(String::new()),
                    Reflect::Symbol(s) => MessageRequest::FileContainingSymbol(s.into()),
                    Reflect::File(f) => MessageRequest::FileByFilename(f.into()),
                }),
            })
            .collect();
        let n = requests.len();
        let mut client = ServerReflectionClient::new($ch);
        let mut stream = client
            .server_reflection_info(tonic::codegen::tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => break,
                // tonic-reflection ends the stream with a status for an unknown symbol.
                Err(status) => {
                    out.push(Answer::Error(
                        status.code() as i32,
                        status.message().to_owned(),
                    ));
                    break;
                }
            };
            out.push(match resp.message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    Answer::Services(l.service.into_iter().map(|s| s.name).collect())
                }
                Some(MessageResponse::FileDescriptorResponse(f)) => Answer::Files(
                    f.file_descriptor_proto
                        .iter()
                        .map(|b| {
                            <prost_types::FileDescriptorProto as prost::Message>::decode(
                                b.as_slice(),
                            )
                            .unwrap()
                        })
                        .collect(),
                ),
                Some(MessageResponse::ErrorResponse(e)) => {
                    Answer::Error(e.error_code, e.error_message)
                }
                other => panic!("unexpected reflection answer {other:?}"),
            });
        }
        assert_eq!(out.len(), n, "one answer per request");
        out
    }};
}

#[derive(Debug, Clone, Copy)]
enum Reflect {
    List,
    Symbol(&'static str),
    File(&'static str),
}

#[derive(Debug)]
enum Answer {
    Services(Vec<String>),
    Files(Vec<prost_types::FileDescriptorProto>),
    Error(i32, String),
}

fn check_reflection(protocol: &str, answers: &[Answer]) {
    let Answer::Services(services) = &answers[0] else {
        panic!("{protocol}: list: {:?}", answers[0]);
    };
    for s in [
        "xpool.v1.BindingService",
        "xpool.v1.PoolService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|x| x == s),
            "{protocol}: {s} not listed: {services:?}"
        );
    }
    // describe xpool.v1.BindingService: the file that defines it, with its methods.
    let Answer::Files(files) = &answers[1] else {
        panic!("{protocol}: BindingService: {:?}", answers[1]);
    };
    let binding = files
        .iter()
        .find(|f| {
            f.package() == "xpool.v1" && f.service.iter().any(|s| s.name() == "BindingService")
        })
        .unwrap_or_else(|| panic!("{protocol}: no file defines BindingService: {files:?}"));
    let svc = binding
        .service
        .iter()
        .find(|s| s.name() == "BindingService")
        .unwrap();
    let methods: Vec<&str> = svc.method.iter().map(|m| m.name()).collect();
    for m in [
        "Bind",
        "Unbind",
        "UpdateBinding",
        "GetBinding",
        "ListBindings",
    ] {
        assert!(methods.contains(&m), "{protocol}: {m} not in {methods:?}");
    }
    assert!(
        binding
            .message_type
            .iter()
            .any(|m| m.name() == "BindRequest"),
        "{protocol}"
    );
    // describe xpool.v1.BindRequest and xpool.v1.PoolService.
    for (i, what) in [(2, "BindRequest"), (3, "PoolService")] {
        let Answer::Files(files) = &answers[i] else {
            panic!("{protocol}: {what}: {:?}", answers[i]);
        };
        assert!(
            files.iter().any(|f| f.package() == "xpool.v1"
                && (f.message_type.iter().any(|m| m.name() == what)
                    || f.service.iter().any(|s| s.name() == what))),
            "{protocol}: {what} not described"
        );
    }
    // The import a client needs to resolve Binding's timestamps is served too.
    let Answer::Files(files) = &answers[4] else {
        panic!("{protocol}: timestamp.proto: {:?}", answers[4]);
    };
    assert!(
        files
            .iter()
            .any(|f| f.name() == "google/protobuf/timestamp.proto"),
        "{protocol}: google/protobuf/timestamp.proto not served"
    );
    // The health service is described too.
    let Answer::Files(files) = &answers[5] else {
        panic!("{protocol}: Health: {:?}", answers[5]);
    };
    assert!(
        files.iter().any(|f| f.package() == "grpc.health.v1"),
        "{protocol}"
    );
    // An unknown symbol is NOT_FOUND (an error answer, or tonic-reflection's closing status).
    let Answer::Error(code, message) = &answers[6] else {
        panic!("{protocol}: unknown symbol: {:?}", answers[6]);
    };
    assert_eq!(*code, Code::NotFound as i32, "{protocol}: {message}");
}

#[tokio::test]
async fn reflection_lists_and_describes_in_v1_and_v1alpha() {
    let d = Daemon::start().await;
    let requests = [
        Reflect::List,
        Reflect::Symbol("xpool.v1.BindingService"),
        Reflect::Symbol("xpool.v1.BindRequest"),
        Reflect::Symbol("xpool.v1.PoolService"),
        Reflect::File("google/protobuf/timestamp.proto"),
        Reflect::Symbol("grpc.health.v1.Health"),
        Reflect::Symbol("xpool.v1.Nope"),
    ];
    let v1 = reflect!(v1, channel(&d).await, requests);
    check_reflection("v1", &v1);
    let v1alpha = reflect!(v1alpha, channel(&d).await, requests);
    check_reflection("v1alpha", &v1alpha);
    d.stop().await;
}

#[tokio::test]
async fn clean_shutdown_keeps_the_bindings_for_the_next_start() {
    let d = Daemon::start().await;
    let mut c = d.bindings().await;
    let mut made = Vec::new();
    for (i, req) in [axb(), ax(), axe(), axyb(), x_mode()]
        .into_iter()
        .enumerate()
    {
        let req = with(req, |r| r.request_id = format!("keep-{i}"));
        made.push(c.bind(req).await.unwrap().into_inner());
    }
    drop(c);
    let started = std::time::Instant::now();
    // `restart` stops cleanly (asserting Ok within the grace period) and starts on the same store.
    let d = d.restart().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut c = d.bindings().await;
    for b in &made {
        let got = c
            .get_binding(pb::GetBindingRequest {
                binding_id: b.binding_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got, b);
        let by_request = c
            .get_binding(pb::GetBindingRequest {
                request_id: b.request_id.clone(),
                app: b.app.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&by_request, b);
    }
    // A repeated Bind after the restart returns the stored binding, not a new one.
    let again = c
        .bind(with(axb(), |r| r.request_id = "keep-0".into()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.binding_id, made[0].binding_id);
    for (app, key) in [
        ("rides", "k-axb"),
        ("drivers", "k-ax"),
        ("stores", "k-axe"),
        ("chat", "k-axyb"),
    ] {
        assert_local_equals_sim(&d, app, key).await;
    }
    // And it still works: unbind one of the old bindings.
    let released = c
        .unbind(pb::UnbindRequest {
            binding_id: made[0].binding_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.state(), pb::BindingState::Released);
    d.stop().await;
}
