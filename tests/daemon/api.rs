//! The API's contract beyond single calls: ListApps, numbers back into rotation, what
//! AddNumbers reports, and pages whose tokens belong to their filters.

use std::collections::BTreeSet;

use tonic::Code;
use xpool::grpc::pb;

use crate::input::{assert_invalid, assert_unchanged, snapshot};
use crate::support::*;

fn numbers(app: &str, numbers: &[&str]) -> (String, Vec<String>) {
    (
        app.to_owned(),
        numbers.iter().map(|n| (*n).to_owned()).collect(),
    )
}

fn spec(number: &str, area: &str) -> pb::NumberSpec {
    pb::NumberSpec {
        number: number.into(),
        area_code: area.into(),
    }
}

#[tokio::test]
async fn list_apps_shows_each_app_with_its_mode_numbers_limits_and_circuit() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    let (app, drain) = numbers("rides", &["+8617000000004"]);
    c.drain_numbers(pb::DrainNumbersRequest {
        app,
        numbers: drain,
    })
    .await
    .unwrap();
    let page = c
        .list_apps(pb::ListAppsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(page.next_page_token.is_empty());
    let names: Vec<&str> = page.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["chat", "drivers", "local", "rides", "stores"]);
    let rides = &page.apps[3];
    assert_eq!(rides.mode(), pb::Mode::Axb);
    assert_eq!((rides.number_count, rides.draining_count), (4, 1));
    assert!(rides.rate_per_second > 0 && rides.burst > 0, "{rides:?}");
    assert_eq!(rides.circuit_state(), pb::CircuitState::Closed);
    assert!(
        rides.platform_url.starts_with("http://127.0.0.1:"),
        "{rides:?}"
    );
    // X mode makes no platform calls: no limiter, no circuit.
    let local = &page.apps[2];
    assert_eq!(local.mode(), pb::Mode::X);
    assert_eq!(local.circuit_state(), pb::CircuitState::Unspecified);
    assert!(local.platform_url.is_empty() && local.rate_per_second == 0);

    // Pages of one, each token taking the next app.
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let page = c
            .list_apps(pb::ListAppsRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.apps.into_iter().map(|a| a.name));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, names);
    d.stop().await;
}

