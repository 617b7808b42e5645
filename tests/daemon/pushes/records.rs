//! What the simulator pushes about calls, CDRs, number status and SMS is taken (200), so nothing
//! is left to retry.

use serde_json::json;

use super::*;

/// Every push made to `app_key` was delivered, and no CDR waits for its batch.
#[track_caller]
fn all_delivered(pushes: &Value) {
    let list = pushes["pushes"].as_array().unwrap();
    assert!(!list.is_empty(), "something was pushed");
    for push in list {
        assert_eq!(push["delivered"], true, "{push}");
        assert_eq!(push["attempts"].as_array().unwrap().len(), 1, "{push}");
    }
    assert_eq!(pushes["pendingCdrs"], 0);
}

#[tokio::test]
async fn a_calls_events_and_cdr_are_taken_once_stored() {
    let d = Daemon::start_with(setup()).await;
    let (a, b) = (party(1), party(2));
    d.bind_ok(pinned("rides", &a, Some(&b), AXB_X)).await;
    let call = sim_call(&d, "k-axb", &a, AXB_X).await;
    assert_eq!(call["connectedTo"], b.as_str());
    d.sim.advance_clock(120).await;
    let pushes = sim_pushes(&d, "k-axb").await;
    all_delivered(&pushes);
    let kinds: Vec<&str> = pushes["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    let call = [
        "callEvent",
        "callEvent",
        "callEvent",
        "callEvent",
        "callEvent",
    ];
    assert_eq!(
        kinds[..5],
        call,
        "callin, callout, alerting, answer, disconnect"
    );
    assert_eq!(kinds[5..], ["fee"]);
    d.stop().await;
}

#[tokio::test]
async fn number_status_is_taken_once_applied() {
    let d = Daemon::start_with(setup()).await;
    let body = json!({"app_key": "k-axb", "number": AXB_X, "status": "9"});
    let answer = d.sim.control_post("/sim/numstatus", body).await;
    assert_eq!(answer["delivered"], true, "{answer}");
    all_delivered(&sim_pushes(&d, "k-axb").await);
    d.stop().await;
}

#[tokio::test]
async fn an_x_mode_text_is_routed_to_the_other_party_and_stored() {
    let d = Daemon::start_with(setup()).await;
    let (a, b) = (party(1), party(2));
    d.bind_ok(pinned("xmode", &a, Some(&b), X1)).await;
    let body = json!({"app_key": "k-x", "from": a, "to": X1, "text": "on my way"});
    let sent = d.sim.control_post("/sim/sms", body).await;
    assert_eq!(sent["forwardedTo"], b.as_str(), "{sent}");
    let pushes = sim_pushes(&d, "k-x").await;
    let modes: Vec<&str> = pushes["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["Block", "Notify"]);
    all_delivered(&pushes);
    d.stop().await;
}
