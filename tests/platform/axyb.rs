//! AXYB (binding-api.md §2.4, §4.5).

use crate::support::platform::codes;
use crate::support::platform::wire::*;
use xpool::upstream::ErrorClass;

use crate::common::*;

const N: [&str; 3] = ["+8617300000001", "+8617300000002", "+8617300000003"];

fn ax(a: &str, area: &str) -> AxybAxRequest {
    AxybAxRequest {
        orig_num: a.into(),
        area_code: Some(area.into()),
        ..Default::default()
    }
}

fn yb(b: &str, sub: &str) -> AxybYbRequest {
    AxybYbRequest {
        orig_num: b.into(),
        subscription_id: sub.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn ax_step_yb_step_query_unbind_round_trip() {
    let (sim, c) = Sim::start_for("k-axyb").await;
    let mut req = ax(A1, "021");
    req.duration = Some(3600);
    let x = c.axyb_bind_ax(&req).await.unwrap();
    assert_eq!(x.relation_number, N[2], "the only X of area 021");
    let y = c.axyb_bind_yb(&yb(A2, &x.subscription_id)).await.unwrap();
    assert!(
        N[..2].contains(&y.relation_number.as_str()),
        "Y is another number of the app"
    );

    for q in [
        AxybQuery::Subscription(x.subscription_id.clone()),
        AxybQuery::RelationNum(N[2].into()),
    ] {
        let r = c.axyb_query(&q).await.unwrap();
        assert_eq!(r.xy_relation_num_list.len(), 1, "{q:?}");
        let rec = &r.xy_relation_num_list[0];
        assert_eq!(rec.bind_id, x.subscription_id);
        assert_eq!((rec.num_a.as_str(), rec.num_x.as_str()), (A1, N[2]));
        assert_eq!(
            (rec.num_y.as_deref(), rec.num_b.as_deref()),
            (Some(y.relation_number.as_str()), Some(A2))
        );
        assert_eq!(rec.duration, Some(3600));
    }
    let live = sim.bindings("k-axyb").await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["mode"], "AXYB");
    assert_eq!(
        (
            live[0]["a"].as_str(),
            live[0]["x"].as_str(),
            live[0]["b"].as_str(),
            live[0]["y"].as_str()
        ),
        (
            Some(A1),
            Some(N[2]),
            Some(A2),
            Some(y.relation_number.as_str())
        )
    );

    // Remove just the YB, then the AX.
    let just_yb = AxybUnbind {
        subscription_id: x.subscription_id.clone(),
        y_num: Some(y.relation_number.clone()),
        b_num: None,
    };
    c.axyb_unbind(&just_yb).await.unwrap();
    let live = sim.bindings("k-axyb").await;
    assert_eq!(live.len(), 1);
    assert!(live[0].get("y").is_none() && live[0].get("b").is_none());
    let all = AxybUnbind {
        subscription_id: x.subscription_id.clone(),
        y_num: None,
        b_num: None,
    };
    c.axyb_unbind(&all).await.unwrap();
    assert!(sim.bindings("k-axyb").await.is_empty());
    expect_refusal(
        c.axyb_unbind(&all).await,
        codes::RECORD_NOT_EXIST,
        ErrorClass::NotFound,
    );
    expect_code(
        c.axyb_query(&AxybQuery::Subscription(x.subscription_id))
            .await,
        codes::RECORD_NOT_EXIST,
    );
}

#[tokio::test]
async fn unbinding_the_ax_removes_its_ybs_and_b_selects_one_yb() {
    let (sim, c) = Sim::start_for("k-axyb").await;
    let x = c.axyb_bind_ax(&ax(A1, "021")).await.unwrap();
    c.axyb_bind_yb(&yb(A2, &x.subscription_id)).await.unwrap();
    c.axyb_bind_yb(&yb(A3, &x.subscription_id)).await.unwrap();
    assert_eq!(sim.bindings("k-axyb").await.len(), 2);
    // The same B twice under one AX is refused.
    expect_code(
        c.axyb_bind_yb(&yb(A2, &x.subscription_id)).await,
        codes::NUMBER_ALREADY_BOUND,
    );
    // Both Ys are in use by this AX, and X itself cannot be its Y: no Y left.
    expect_refusal(
        c.axyb_bind_yb(&yb(A4, &x.subscription_id)).await,
        codes::INSUFFICIENT_NUMBERS,
        ErrorClass::Exhausted,
    );

    let by_b = AxybUnbind {
        subscription_id: x.subscription_id.clone(),
        y_num: None,
        b_num: Some(A2.into()),
    };
    c.axyb_unbind(&by_b).await.unwrap();
    let live = sim.bindings("k-axyb").await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["b"], A3);
    c.axyb_unbind(&AxybUnbind {
        subscription_id: x.subscription_id,
        y_num: None,
        b_num: None,
    })
    .await
    .unwrap();
    assert!(sim.bindings("k-axyb").await.is_empty());
}

