//! AXB (binding-api.md §2.1, §4.2).

use crate::support::platform::codes;
use crate::support::platform::wire::*;
use xpool::upstream::ErrorClass;

use crate::common::*;

const X1: &str = "+8617000000001";
const X2: &str = "+8617000000002";
const X3: &str = "+8617000000003";
const BLACKLISTED: &str = "+8617000000009";

fn bind(a: &str, b: &str, x: Option<&str>) -> AxbBindRequest {
    AxbBindRequest {
        caller_num: a.into(),
        callee_num: b.into(),
        relation_num: x.map(Into::into),
        ..Default::default()
    }
}

/// A1 and A2 bound on X1 for `seconds`.
fn lasting(seconds: u64) -> AxbBindRequest {
    AxbBindRequest {
        duration: Some(seconds),
        ..bind(A1, A2, Some(X1))
    }
}

#[tokio::test]
async fn bind_query_modify_unbind_round_trip() {
    let (sim, c) = Sim::start_for("k-axb").await;

    let mut req = lasting(3600);
    req.max_duration = Some(30);
    req.call_direction = Some(1);
    req.record_flag = Some(true);
    req.user_data = Some("order-1".into());
    let bound = c.axb_bind(&req).await.unwrap();
    assert_eq!(bound.relation_num, X1);
    assert!(!bound.subscription_id.is_empty() && bound.subscription_id.len() <= 64);
    assert_eq!(
        (bound.duration, bound.max_duration, bound.call_direction),
        (Some(3600), Some(30), Some(1))
    );

    let q = c
        .axb_query(&AxbQuery::Subscription(bound.subscription_id.clone()))
        .await
        .unwrap();
    assert_eq!(q.total_count, 1);
    let rec = &q.relation_num_list[0];
    assert_eq!(
        (
            rec.caller_num.as_str(),
            rec.callee_num.as_str(),
            rec.relation_num.as_str()
        ),
        (A1, A2, X1)
    );
    assert_eq!(rec.duration, Some(3600));
    assert_eq!(rec.record_flag, Some(true));
    assert_eq!(rec.user_data.as_deref(), Some("order-1"));
    assert!(rec.subscribe_time.is_some());

    // Modify B and the lifetime; the record follows.
    let modify = AxbModifyRequest {
        subscription_id: bound.subscription_id.clone(),
        callee_num: Some(A3.into()),
        duration: Some(60),
        ..Default::default()
    };
    c.axb_modify(&modify).await.unwrap();
    let q = c
        .axb_query(&AxbQuery::Subscription(bound.subscription_id.clone()))
        .await
        .unwrap();
    assert_eq!(q.relation_num_list[0].callee_num, A3);
    assert_eq!(q.relation_num_list[0].duration, Some(60));

    let live = sim.bindings("k-axb").await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["subscriptionId"], bound.subscription_id.as_str());
    assert_eq!(live[0]["mode"], "AXB");
    assert_eq!(
        (
            live[0]["x"].as_str(),
            live[0]["a"].as_str(),
            live[0]["b"].as_str()
        ),
        (Some(X1), Some(A1), Some(A3))
    );
    assert!(
        live[0].get("extension").is_none(),
        "absent fields are omitted"
    );

    let by_id = AxbUnbind::Subscription(bound.subscription_id);
    c.axb_unbind(&by_id).await.unwrap();
    assert!(sim.bindings("k-axb").await.is_empty());
    expect_code(c.axb_unbind(&by_id).await, codes::RECORD_NOT_EXIST);
}

#[tokio::test]
async fn a_party_appears_once_per_x_in_either_role() {
    let (sim, c) = Sim::start_for("k-axb").await;
    c.axb_bind(&bind(A1, A2, Some(X1))).await.unwrap();
    // A reused, B reused, and B reused as A: all 1012010 on the same X.
    for (a, b) in [(A1, A3), (A4, A2), (A2, A5)] {
        expect_refusal(
            c.axb_bind(&bind(a, b, Some(X1))).await,
            codes::NUMBER_ALREADY_BOUND,
            ErrorClass::PartyConflict,
        );
    }
    // A different pair on the same X, and the same pair on another X, are fine.
    c.axb_bind(&bind(A3, A4, Some(X1))).await.unwrap();
    c.axb_bind(&bind(A1, A2, Some(X2))).await.unwrap();
    assert_eq!(sim.bindings("k-axb").await.len(), 3);
}

