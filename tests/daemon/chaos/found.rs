//! What the chaos test found, each pinned as a small deterministic test.

use serde_json::json;
use tonic::Code;
use xpool::grpc::pb;
use xpool::platform::wire::{AreaMatch, AxybAxRequest, AxybUnbind};

use crate::support::*;

/// AXYB: a Bind whose answer is lost is looked for only on the Xs the index holds free. When
/// the platform picked an X that a binding in doubt here still holds (RELEASING: its unbind
/// went through upstream, the answer was lost), the daemon does not find the binding, tells the
/// caller the platform "does not have it" and drops the reservation, while the platform keeps
/// it: the retry of the same request id makes a second binding for it (chaos seeds 22 and 26).
/// `axyb_candidates` in `src/lifecycle/app/bind.rs` now asks about Xs held here only by
/// bindings in doubt too.
#[tokio::test]
async fn axyb_lost_answer_on_an_x_still_releasing_here_is_found() {
    let setup = Setup::standard().only(&["chat"]).app("chat", |a| {
        // One "not there" is final, so the bug shows without waiting out a recheck.
        a.daemon("timeout_ms", 300)
            .daemon("pending_recheck_ms", 0)
            .renumber(8617300000001, &["010", "010"])
    });
    let d = Daemon::start_with(setup).await;
    let first = d
        .bind_ok(in_area("chat", &party(1), Some(&party(2)), "010"))
        .await;
    // The other X of 010 is taken upstream by a binding the daemon does not know of (yet).
    let platform = d.sim.client("k-axyb");
    let other = platform
        .axyb_bind_ax(&AxybAxRequest {
            orig_num: party(9),
            area_code: Some("010".into()),
            area_match_mode: Some(AreaMatch::Strict),
            ..Default::default()
        })
        .await
        .unwrap();
    d.sim
        .faults(json!({"app_key": "k-axyb", "lost_response_rate": 1.0}))
        .await;
    // The platform unbinds the first binding, freeing its X; the answer is lost: RELEASING here.
    let unbind = pb::UnbindRequest {
        binding_id: first.binding_id.clone(),
        ..Default::default()
    };
    let refused = d.bindings().await.unbind(unbind).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // The index sees the other X free; the platform binds on the first binding's X, the only
    // one free upstream; the answer is lost.
    let req = pb::BindRequest {
        request_id: "r1".into(),
        ..in_area("chat", &party(3), Some(&party(4)), "010")
    };
    let lost = d.bindings().await.bind(req.clone()).await;
    d.sim.faults(json!({"app_key": "k-axyb"})).await;
    let made: Vec<serde_json::Value> = d
        .sim
        .bindings("k-axyb")
        .await
        .into_iter()
        .filter(|b| text(b, "a") == party(3))
        .collect();
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(text(&made[0], "x"), first.x_number, "{made:#?}");
    // Once the other X is free again, the retry must return what the platform made.
    platform
        .axyb_unbind(&AxybUnbind {
            subscription_id: other.subscription_id,
            y_num: None,
            b_num: None,
        })
        .await
        .unwrap();
    let retried = d.bindings().await.bind(req).await;
    let of_a: Vec<serde_json::Value> = d
        .sim
        .bindings("k-axyb")
        .await
        .into_iter()
        .filter(|b| text(b, "a") == party(3))
        .collect();
    assert_eq!(
        of_a.len(),
        1,
        "request r1 has {} bindings on the platform; the lost Bind answered {lost:?}, its \
         retry {retried:?}; the platform: {of_a:#?}",
        of_a.len()
    );
    d.stop().await;
}
