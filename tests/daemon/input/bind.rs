//! Bind: one bad field at a time, and the same requests without it.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

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
        ("empty app", with(axb(), |r| r.app.clear()), "app"),
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
            "ttl over 90 days",
            with(axb(), |r| r.ttl = xpool::grpc::ttl(7_776_001)),
            "ttl",
        ),
        (
            "ttl i64::MAX seconds",
            with(axb(), |r| r.ttl = xpool::grpc::ttl(i64::MAX as u64)),
            "ttl",
        ),
        (
            "ttl negative",
            with(axb(), |r| {
                r.ttl = Some(prost_types::Duration {
                    seconds: -60,
                    nanos: 0,
                })
            }),
            "ttl",
        ),
        (
            "ttl zero (unset means no expiry)",
            with(axb(), |r| r.ttl = Some(prost_types::Duration::default())),
            "ttl",
        ),
        (
            "ttl with a fraction of a second",
            with(axb(), |r| {
                r.ttl = Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 500_000_000,
                })
            }),
            "ttl",
        ),
        (
            "ttl over 90 days (AX)",
            with(ax(), |r| r.ttl = xpool::grpc::ttl(7_776_001)),
            "ttl",
        ),
        (
            "AXE ttl not whole minutes",
            with(axe(), |r| r.ttl = xpool::grpc::ttl(90)),
            "ttl",
        ),
        (
            "AXE ttl under a minute",
            with(axe(), |r| r.ttl = xpool::grpc::ttl(59)),
            "ttl",
        ),
        (
            "AXYB ttl under a minute",
            with(axyb(), |r| r.ttl = xpool::grpc::ttl(30)),
            "ttl",
        ),
        (
            "max_call_minutes over 1440",
            with(axb(), |r| options(r).max_call_minutes = Some(1441)),
            "call_options.max_call_minutes",
        ),
        (
            "max_call_minutes negative",
            with(ax(), |r| options(r).max_call_minutes = Some(-1)),
            "call_options.max_call_minutes",
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
            pinned(axb(), "+8617000000001", "12"),
            "extension",
        ),
        (
            "extension on AX",
            pinned(ax(), "+8617100000001", "12"),
            "extension",
        ),
        (
            "extension on X",
            pinned(x_mode(), "+8617400000001", "12"),
            "extension",
        ),
        (
            "AXE extension of 3 digits",
            pinned(axe(), "+8617200000001", "123"),
            "extension",
        ),
        (
            "AXE extension of 1 digit",
            pinned(axe(), "+8617200000001", "1"),
            "extension",
        ),
        (
            "AXE extension all zeros",
            pinned(axe(), "+8617200000001", "00"),
            "extension",
        ),
        (
            "AXE extension with letters",
            pinned(axe(), "+8617200000001", "1a"),
            "extension",
        ),
        (
            "AXE extension of 5 digits",
            pinned(axe(), "+8617200000001", "12345"),
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
            "x_number for AXYB",
            with(axyb(), |r| r.x_number = "+8617300000001".into()),
            "x_number",
        ),
        // Enums and the idempotency key.
        (
            "call_direction 4",
            with(axb(), |r| options(r).call_direction = 4),
            "call_options.call_direction",
        ),
        (
            "call_direction -1",
            with(axb(), |r| options(r).call_direction = -1),
            "call_options.call_direction",
        ),
        (
            "call_direction i32::MAX",
            with(ax(), |r| options(r).call_direction = i32::MAX),
            "call_options.call_direction",
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

/// `base` pinned to X number `x` with extension `extension`.
/// The request's call options, set.
fn options(r: &mut pb::BindRequest) -> &mut pb::CallOptions {
    r.call_options.get_or_insert_default()
}

fn pinned(base: pb::BindRequest, x: &str, extension: &str) -> pb::BindRequest {
    pb::BindRequest {
        x_number: x.into(),
        extension: extension.into(),
        ..base
    }
}

// One test per validation rule -----------------------------------------------------------------

/// A well-formed app or X number that does not exist is NOT_FOUND, naming it, and changes
/// nothing: an unknown app (`UNKNOWN_APP`), a number not in the app's pool
/// (`NUMBER_NOT_IN_POOL`).
#[tokio::test]
async fn an_unknown_app_or_x_number_is_not_found_and_changes_nothing() {
    let (d, mut c) = Daemon::start_with_client().await;
    let before = snapshot(&d).await;
    for (case, app) in [("unknown app", "nope"), ("app differing in case", "Rides")] {
        let req = with(axb(), |r| r.app = app.into());
        assert_unknown_app(c.bind(req).await, app, case);
        assert_unchanged(&d, &before, case).await;
    }
    for (case, req, app, x) in [
        (
            "x_number not in the app's pool",
            with(axb(), |r| r.x_number = "+8617999999999".into()),
            "rides",
            "+8617999999999",
        ),
        (
            "x_number of another app",
            with(axb(), |r| r.x_number = "+8617100000001".into()),
            "rides",
            "+8617100000001",
        ),
        (
            "x_number not in the AXE pool",
            pinned(axe(), "+8617999999999", "12"),
            "stores",
            "+8617999999999",
        ),
    ] {
        let err = c.bind(req).await.expect_err(case);
        let meta = [("app", app), ("number", x), ("field", "x_number")];
        assert_reason(&err, Code::NotFound, "NUMBER_NOT_IN_POOL", &meta);
        assert_unchanged(&d, &before, case).await;
    }
    d.stop().await;
}

#[tokio::test]
async fn every_bad_bind_is_invalid_argument_naming_the_field_and_changes_nothing() {
    let (d, mut c) = Daemon::start_with_client().await;
    let before = snapshot(&d).await;
    assert!(before.local.is_empty());
    for (case, req, field) in bad_binds() {
        assert_rejected(c.bind(req).await, Code::InvalidArgument, field, case);
        assert_unchanged(&d, &before, case).await;
    }
    // The same requests with nothing wrong are accepted: each rejection above was about its
    // field. The limits themselves are allowed.
    let boundary = with(axb(), |r| {
        r.ttl = xpool::grpc::ttl(7_776_000);
        options(r).max_call_minutes = Some(1_440);
        r.user_data = "u".repeat(256);
        r.request_id = "r".repeat(128);
        options(r).call_direction = pb::CallDirection::BToAOnly.into();
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
                r.ttl = xpool::grpc::ttl(120);
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
