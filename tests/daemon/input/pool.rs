//! The pool service (ListNumbers, GetPoolStats, drain) with bad input.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

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
    // One bad number or area at a time: (case, number, area, the field named).
    let bad_specs = [
        (
            "number without +",
            "8617000000099",
            "010",
            "numbers[0].number",
        ),
        (
            "number with letters",
            "+86170000000ab",
            "010",
            "numbers[0].number",
        ),
        ("empty number", "", "010", "numbers[0].number"),
        (
            "area with letters",
            "+8617000000099",
            "01x",
            "numbers[0].area_code",
        ),
        ("empty area", "+8617000000099", "", "numbers[0].area_code"),
        (
            "area of 7 digits",
            "+8617000000099",
            "0101010",
            "numbers[0].area_code",
        ),
    ];
    let mut add_cases: Vec<(String, pb::AddNumbersRequest, &str)> = bad_specs
        .iter()
        .map(|(case, n, a, field)| (case.to_string(), add("rides", vec![spec(n, a)]), *field))
        .collect();
    add_cases.extend([
        ("empty app".into(), add("", vec![good.clone()]), "app"),
        ("no numbers".into(), add("rides", vec![]), "numbers"),
        // All or nothing: the good number before the bad one is not added either.
        (
            "good then bad".into(),
            add("rides", vec![good.clone(), spec("+86170000000ab", "010")]),
            "numbers[1].number",
        ),
        (
            "good then bad area".into(),
            add(
                "local",
                vec![spec("+8617400000099", "021"), spec("+8617400000098", "x")],
            ),
            "numbers[1].area_code",
        ),
    ]);
    for (case, req, field) in add_cases {
        let case = format!("AddNumbers, {case}");
        assert_rejected(
            c.add_numbers(req).await,
            Code::InvalidArgument,
            field,
            &case,
        );
        assert_unchanged(&d, &before, &case).await;
    }
    let unknown = add("nope", vec![good.clone()]);
    assert_unknown_app(c.add_numbers(unknown).await, "nope", "AddNumbers");
    assert_unchanged(&d, &before, "AddNumbers, unknown app").await;

    for app in ["", "nope"] {
        let case = format!("app {app:?}");
        let numbers = vec!["+8617000000001".to_owned()];
        let refused = |what: &str, result: Result<(), Status>| {
            let result = result.map(tonic::Response::new);
            let case = format!("{what}, {case}");
            if app.is_empty() {
                assert_rejected(result, Code::InvalidArgument, "app", &case);
            } else {
                assert_unknown_app(result, app, &case);
            }
        };
        let drain = pb::DrainNumbersRequest {
            app: app.into(),
            numbers: numbers.clone(),
        };
        refused("DrainNumbers", c.drain_numbers(drain).await.map(drop));
        let remove = pb::RemoveNumbersRequest {
            app: app.into(),
            numbers,
        };
        refused("RemoveNumbers", c.remove_numbers(remove).await.map(drop));
        let list = pb::ListNumbersRequest {
            app: app.into(),
            ..Default::default()
        };
        refused("ListNumbers", c.list_numbers(list).await.map(drop));
        let stats = pb::GetPoolStatsRequest { app: app.into() };
        refused("GetPoolStats", c.get_pool_stats(stats).await.map(drop));
        assert_unchanged(&d, &before, &case).await;
    }
    assert_rejected(
        c.list_numbers(pb::ListNumbersRequest {
            app: "rides".into(),
            page_size: -1,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
        "ListNumbers, page_size -1",
    );

    // The good number alone is added: the refusals above were about the bad ones.
    let added = c
        .add_numbers(add("rides", vec![good]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((added.added.len(), added.updated.len()), (1, 0));
    d.stop().await;
}

fn spec(number: &str, area: &str) -> pb::NumberSpec {
    pb::NumberSpec {
        number: number.into(),
        area_code: area.into(),
    }
}

fn add(app: &str, numbers: &[(&str, &str)]) -> pb::AddNumbersRequest {
    pb::AddNumbersRequest {
        app: app.into(),
        numbers: numbers.iter().map(|(n, a)| spec(n, a)).collect(),
    }
}

#[tokio::test]
async fn a_junk_list_numbers_page_token_is_refused_like_list_bindings() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    let list = |token: &str| pb::ListNumbersRequest {
        app: "rides".into(),
        page_size: 1,
        page_token: token.into(),
        ..Default::default()
    };
    for token in ["garbage", "+86 170", "+", &"t".repeat(40_000)] {
        let case = format!("ListNumbers, page_token {:.20?}", token);
        assert_invalid(c.list_numbers(list(token)).await, "page_token", &case);
    }
    // A real token pages on.
    let first = c.list_numbers(list("")).await.unwrap().into_inner();
    let next = c
        .list_numbers(list(&first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.numbers[0].number, "+8617000000001");
    assert_eq!(next.numbers[0].number, "+8617000000002");
    d.stop().await;
}

#[tokio::test]
async fn a_number_of_another_app_is_refused_naming_it_and_nothing_is_added() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    let before = snapshot(&d).await;
    // drivers' number, alone or after a good one; and a number listed twice.
    let cases = [
        ("alone", add("rides", &[("+8617100000001", "010")])),
        (
            "after a good one",
            add(
                "rides",
                &[("+8617000000099", "010"), ("+8617100000002", "010")],
            ),
        ),
        (
            "to an X-mode app",
            add("local", &[("+8617000000001", "010")]),
        ),
    ];
    for (case, req) in cases {
        let case = format!("AddNumbers, another app's number {case}");
        let err = c.add_numbers(req).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{case}: {err:?}");
        let owner = if case.contains("X-mode") {
            "rides"
        } else {
            "drivers"
        };
        assert_reason(
            &err,
            Code::AlreadyExists,
            "NUMBER_EXISTS",
            &[("owner", owner)],
        );
        assert!(
            err.message().contains(&format!("app \"{owner}\"")),
            "{case}: the message names the owner: {err:?}"
        );
        assert_unchanged(&d, &before, &case).await;
    }
    let twice = add(
        "rides",
        &[("+8617000000099", "010"), ("+8617000000099", "021")],
    );
    assert_rejected(
        c.add_numbers(twice).await,
        Code::InvalidArgument,
        "numbers[1].number",
        "AddNumbers, a number listed twice",
    );
    assert_unchanged(&d, &before, "a number listed twice").await;

    // Once drivers removes it, rides may have it.
    let remove = pb::RemoveNumbersRequest {
        app: "drivers".into(),
        numbers: vec!["+8617100000003".into()],
    };
    c.remove_numbers(remove).await.unwrap();
    let moved = add("rides", &[("+8617100000003", "021")]);
    let moved = c.add_numbers(moved).await.unwrap().into_inner();
    // It was drivers', so it is new to rides.
    assert_eq!(moved.added.len(), 1, "{moved:?}");
    assert_eq!(moved.added[0].area_code, "021");
    d.stop().await;
}

/// The numbers of `app` as the daemon lists them.
async fn numbers_of(d: &Daemon, app: &str) -> Vec<String> {
    let mut c = d.pool().await;
    list_numbers(&mut c, app)
        .await
        .into_iter()
        .map(|n| n.number)
        .collect()
}

#[tokio::test]
async fn numbers_are_checked_on_the_platform_before_they_are_added() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    let stores = numbers_of(&d, "stores").await;
    let (known, unknown) = ("+8617200000098", "+8617200000099");
    let sim_adds = |number: &str| serde_json::json!({"app_key": "k-axe", "add": [{"number": number, "area_code": "010"}]});
    d.sim.control_post("/sim/numbers", sim_adds(known)).await;

    // Not a number of the app on the platform (1012001): refused, naming it; nothing added,
    // also not the good number before it.
    for numbers in [
        vec![(unknown, "010")],
        vec![(known, "010"), (unknown, "010")],
    ] {
        let err = c.add_numbers(add("stores", &numbers)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let meta = [
            ("app", "stores"),
            ("number", unknown),
            ("platform_code", "1012001"),
        ];
        assert_reason(&err, Code::FailedPrecondition, "PLATFORM_REJECTED", &meta);
        assert!(err.message().contains(unknown), "{err:?}");
        assert!(err.message().contains("1012001"), "{err:?}");
        assert_eq!(numbers_of(&d, "stores").await, stores, "nothing added");
    }

    // The platform cannot be asked: UNAVAILABLE, nothing added.
    d.sim.control_post("/sim/numbers", sim_adds(unknown)).await;
    d.sim
        .faults(serde_json::json!({"app_key": "k-axe", "error_rate": 1.0}))
        .await;
    let err = c
        .add_numbers(add("stores", &[(unknown, "010")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains(unknown), "{err:?}");
    let meta = [
        ("app", "stores"),
        ("number", unknown),
        ("platform_code", "1010001"),
    ];
    assert_reason(&err, Code::Unavailable, "PLATFORM_UNAVAILABLE", &meta);
    assert_retry_hint(&err);
    assert_eq!(numbers_of(&d, "stores").await, stores, "nothing added");

    // The platform knows it: added, and a Bind pinned to it works.
    d.sim
        .faults(serde_json::json!({"app_key": "k-axe", "error_rate": 0.0}))
        .await;
    let added = c
        .add_numbers(add("stores", &[(unknown, "010")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((added.added.len(), added.updated.len()), (1, 0));
    d.bind_ok(pinned("stores", &party(1), None, unknown)).await;
    d.stop().await;
}

#[tokio::test]
async fn the_platform_check_can_be_turned_off() {
    let setup = Setup::standard().app("stores", |a| a.daemon("check_numbers_on_add", false));
    let d = Daemon::start_with(setup).await;
    let requests = d.sim.requests("k-axe").await;
    let added = d
        .pool()
        .await
        .add_numbers(add("stores", &[("+8617200000099", "010")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added.len(), 1);
    assert_eq!(
        d.sim.requests("k-axe").await,
        requests,
        "the platform was not asked"
    );
    d.stop().await;
}

/// DrainNumbers and RemoveNumbers refuse what AddNumbers refuses, all or nothing: no numbers
/// (`numbers`), a malformed or repeated number (INVALID_ARGUMENT naming `numbers[i]`); a
/// well-formed number that is not the app's is NOT_FOUND (`NUMBER_NOT_IN_POOL`, naming it).
#[tokio::test]
async fn bad_drain_and_remove_requests_are_refused_and_change_nothing() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    let before = snapshot(&d).await;
    // rides' own number first: the refusal must not drain or remove it either.
    let own = "+8617000000001";
    let invalid = [
        ("no numbers", vec![], "numbers"),
        ("number without +", vec![own, "8617000000002"], "numbers[1]"),
        (
            "number with letters",
            vec![own, "+86170000000ab"],
            "numbers[1]",
        ),
        ("empty number", vec![""], "numbers[0]"),
        ("number listed twice", vec![own, own], "numbers[1]"),
    ];
    for (case, numbers, field) in invalid {
        let numbers: Vec<String> = numbers.into_iter().map(Into::into).collect();
        let drain = pb::DrainNumbersRequest {
            app: "rides".into(),
            numbers: numbers.clone(),
        };
        let case = format!("DrainNumbers, {case}");
        assert_rejected(
            c.drain_numbers(drain).await,
            Code::InvalidArgument,
            field,
            &case,
        );
        assert_unchanged(&d, &before, &case).await;
        let remove = pb::RemoveNumbersRequest {
            app: "rides".into(),
            numbers,
        };
        let case = case.replace("DrainNumbers", "RemoveNumbers");
        assert_rejected(
            c.remove_numbers(remove).await,
            Code::InvalidArgument,
            field,
            &case,
        );
        assert_unchanged(&d, &before, &case).await;
    }
    // Well-formed: unknown, another app's (drivers'), or already removed.
    for (case, other) in [
        ("unknown number", "+8617999999999"),
        ("another app's number", "+8617100000001"),
    ] {
        let numbers = vec![own.to_owned(), other.to_owned()];
        let meta = [("app", "rides"), ("number", other), ("field", "numbers[1]")];
        let drain = pb::DrainNumbersRequest {
            app: "rides".into(),
            numbers: numbers.clone(),
        };
        let err = c.drain_numbers(drain).await.expect_err(case);
        assert_reason(&err, Code::NotFound, "NUMBER_NOT_IN_POOL", &meta);
        assert_unchanged(&d, &before, case).await;
        let remove = pb::RemoveNumbersRequest {
            app: "rides".into(),
            numbers,
        };
        let err = c.remove_numbers(remove).await.expect_err(case);
        assert_reason(&err, Code::NotFound, "NUMBER_NOT_IN_POOL", &meta);
        assert_unchanged(&d, &before, case).await;
    }
    let remove = |n: &str| pb::RemoveNumbersRequest {
        app: "rides".into(),
        numbers: vec![n.into()],
    };
    assert_eq!(
        c.remove_numbers(remove(own))
            .await
            .unwrap()
            .into_inner()
            .removed,
        1
    );
    let err = c.remove_numbers(remove(own)).await.unwrap_err();
    let meta = [("number", own), ("field", "numbers[0]")];
    assert_reason(&err, Code::NotFound, "NUMBER_NOT_IN_POOL", &meta);
    d.stop().await;
}
