//! Bad input gets the platform's answer, never a panic or a hang; mode, frozen-account and
//! recording rules; parameter validation naming the parameter (binding-api.md §4.1).

use crate::support::platform::wire::*;
use crate::support::platform::{codes, paths};
use reqwest::Method;
use serde_json::json;
use xpool::upstream::ErrorClass;

use crate::common::*;

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let sim = Sim::start().await;
    let resp = sim
        .raw(Method::GET, "/rest/caas/nothing/v1.0", "k-axb")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = sim
        .raw(Method::PATCH, paths::AXB, "k-axb")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    // The client calls a 404 a configuration error (wrong base URL).
    let mut s = sim.settings("k-axb");
    s.base_url = format!("{}/wrong-prefix", sim.base_url);
    let e = sim
        .client_with(s)
        .axb_query(&AxbQuery::Subscription("x".into()))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Config, "{e:?}");
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_invalid_requests() {
    let sim = Sim::start().await;
    for body in ["{not json", "[1,2]", "", "\"text\""] {
        let (status, code, desc) =
            raw_send(sim.raw(Method::POST, paths::AXB, "k-axb").body(body)).await;
        assert_eq!(
            (status, code.as_str()),
            (403, codes::INVALID_REQUEST),
            "{body:?}"
        );
        assert!(desc.contains("body"), "{desc}");
    }
    // Wrong content type.
    let (_, code, desc) = raw_send(
        sim.signed(Method::POST, paths::AXB, "k-axb")
            .header("Content-Type", "text/plain")
            .body(json!({"callerNum": A1, "calleeNum": A2}).to_string()),
    )
    .await;
    assert_eq!(code, codes::INVALID_REQUEST);
    assert!(desc.contains("Content-Type"), "{desc}");
    // Oversized.
    let huge =
        json!({"callerNum": A1, "calleeNum": A2, "userData": "x".repeat(200_000)}).to_string();
    let (status, code, _) = raw_send(sim.raw(Method::POST, paths::AXB, "k-axb").body(huge)).await;
    assert_eq!((status, code.as_str()), (413, codes::INVALID_REQUEST));
    assert!(sim.bindings("k-axb").await.is_empty());
}

#[tokio::test]
async fn parameters_are_validated_by_name_and_tolerated_in_either_type() {
    let sim = Sim::start().await;
    let base = json!({"callerNum": A1, "calleeNum": A2, "relationNum": "+8617000000001"});
    let cases = [
        ("callerNum", json!("13800000001")),
        ("calleeNum", json!("+86 138")),
        ("relationNum", json!("x")),
        ("duration", json!(7_776_001)),
        ("duration", json!("soon")),
        ("maxDuration", json!(1441)),
        ("callDirection", json!(3)),
        ("userData", json!("{\"a\":1}")),
        ("userData", json!("订单")),
        ("userData", json!("x".repeat(257))),
        ("recordFlag", json!("maybe")),
        ("areaMatchMode", json!("2")),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let (status, code, desc) = raw_send(
            sim.raw(Method::POST, paths::AXB, "k-axb")
                .body(body.to_string()),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (403, codes::INVALID_REQUEST),
            "{field}={value}"
        );
        assert!(desc.contains(field), "{field}={value}: {desc}");
    }
    assert!(
        sim.bindings("k-axb").await.is_empty(),
        "nothing was bound by a bad request"
    );

    // Numbers as strings and booleans as JSON booleans are accepted, like the samples send them.
    let mut body = base.clone();
    body["duration"] = json!("3600");
    body["recordFlag"] = json!(true);
    body["callDirection"] = json!("0");
    let (status, code, _) = raw_send(
        sim.raw(Method::POST, paths::AXB, "k-axb")
            .body(body.to_string()),
    )
    .await;
    assert_eq!((status, code.as_str()), (200, codes::SUCCESS));
}

#[tokio::test]
async fn an_unescaped_plus_in_a_query_is_not_found_as_a_number() {
    let sim = Sim::start().await;
    sim.client("k-axb")
        .axb_bind(&AxbBindRequest {
            caller_num: A1.into(),
            callee_num: A2.into(),
            relation_num: Some("+8617000000001".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // The typed client escapes + as %2B; a hand-written query that does not gets 1010002.
    let query = |x: &str| format!("{}?relationNum={x}", paths::AXB);
    let (_, code, desc) = raw_get(&sim, &query("+8617000000001"), "k-axb").await;
    assert_eq!(code, codes::INVALID_REQUEST);
    assert!(desc.contains("relationNum"), "{desc}");
    let (_, code, _) = raw_get(&sim, &query("%2B8617000000001"), "k-axb").await;
    assert_eq!(code, codes::SUCCESS);
}

#[tokio::test]
async fn each_app_may_call_only_its_own_mode() {
    let sim = Sim::start().await;
    let axb = sim.client("k-axb");
    expect_refusal(
        axb.ax_query(&AxSelector::OrigNum(A1.into())).await,
        codes::API_NOT_ALLOWED,
        ErrorClass::Config,
    );
    expect_code(
        axb.axe_query_v1(&AxeSelector::Subscription("s".into()))
            .await,
        codes::API_NOT_ALLOWED,
    );
    expect_code(
        axb.axyb_query(&AxybQuery::Subscription("s".into())).await,
        codes::API_NOT_ALLOWED,
    );
    let ax = sim.client("k-ax");
    let query = AxbQuery::Subscription("s".into());
    expect_code(ax.axb_query(&query).await, codes::API_NOT_ALLOWED);
}

#[tokio::test]
async fn a_frozen_account_and_an_app_without_recording() {
    let sim = Sim::start().await;
    let bind = |x: &str| AxbBindRequest {
        caller_num: A1.into(),
        callee_num: A2.into(),
        relation_num: Some(x.into()),
        ..Default::default()
    };
    let frozen = sim.client("k-frozen");
    expect_refusal(
        frozen.axb_bind(&bind("+8617400000001")).await,
        codes::SUBSCRIBER_FROZEN,
        ErrorClass::AccountFrozen,
    );
    let query = AxbQuery::Subscription("s".into());
    expect_code(frozen.axb_query(&query).await, codes::SUBSCRIBER_FROZEN);

    let norec = sim.client("k-norec");
    let recorded = AxbBindRequest {
        record_flag: Some(true),
        ..bind("+8617500000001")
    };
    expect_refusal(
        norec.axb_bind(&recorded).await,
        codes::RECORDING_NOT_OPEN,
        ErrorClass::Config,
    );
    norec.axb_bind(&bind("+8617500000001")).await.unwrap();
}

#[tokio::test]
async fn axyb_calls_carry_the_app_key_in_the_query() {
    let sim = Sim::start().await;
    let body = json!({"origNum": A1, "areaCode": "010"}).to_string();
    for query in ["", "?app_key=k-other"] {
        let (_, code, desc) = raw_send(
            sim.raw(Method::POST, &format!("{}{query}", paths::AXYB), "k-axyb")
                .body(body.clone()),
        )
        .await;
        assert_eq!(code, codes::INVALID_REQUEST, "{query}");
        assert!(desc.contains("app_key"), "{desc}");
    }
    assert!(sim.bindings("k-axyb").await.is_empty());
}
