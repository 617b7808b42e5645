//! X mode (notifications.md §1.4, §1.5): the platform asks the receiver whom to connect on
//! every call to X, and the receiver answers from the bindings in memory.

use super::*;

#[tokio::test]
async fn a_call_from_a_bound_party_is_connected_to_the_other() {
    let d = Daemon::start_with(setup()).await;
    let (a, b) = (party(1), party(2));
    let bound = d.bind_ok(pinned("xmode", &a, Some(&b), X1)).await;
    assert_eq!(bound.x_number, X1);

    let call = sim_call(&d, "k-x", &a, X1).await;
    assert_eq!(call["stateCode"], 0, "{call}");
    assert_eq!(call["connectedTo"], b.as_str(), "{call}");
    let back = sim_call(&d, "k-x", &b, X1).await;
    assert_eq!(back["connectedTo"], a.as_str(), "{back}");

    // The Block callin was answered with the binding: it is echoed in the later events.
    let pushes = sim_pushes(&d, "k-x").await;
    let block = &pushes["pushes"][0];
    assert_eq!(block["mode"], "Block");
    let answer: Value =
        serde_json::from_str(block["attempts"][0]["body"].as_str().unwrap()).unwrap();
    let info = &answer["connectInfo"];
    assert_eq!(
        (
            info["calleeNum"].as_str(),
            info["displayCalleeNum"].as_str()
        ),
        (Some(b.as_str()), Some(X1))
    );
    assert_eq!(info["userData"], bound.binding_id.as_str());
    d.stop().await;
}

#[tokio::test]
async fn a_call_from_an_unknown_caller_is_closed_with_the_apps_tone() {
    let d = Daemon::start_with(setup()).await;
    d.bind_ok(pinned("xmode", &party(1), Some(&party(2)), X1))
        .await;
    let call = sim_call(&d, "k-x", &party(3), X1).await;
    assert_eq!(
        call["stateCode"], 8017,
        "closed as the receiver said: {call}"
    );
    assert_eq!(call["connectedTo"], Value::Null);
    let pushes = sim_pushes(&d, "k-x").await;
    let answer = pushes["pushes"][0]["attempts"][0]["body"].as_str().unwrap();
    let answer: Value = serde_json::from_str(answer).unwrap();
    assert_eq!(answer["closeInfo"]["closeHintTone"], BYE);
    d.stop().await;
}