#[tokio::test]
async fn modify_rechecks_party_uniqueness() {
    let (_sim, c) = Sim::start_for("k-axb").await;
    let first = c.axb_bind(&bind(A1, A2, Some(X1))).await.unwrap();
    c.axb_bind(&bind(A3, A4, Some(X1))).await.unwrap();
    let modify = AxbModifyRequest {
        subscription_id: first.subscription_id.clone(),
        callee_num: Some(A3.into()),
        ..Default::default()
    };
    expect_code(c.axb_modify(&modify).await, codes::NUMBER_ALREADY_BOUND);
    // Keeping its own parties is not a conflict with itself.
    let same = AxbModifyRequest {
        callee_num: Some(A2.into()),
        ..modify
    };
    c.axb_modify(&same).await.unwrap();
    let unknown = AxbModifyRequest {
        subscription_id: "nope".into(),
        ..Default::default()
    };
    expect_code(c.axb_modify(&unknown).await, codes::RECORD_NOT_EXIST);
}

#[tokio::test]
async fn an_x_carries_at_most_max_bindings_per_x() {
    let sim = Sim::start().await; // max_bindings_per_x = 3
    let c = sim.client("k-axb");
    for (a, b) in [(A1, A2), (A3, A4), (A5, A6)] {
        c.axb_bind(&bind(a, b, Some(X1))).await.unwrap();
    }
    expect_refusal(
        c.axb_bind(&bind(A7, "+8613800000008", Some(X1))).await,
        codes::MAX_BINDINGS_EXCEEDED,
        ErrorClass::Taken,
    );
}

#[tokio::test]
async fn foreign_and_blacklisted_numbers_are_refused() {
    let (_sim, c) = Sim::start_for("k-axb").await;
    expect_refusal(
        c.axb_bind(&bind(A1, A2, Some("+8617999999999"))).await,
        codes::NUMBER_NOT_APPLIED,
        ErrorClass::NumberUnusable,
    );
    expect_code(
        c.axb_bind(&bind(A1, A2, Some(BLACKLISTED))).await,
        codes::NUMBER_BLACKLISTED,
    );
}

#[tokio::test]
async fn the_platform_picks_x_by_area_code_strictly_or_not() {
    let (_sim, c) = Sim::start_for("k-axb").await;
    let in_area = |area: &str, mode: Option<AreaMatch>, a: &str, b: &str| AxbBindRequest {
        area_code: Some(area.into()),
        area_match_mode: mode,
        ..bind(a, b, None)
    };
    // Strict: only 021's single X.
    let r = c.axb_bind(&in_area("021", None, A1, A2)).await.unwrap();
    assert_eq!(r.relation_num, X3);
    // The pair already sits on 021's only X: strict matching finds nothing...
    expect_refusal(
        c.axb_bind(&in_area("021", Some(AreaMatch::Strict), A1, A2))
            .await,
        codes::INSUFFICIENT_NUMBERS,
        ErrorClass::Exhausted,
    );
    // ...non-strict falls back to another X of the app (never the blacklisted one).
    let r = c
        .axb_bind(&in_area("021", Some(AreaMatch::Loose), A1, A2))
        .await
        .unwrap();
    assert!(
        [X1, X2].contains(&r.relation_num.as_str()),
        "chose {}",
        r.relation_num
    );
    // A city without numbers: strict fails, non-strict succeeds.
    expect_code(
        c.axb_bind(&in_area("0571", None, A3, A4)).await,
        codes::INSUFFICIENT_NUMBERS,
    );
    let r = c
        .axb_bind(&in_area("0571", Some(AreaMatch::Loose), A3, A4))
        .await
        .unwrap();
    assert_ne!(r.relation_num, BLACKLISTED);
}

#[tokio::test]
async fn unbind_by_x_removes_every_binding_on_it() {
    let (sim, c) = Sim::start_for("k-axb").await;
    c.axb_bind(&bind(A1, A2, Some(X1))).await.unwrap();
    c.axb_bind(&bind(A3, A4, Some(X1))).await.unwrap();
    let other = c.axb_bind(&bind(A1, A2, Some(X2))).await.unwrap();
    c.axb_unbind(&AxbUnbind::RelationNum(X1.into()))
        .await
        .unwrap();
    let live = sim.bindings("k-axb").await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["subscriptionId"], other.subscription_id.as_str());
    expect_code(
        c.axb_unbind(&AxbUnbind::RelationNum(X1.into())).await,
        codes::RECORD_NOT_EXIST,
    );
}