#[tokio::test]
async fn the_circuit_state_shows_an_app_whose_secret_the_platform_refused() {
    let setup = Setup::standard().app("drivers", |a| a.daemon("app_secret", "wrong"));
    let d = Daemon::start_with(setup).await;
    let refused = d
        .bindings()
        .await
        .bind(bind("drivers", &party(1), None))
        .await;
    assert!(refused.is_err());
    let apps = d
        .pool()
        .await
        .list_apps(pb::ListAppsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .apps;
    let circuit = |name: &str| {
        apps.iter()
            .find(|a| a.name == name)
            .unwrap()
            .circuit_state()
    };
    assert_eq!(circuit("drivers"), pb::CircuitState::Open);
    assert_eq!(circuit("rides"), pb::CircuitState::Closed);
    d.stop().await;
}

#[tokio::test]
async fn an_undrained_number_is_handed_out_again() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    // drivers (AX) has two numbers in 010; drain one, and every 010 Bind lands on the other.
    let (app, drained) = numbers("drivers", &["+8617100000001"]);
    let answer = c
        .drain_numbers(pb::DrainNumbersRequest {
            app: app.clone(),
            numbers: drained.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.numbers.len(), 1);
    assert_eq!(answer.numbers[0].state(), pb::NumberState::Draining);
    let first = d.bind_ok(in_area("drivers", &party(1), None, "010")).await;
    assert_eq!(first.x_number, "+8617100000002");
    let full = d
        .bindings()
        .await
        .bind(in_area("drivers", &party(2), None, "010"))
        .await;
    assert!(full.is_err(), "{full:?}");

    let answer = c
        .undrain_numbers(pb::UndrainNumbersRequest {
            app,
            numbers: drained,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.numbers[0].state(), pb::NumberState::Active);
    let again = d.bind_ok(in_area("drivers", &party(2), None, "010")).await;
    assert_eq!(again.x_number, "+8617100000001");
    stop_in_step(d, "drivers", "k-ax").await;
}

#[tokio::test]
async fn a_number_the_platform_blacklisted_stays_out_of_rotation() {
    let blacklisted = "+8617100000099";
    let setup = Setup::standard().app("drivers", |a| {
        a.blacklisted(blacklisted, "010")
            .daemon("check_numbers_on_add", false)
    });
    let d = Daemon::start_with(setup).await;
    let mut c = d.pool().await;
    c.add_numbers(pb::AddNumbersRequest {
        app: "drivers".into(),
        numbers: vec![spec(blacklisted, "010")],
    })
    .await
    .unwrap();
    // A Bind pinned to it meets the blacklist, which freezes it.
    let refused = d
        .bindings()
        .await
        .bind(pinned("drivers", &party(1), None, blacklisted))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let frozen = |c: &mut pb::pool_service_client::PoolServiceClient<_>| {
        let mut c = c.clone();
        async move {
            list_numbers(&mut c, "drivers")
                .await
                .into_iter()
                .find(|n| n.number == blacklisted)
                .unwrap()
                .state()
        }
    };
    assert_eq!(frozen(&mut c).await, pb::NumberState::Frozen);
    // Draining keeps it frozen; undraining is refused, naming why.
    let (app, it) = numbers("drivers", &[blacklisted]);
    let drained = c
        .drain_numbers(pb::DrainNumbersRequest {
            app: app.clone(),
            numbers: it.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drained.numbers[0].state(), pb::NumberState::Frozen);
    let err = c
        .undrain_numbers(pb::UndrainNumbersRequest { app, numbers: it })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("frozen"), "{err:?}");
    assert_eq!(frozen(&mut c).await, pb::NumberState::Frozen);
    d.stop().await;
}

#[tokio::test]
async fn add_numbers_reports_each_number_as_added_updated_or_unchanged() {
    let setup = Setup::standard().app("rides", |a| a.daemon("check_numbers_on_add", false));
    let d = Daemon::start_with(setup).await;
    let mut c = d.pool().await;
    let add = |numbers: Vec<pb::NumberSpec>| pb::AddNumbersRequest {
        app: "rides".into(),
        numbers,
    };
    let first = c
        .add_numbers(add(vec![spec("+8617000000099", "010")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.added.len(), 1);
    assert!(first.updated.is_empty() && first.unchanged.is_empty());
    assert_eq!(first.added[0].state(), pb::NumberState::Active);

    // Again, with one number moved to another area and one already there as asked.
    let again = c
        .add_numbers(add(vec![
            spec("+8617000000099", "010"),
            spec("+8617000000001", "021"),
            spec("+8617000000098", "0755"),
        ]))
        .await
        .unwrap()
        .into_inner();
    let numbers = |infos: &[pb::NumberInfo]| -> Vec<(String, String)> {
        infos
            .iter()
            .map(|n| (n.number.clone(), n.area_code.clone()))
            .collect()
    };
    assert_eq!(
        numbers(&again.unchanged),
        [("+8617000000099".to_owned(), "010".to_owned())]
    );
    assert_eq!(
        numbers(&again.updated),
        [("+8617000000001".to_owned(), "021".to_owned())]
    );
    assert_eq!(
        numbers(&again.added),
        [("+8617000000098".to_owned(), "0755".to_owned())]
    );
    d.stop().await;
}

#[tokio::test]
async fn list_numbers_pages_follow_their_filters_and_refuse_others() {
    let d = Daemon::start().await;
    let mut c = d.pool().await;
    let list = |area: &str, page_size: i32, page_token: String| pb::ListNumbersRequest {
        app: "rides".into(),
        area_code: area.into(),
        page_size,
        page_token,
    };
    // Pages of one through area 010: both its numbers, in order, and nothing else.
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = c
            .list_numbers(list("010", 1, token))
            .await
            .unwrap()
            .into_inner();
        assert!(page.numbers.len() <= 1);
        seen.extend(page.numbers.iter().map(|n| n.number.clone()));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["+8617000000001", "+8617000000002"]);

    let first = c
        .list_numbers(list("010", 1, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    // The token of area 010 brought to area 021, or to another app: refused, not misread.
    let before = snapshot(&d).await;
    assert_invalid(
        c.list_numbers(list("021", 1, first.next_page_token.clone()))
            .await,
        "page_token",
        "ListNumbers token of another area",
    );
    let mut other_app = list("010", 1, first.next_page_token.clone());
    other_app.app = "drivers".into();
    assert_invalid(
        c.list_numbers(other_app).await,
        "page_token",
        "ListNumbers token of another app",
    );
    // A ListNumbers token is no ListBindings token.
    let bindings = d
        .bindings()
        .await
        .list_bindings(pb::ListBindingsRequest {
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await;
    assert_invalid(bindings, "page_token", "ListNumbers token in ListBindings");
    assert_unchanged(&d, &before, "tokens with other filters").await;
    d.stop().await;
}

#[tokio::test]
async fn list_bindings_pages_cover_every_binding_once() {
    let d = Daemon::start().await;
    let mut made = BTreeSet::new();
    for i in 0..7 {
        let b = d
            .bind_ok(bind("rides", &party(2 * i), Some(&party(2 * i + 1))))
            .await;
        made.insert(b.binding_id);
    }
    let mut c = d.bindings().await;
    let list = |page_token: String| pb::ListBindingsRequest {
        app: "rides".into(),
        state: pb::BindingState::Active.into(),
        page_size: 3,
        page_token,
        ..Default::default()
    };
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = c.list_bindings(list(token)).await.unwrap().into_inner();
        assert!(page.bindings.len() <= 3);
        seen.extend(page.bindings.into_iter().map(|b| b.binding_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), made.len(), "no binding twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), made);

    // The second page's token with another state filter is refused.
    let first = c
        .list_bindings(list(String::new()))
        .await
        .unwrap()
        .into_inner();
    let mut released = list(first.next_page_token);
    released.state = pb::BindingState::Released.into();
    assert_invalid(
        c.list_bindings(released).await,
        "page_token",
        "ListBindings token with another state",
    );
    d.stop().await;
}