#[tokio::test]
async fn x_holds_one_a_and_a_holds_at_most_five() {
    let config = Setup::platform().app("chat", |a| {
        a.numbers(8617300000004, &["021", "021", "021", "021"])
    });
    let sim = Sim::start_with(&config).await;
    let c = sim.client("k-axyb");
    // 010 has two numbers: two As get them, a third finds none (strict).
    c.axyb_bind_ax(&ax(A1, "010")).await.unwrap();
    c.axyb_bind_ax(&ax(A2, "010")).await.unwrap();
    expect_refusal(
        c.axyb_bind_ax(&ax(A3, "010")).await,
        codes::AX_INSUFFICIENT_NUMBERS,
        ErrorClass::Exhausted,
    );
    // One A, five Xs at most.
    let loose = |a: &str| AxybAxRequest {
        area_match_mode: Some(AreaMatch::Loose),
        ..ax(a, "021")
    };
    for _ in 0..4 {
        c.axyb_bind_ax(&loose(A1)).await.unwrap();
    }
    expect_code(c.axyb_bind_ax(&loose(A1)).await, codes::AX_TOO_MANY_NUMBERS);
}

#[tokio::test]
async fn ax_expiry_takes_its_ybs_and_yb_expiry_only_the_yb() {
    let (sim, c) = Sim::start_for("k-axyb").await;
    // Default AX lifetime is 7200 s.
    let x = c.axyb_bind_ax(&ax(A1, "021")).await.unwrap();
    let short = AxybYbRequest {
        yb_duration: Some(600),
        ..yb(A2, &x.subscription_id)
    };
    c.axyb_bind_yb(&short).await.unwrap();
    c.axyb_bind_yb(&yb(A3, &x.subscription_id)).await.unwrap();
    sim.advance_clock(600).await;
    let live = sim.bindings("k-axyb").await;
    assert_eq!(live.len(), 1, "the 600 s YB is gone");
    assert_eq!(live[0]["b"], A3);
    sim.advance_clock(6600).await;
    assert!(
        sim.bindings("k-axyb").await.is_empty(),
        "the AX expired at 7200 s with its YB"
    );
    expect_code(
        c.axyb_bind_yb(&yb(A4, &x.subscription_id)).await,
        codes::RECORD_NOT_EXIST,
    );
}

#[tokio::test]
async fn durations_out_of_range_are_invalid() {
    let (sim, c) = Sim::start_for("k-axyb").await;
    for bad in [59, 7_776_001] {
        let req = AxybAxRequest {
            duration: Some(bad),
            ..ax(A1, "010")
        };
        let e = expect_code(c.axyb_bind_ax(&req).await, codes::INVALID_REQUEST);
        assert!(e.to_string().contains("duration"), "{e}");
    }
    assert!(sim.bindings("k-axyb").await.is_empty());
}

#[tokio::test]
async fn a_y_carries_at_most_max_relations_per_y() {
    let config = Setup::platform().app("chat", |a| a.sim("max_relations_per_y", 1));
    let sim = Sim::start_with(&config).await;
    let c = sim.client("k-axyb");
    let first = c.axyb_bind_ax(&ax(A1, "021")).await.unwrap(); // X = N[2]
    let y1 = c
        .axyb_bind_yb(&yb(A2, &first.subscription_id))
        .await
        .unwrap()
        .relation_number;
    let y2 = c
        .axyb_bind_yb(&yb(A3, &first.subscription_id))
        .await
        .unwrap()
        .relation_number;
    let mut ys = [y1.clone(), y2];
    ys.sort();
    assert_eq!(ys, [N[0], N[1]]);
    // A second AX in 010 takes one of N[0], N[1] as its X; its Ys can be N[2] (free), but not
    // the other 010 number, which already carries its one relation.
    let second = c.axyb_bind_ax(&ax(A4, "010")).await.unwrap();
    assert!(N[..2].contains(&second.relation_number.as_str()));
    let y = c
        .axyb_bind_yb(&yb(A5, &second.subscription_id))
        .await
        .unwrap();
    assert_eq!(y.relation_number, N[2]);
    expect_code(
        c.axyb_bind_yb(&yb(A6, &second.subscription_id)).await,
        codes::INSUFFICIENT_NUMBERS,
    );
}