#[tokio::test]
async fn expired_bindings_behave_as_unbound() {
    let (sim, c) = Sim::start_for("k-axb").await;
    let short = c.axb_bind(&lasting(60)).await.unwrap();
    let forever = c.axb_bind(&bind(A3, A4, Some(X1))).await.unwrap();
    sim.advance_clock(59).await;
    assert_eq!(sim.bindings("k-axb").await.len(), 2);
    sim.advance_clock(1).await;
    let live = sim.bindings("k-axb").await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["subscriptionId"], forever.subscription_id.as_str());
    assert!(live[0]["expiresAt"].is_null());

    let gone = AxbQuery::Subscription(short.subscription_id.clone());
    expect_code(c.axb_query(&gone).await, codes::RECORD_NOT_EXIST);
    expect_code(
        c.axb_unbind(&AxbUnbind::Subscription(short.subscription_id))
            .await,
        codes::RECORD_NOT_EXIST,
    );
    // Its parties are free on X again.
    c.axb_bind(&bind(A1, A2, Some(X1))).await.unwrap();
}

#[tokio::test]
async fn modify_with_duration_restarts_the_timer() {
    let (sim, c) = Sim::start_for("k-axb").await;
    let b = c.axb_bind(&lasting(100)).await.unwrap();
    sim.advance_clock(90).await;
    let modify = AxbModifyRequest {
        subscription_id: b.subscription_id.clone(),
        duration: Some(100),
        ..Default::default()
    };
    c.axb_modify(&modify).await.unwrap();
    sim.advance_clock(90).await; // 180 s after bind, 90 s after the modify
    assert_eq!(sim.bindings("k-axb").await.len(), 1);
    sim.advance_clock(10).await;
    assert!(sim.bindings("k-axb").await.is_empty());
}

#[tokio::test]
async fn query_by_x_pages_with_the_documented_defaults() {
    let config = Setup::platform().app("rides", |a| a.both("max_bindings_per_x", 5000));
    let (_sim, c) = Sim::start_with_client(&config, "k-axb").await;
    let mut ids = Vec::new();
    for i in 0..120u32 {
        let a = format!("+86139{:08}", 2 * i);
        let b = format!("+86139{:08}", 2 * i + 1);
        ids.push(
            c.axb_bind(&bind(&a, &b, Some(X1)))
                .await
                .unwrap()
                .subscription_id,
        );
    }
    let page = |index: Option<u32>, size: Option<u32>| AxbQuery::RelationNum {
        relation_num: X1.into(),
        caller: None,
        callee: None,
        page_index: index,
        page_size: size,
    };
    // Defaults: page 1, 50 per page, in creation order.
    let p = c.axb_query(&page(None, None)).await.unwrap();
    assert_eq!(p.total_count, 120);
    let got: Vec<_> = p
        .relation_num_list
        .iter()
        .map(|r| r.subscription_id.clone())
        .collect();
    assert_eq!(got, ids[..50]);
    // Sizes outside 10..=100 fall back to 50.
    for bad in [5, 101] {
        assert_eq!(
            c.axb_query(&page(Some(1), Some(bad)))
                .await
                .unwrap()
                .relation_num_list
                .len(),
            50
        );
    }
    let p3 = c.axb_query(&page(Some(3), Some(50))).await.unwrap();
    let got: Vec<_> = p3
        .relation_num_list
        .iter()
        .map(|r| r.subscription_id.clone())
        .collect();
    assert_eq!(got, ids[100..]);
    let p2 = c.axb_query(&page(Some(2), Some(100))).await.unwrap();
    assert_eq!(p2.relation_num_list.len(), 20);
    assert!(
        c.axb_query(&page(Some(9), Some(100)))
            .await
            .unwrap()
            .relation_num_list
            .is_empty()
    );

    // With callerNum / calleeNum: only the binding holding them.
    let one = AxbQuery::RelationNum {
        relation_num: X1.into(),
        caller: Some("+8613900000010".into()),
        callee: None,
        page_index: None,
        page_size: None,
    };
    let r = c.axb_query(&one).await.unwrap();
    assert_eq!(r.relation_num_list.len(), 1);
    assert_eq!(r.relation_num_list[0].subscription_id, ids[5]);
    // An X without bindings answers "no record".
    expect_code(
        c.axb_query(&AxbQuery::page(X2, 1, 50)).await,
        codes::RECORD_NOT_EXIST,
    );
}
