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
    // One bad number or area at a time: (case, number, area).
    let bad_specs = [
        ("number without +", "8617000000099", "010"),
        ("number with letters", "+86170000000ab", "010"),
        ("empty number", "", "010"),
        ("area with letters", "+8617000000099", "01x"),
        ("empty area", "+8617000000099", ""),
        ("area of 7 digits", "+8617000000099", "0101010"),
    ];
    let mut add_cases: Vec<(String, pb::AddNumbersRequest, &str)> = bad_specs
        .iter()
        .map(|(case, n, a)| (case.to_string(), add("rides", vec![spec(n, a)]), "numbers"))
        .collect();
    add_cases.extend([
        ("empty app".into(), add("", vec![good.clone()]), "app"),
        ("unknown app".into(), add("nope", vec![good.clone()]), "app"),
        ("no numbers".into(), add("rides", vec![]), "numbers"),
        // All or nothing: the good number before the bad one is not added either.
        (
            "good then bad".into(),
            add("rides", vec![good.clone(), spec("+86170000000ab", "010")]),
            "numbers",
        ),
        (
            "good then bad area".into(),
            add(
                "local",
                vec![spec("+8617400000099", "021"), spec("+8617400000098", "x")],
            ),
            "numbers",
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

    for app in ["", "nope"] {
        let case = format!("app {app:?}");
        let numbers = vec!["+8617000000001".to_owned()];
        let refused = |what: &str, result: Result<(), Status>| {
            let result = result.map(tonic::Response::new);
            assert_rejected(
                result,
                Code::InvalidArgument,
                "app",
                &format!("{what}, {case}"),
            );
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
        "numbers",
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
