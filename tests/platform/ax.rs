//! AX (binding-api.md §2.2, §4.3).

use crate::support::platform::codes;
use crate::support::platform::wire::*;
use xpool::upstream::ErrorClass;

use crate::common::*;

const X: [&str; 6] = [
    "+8617100000001",
    "+8617100000002",
    "+8617100000003",
    "+8617100000004",
    "+8617100000005",
    "+8617100000006",
];

fn on(a: &str, x: &str) -> AxBindRequest {
    AxBindRequest {
        orig_num: a.into(),
        private_num: Some(x.into()),
        ..Default::default()
    }
}

fn in_area(a: &str, area: &str) -> AxBindRequest {
    AxBindRequest {
        orig_num: a.into(),
        area_code: Some(area.into()),
        private_num_type: Some(PRIVATE_NUM_TYPE.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn bind_query_modify_callee_unbind_round_trip() {
    let (sim, c) = Sim::start_for("k-ax").await;
    let mut req = on(A1, X[0]);
    req.user_data = Some("driver-7".into());
    req.max_duration = Some(10);
    let b = c.ax_bind(&req).await.unwrap();
    assert_eq!((b.orig_num.as_str(), b.private_num.as_str()), (A1, X[0]));

    for selector in [
        AxSelector::Subscription(b.subscription_id.clone()),
        AxSelector::OrigNum(A1.into()),
        AxSelector::PrivateNum(X[0].into()),
    ] {
        let q = c.ax_query(&selector).await.unwrap();
        assert_eq!(q.private_num_list.len(), 1, "{selector:?}");
        let r = &q.private_num_list[0];
        assert_eq!((r.orig_num.as_str(), r.private_num.as_str()), (A1, X[0]));
        assert_eq!(
            r.subscription_id.as_deref(),
            Some(b.subscription_id.as_str())
        );
        assert_eq!(r.user_data.as_deref(), Some("driver-7"));
    }

    // AX bindings never expire.
    sim.advance_clock(400 * 24 * 3600).await;
    let live = sim.bindings("k-ax").await;
    assert_eq!(live.len(), 1);
    assert!(live[0]["expiresAt"].is_null());
    assert_eq!(live[0]["mode"], "AX");

    // Modify A by subscription.
    let modify = AxModifyRequest {
        subscription_id: Some(b.subscription_id.clone()),
        orig_num: Some(A2.into()),
        ..Default::default()
    };
    c.ax_modify(&modify).await.unwrap();
    let q = c
        .ax_query(&AxSelector::PrivateNum(X[0].into()))
        .await
        .unwrap();
    assert_eq!(q.private_num_list[0].orig_num, A2);

    // Temporary callee: must differ from A.
    let callee = AxSetCalleeRequest {
        subscription_id: Some(b.subscription_id.clone()),
        callee_num: A3.into(),
        duration: Some(120),
        ..Default::default()
    };
    c.ax_set_callee(&callee).await.unwrap();
    let to_self = AxSetCalleeRequest {
        callee_num: A2.into(),
        ..callee.clone()
    };
    let e = expect_code(c.ax_set_callee(&to_self).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("calleeNum"), "{e}");
    let by_numbers = AxSetCalleeRequest {
        subscription_id: None,
        orig_num: Some(A2.into()),
        private_num: Some(X[0].into()),
        ..callee
    };
    c.ax_set_callee(&by_numbers).await.unwrap();

    // Unbind by X (origNum is ignored by the platform).
    c.ax_unbind(&AxSelector::PrivateNum(X[0].into()))
        .await
        .unwrap();
    assert!(sim.bindings("k-ax").await.is_empty());
    let e = expect_class(
        c.ax_unbind(&AxSelector::Subscription(b.subscription_id))
            .await,
        ErrorClass::NotFound,
    );
    assert_eq!(e.code(), Some(codes::RECORD_NOT_EXIST_GENERIC));
    assert!(
        c.ax_query(&AxSelector::OrigNum(A1.into()))
            .await
            .unwrap()
            .private_num_list
            .is_empty()
    );
}

#[tokio::test]
async fn an_x_holds_one_a() {
    let (_sim, c) = Sim::start_for("k-ax").await;
    c.ax_bind(&on(A1, X[0])).await.unwrap();
    expect_refusal(
        c.ax_bind(&on(A2, X[0])).await,
        codes::AX_NUMBER_ALLOCATED,
        ErrorClass::Taken,
    );
}

#[tokio::test]
async fn an_a_holds_at_most_five_xs() {
    let (_sim, c) = Sim::start_for("k-ax").await;
    for x in &X[..5] {
        c.ax_bind(&on(A1, x)).await.unwrap();
    }
    expect_refusal(
        c.ax_bind(&on(A1, X[5])).await,
        codes::AX_TOO_MANY_NUMBERS,
        ErrorClass::PartyLimit,
    );
    // Moving a sixth X to A by modify is refused the same way.
    let other = c.ax_bind(&on(A2, X[5])).await.unwrap();
    let modify = AxModifyRequest {
        subscription_id: Some(other.subscription_id),
        orig_num: Some(A1.into()),
        ..Default::default()
    };
    expect_code(c.ax_modify(&modify).await, codes::AX_TOO_MANY_NUMBERS);
    assert_eq!(
        c.ax_query(&AxSelector::OrigNum(A1.into()))
            .await
            .unwrap()
            .private_num_list
            .len(),
        5
    );
}

#[tokio::test]
async fn foreign_numbers_are_refused() {
    let (_sim, c) = Sim::start_for("k-ax").await;
    expect_refusal(
        c.ax_bind(&on(A1, "+8617999999999")).await,
        codes::AX_ACCOUNT_NOT_EXIST,
        ErrorClass::NumberUnusable,
    );
}

#[tokio::test]
async fn the_platform_picks_an_idle_x_in_the_area() {
    let (_sim, c) = Sim::start_for("k-ax").await;
    let first = c.ax_bind(&in_area(A1, "010")).await.unwrap();
    let second = c.ax_bind(&in_area(A2, "010")).await.unwrap();
    let mut got = [first.private_num, second.private_num];
    got.sort();
    assert_eq!(got, [X[0], X[1]]);
    // 010 is full: strict fails with 1011002, non-strict goes elsewhere.
    expect_refusal(
        c.ax_bind(&in_area(A3, "010")).await,
        codes::AX_INSUFFICIENT_NUMBERS,
        ErrorClass::Exhausted,
    );
    let loose = AxBindRequest {
        area_match_mode: Some(AreaMatch::Loose),
        ..in_area(A3, "010")
    };
    let r = c.ax_bind(&loose).await.unwrap();
    assert!(X[2..].contains(&r.private_num.as_str()));
    // areaCode needs privateNumType; neither X nor area is invalid.
    let untyped = AxBindRequest {
        private_num_type: None,
        ..in_area(A4, "021")
    };
    let e = expect_code(c.ax_bind(&untyped).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("privateNumType"), "{e}");
    let bare = AxBindRequest {
        orig_num: A4.into(),
        ..Default::default()
    };
    expect_code(c.ax_bind(&bare).await, codes::INVALID_REQUEST);
}
