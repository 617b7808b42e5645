//! Calls in every mode: the events pushed to the callback URL (notifications.md §1), their
//! `stateCode`, and the CDR pushed once the call's second is over (§2).

use serde_json::{Value, json};

use super::receiver::assert_signed;
use super::*;
use crate::common::*;
use crate::support::platform::push::PushBody;
use crate::support::platform::time::parse_event_time;
use crate::support::platform::wire::*;

const AXB_X: &str = "+8617000000001";
const AX_X: &str = "+8617100000001";
const AXE_X: &str = "+8617200000001";
const X_X: &str = "+8617600000001";

/// Asserts every body parses as the platform crate's push types (what a receiver will use).
#[track_caller]
fn parses(bodies: &[Value]) {
    for body in bodies {
        PushBody::parse(body.to_string().as_bytes()).unwrap();
    }
}

#[tokio::test]
async fn an_axb_call_pushes_its_events_then_its_cdr_once_its_second_is_over() {
    let (sim, r) = start().await;
    let bind = AxbBindRequest {
        caller_num: A1.into(),
        callee_num: A2.into(),
        relation_num: Some(AXB_X.into()),
        record_flag: Some(true),
        user_data: Some("ride-1".into()),
        ..Default::default()
    };
    let id = sim
        .client("k-axb")
        .axb_bind(&bind)
        .await
        .unwrap()
        .subscription_id;

    let answer = call(&sim, "k-axb", A1, AXB_X, json!({"talk_seconds": 90})).await;
    assert_eq!(answer["stateCode"], 0);
    assert_eq!(
        (
            answer["connectedTo"].as_str(),
            answer["subscriptionId"].as_str()
        ),
        (Some(A2), Some(id.as_str()))
    );

    let bodies = r.bodies("/rides/status");
    parses(&bodies);
    assert_eq!(
        types(&bodies),
        ["callin", "callout", "alerting", "answer", "disconnect"]
    );
    let events = session(&bodies, &answer["sessionId"]);
    assert_eq!(events.len(), 5, "one sessionId for the whole call");
    let callin = events[0];
    assert_eq!(
        (callin["caller"].as_str(), callin["called"].as_str()),
        (Some(A1), Some(AXB_X))
    );
    assert_eq!(callin["userData"], "ride-1");
    assert_eq!(
        callin.get("subscriptionId"),
        None,
        "callin carries no subscriptionId"
    );
    for later in &events[1..] {
        assert_eq!(
            (later["subscriptionId"].as_str(), later["userData"].as_str()),
            (Some(id.as_str()), Some("ride-1"))
        );
        assert_eq!(
            (later["caller"].as_str(), later["called"].as_str()),
            (Some(A1), Some(A2))
        );
    }
    let disconnect = events[4];
    assert!(
        disconnect["stateCode"].is_u64(),
        "stateCode is a JSON number"
    );
    assert_eq!(disconnect["stateCode"], 0);
    assert_eq!(disconnect["stateDesc"], "The user releases the call.");
    let times: Vec<_> = events
        .iter()
        .map(|e| parse_event_time(e["timestamp"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.is_sorted(), "{times:?}");
    assert_eq!((times[4] - times[3]).whole_seconds(), 90, "talk time");
    assert_signed(&r.got("/rides/status")[0], "k-axb", "s-axb");

    assert!(
        r.bodies("/rides/fee").is_empty(),
        "the CDR waits for the call's end"
    );
    assert_eq!(pushes(&sim, "k-axb").await["pendingCdrs"], 1);
    sim.advance_clock(120).await;
    let cdrs = r.bodies("/rides/fee");
    parses(&cdrs);
    assert_eq!(
        (cdrs.len(), cdrs[0]["eventType"].as_str()),
        (1, Some("fee"))
    );
    assert_signed(&r.got("/rides/fee")[0], "k-axb", "s-axb");
    let fee = &cdrs[0]["feeLst"][0];
    let expect = json!({"direction": 1, "appKey": "k-axb", "bindNum": AXB_X,
        "sessionId": answer["sessionId"], "subscriptionId": id, "callerNum": A1,
        "calleeNum": AXB_X, "fwdDisplayNum": AXB_X, "fwdDstNum": A2, "ulFailReason": 0,
        "fwdUnaswRsn": 0, "sipStatusCode": 0, "recordFlag": 1, "serviceType": "004"});
    for (key, value) in expect.as_object().unwrap() {
        assert_eq!(&fee[key], value, "{key}");
    }
    assert_eq!(fee["fwdAnswerTime"], events[3]["timestamp"]);
    assert_eq!(fee["callEndTime"], events[4]["timestamp"]);
    assert!(fee["icid"].is_string() && fee.get("failTime").is_none());
    assert_eq!(pushes(&sim, "k-axb").await["pendingCdrs"], 0);
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn an_axb_call_against_the_bindings_direction_ends_8016() {
    let (sim, r) = start().await;
    let bind = AxbBindRequest {
        caller_num: A1.into(),
        callee_num: A2.into(),
        relation_num: Some(AXB_X.into()),
        call_direction: Some(2),
        ..Default::default()
    };
    let id = sim
        .client("k-axb")
        .axb_bind(&bind)
        .await
        .unwrap()
        .subscription_id;
    let refused = call(&sim, "k-axb", A1, AXB_X, json!({})).await;
    assert_eq!(
        (refused["stateCode"].as_u64(), &refused["connectedTo"]),
        (Some(8016), &Value::Null)
    );
    let allowed = call(&sim, "k-axb", A2, AXB_X, json!({})).await;
    assert_eq!(
        (
            allowed["stateCode"].as_u64(),
            allowed["connectedTo"].as_str()
        ),
        (Some(0), Some(A1))
    );

    let bodies = r.bodies("/rides/status");
    let events = session(&bodies, &refused["sessionId"]);
    assert_eq!(events.len(), 2, "callin, then disconnect");
    assert_eq!(
        (
            events[1]["stateCode"].as_u64(),
            events[1]["subscriptionId"].as_str()
        ),
        (Some(8016), Some(id.as_str()))
    );
    sim.advance_clock(3600).await;
    let fees = fees(&r, "/rides/fee");
    let fee = fees
        .iter()
        .find(|f| f["sessionId"] == refused["sessionId"])
        .unwrap();
    assert_eq!(
        (fee["ulFailReason"].as_u64(), fee["direction"].as_u64()),
        (Some(8016), Some(1))
    );
    assert!(fee.get("fwdStartTime").is_none() && fee["failTime"].is_string());
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn a_call_that_matches_no_binding_ends_8014() {
    let (sim, r) = start().await;
    let answer = call(&sim, "k-axb", A3, AXB_X, json!({})).await;
    assert_eq!(
        (answer["stateCode"].as_u64(), &answer["subscriptionId"]),
        (Some(8014), &Value::Null)
    );
    let bodies = r.bodies("/rides/status");
    assert_eq!(types(&bodies), ["callin", "disconnect"]);
    assert!(
        bodies
            .iter()
            .all(|b| b["statusInfo"].get("subscriptionId").is_none())
    );
    assert_eq!(bodies[1]["statusInfo"]["stateCode"], 8014);
    sim.advance_clock(60).await;
    let fee = &fees(&r, "/rides/fee")[0];
    assert_eq!(
        (fee["direction"].as_u64(), fee["ulFailReason"].as_u64()),
        (Some(2), Some(8014))
    );
    assert_eq!(fee["subscriptionId"], "", "an empty subscriptionId (FAQ)");
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn an_ax_call_reaches_a_and_a_reaches_its_temporary_callee() {
    let (sim, r) = start().await;
    let c = sim.client("k-ax");
    let bind = AxBindRequest {
        orig_num: A1.into(),
        private_num: Some(AX_X.into()),
        ..Default::default()
    };
    c.ax_bind(&bind).await.unwrap();
    let inbound = call(&sim, "k-ax", A5, AX_X, json!({})).await;
    assert_eq!(
        (
            inbound["stateCode"].as_u64(),
            inbound["connectedTo"].as_str()
        ),
        (Some(0), Some(A1))
    );
    let no_callee = call(&sim, "k-ax", A1, AX_X, json!({})).await;
    assert_eq!(no_callee["stateCode"], 8013);
    let callee = AxSetCalleeRequest {
        orig_num: Some(A1.into()),
        private_num: Some(AX_X.into()),
        callee_num: A2.into(),
        ..Default::default()
    };
    c.ax_set_callee(&callee).await.unwrap();
    let outbound = call(&sim, "k-ax", A1, AX_X, json!({"answer": false})).await;
    assert_eq!(
        (
            outbound["stateCode"].as_u64(),
            outbound["connectedTo"].as_str()
        ),
        (Some(7503), Some(A2))
    );

    let bodies = r.bodies("/drivers/status");
    let rejected = session(&bodies, &outbound["sessionId"]);
    assert_eq!(
        rejected.len(),
        4,
        "callin, callout, alerting, disconnect: no answer"
    );
    assert_eq!(rejected[3]["stateCode"], 7503);
    sim.advance_clock(60).await;
    let fees = fees(&r, "/drivers/fee");
    let fee = |s: &Value| fees.iter().find(|f| f["sessionId"] == *s).unwrap().clone();
    assert_eq!(
        fee(&inbound["sessionId"])["direction"],
        0,
        "someone called A"
    );
    let out = fee(&outbound["sessionId"]);
    assert_eq!(
        (out["direction"].as_u64(), out["serviceType"].as_str()),
        (Some(1), Some("003"))
    );
    assert_eq!(
        (out["fwdUnaswRsn"].as_u64(), out.get("fwdAnswerTime")),
        (Some(21), None)
    );
    assert_eq!(fee(&no_callee["sessionId"])["ulFailReason"], 8013);
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn an_axe_caller_keys_in_the_extension_and_a_calls_back() {
    let (sim, r) = start().await;
    let bind = AxeBindRequest {
        bind_num: A1.into(),
        virtual_num: Some(AXE_X.into()),
        extend_num: Some("3".into()),
        ..Default::default()
    };
    sim.client("k-axe").axe_bind(&bind).await.unwrap();
    let inbound = call(&sim, "k-axe", A5, AXE_X, json!({"extension": "3"})).await;
    assert_eq!(inbound["connectedTo"], A1);
    let wrong = call(&sim, "k-axe", A5, AXE_X, json!({"extension": "4"})).await;
    assert_eq!(wrong["stateCode"], 8022);
    let empty = call(&sim, "k-axe", A5, AXE_X, json!({})).await;
    assert_eq!(empty["stateCode"], 8033);
    let back = call(&sim, "k-axe", A1, AXE_X, json!({})).await;
    assert_eq!(
        (back["stateCode"].as_u64(), back["connectedTo"].as_str()),
        (Some(0), Some(A5)),
        "the callback record"
    );

    let bodies = r.bodies("/stores/status");
    let first = session(&bodies, &inbound["sessionId"]);
    assert_eq!(first.len(), 6);
    assert_eq!(
        types(&bodies)[..6],
        [
            "callin",
            "collectInfo",
            "callout",
            "alerting",
            "answer",
            "disconnect"
        ]
    );
    assert_eq!(first[1]["digitInfo"], "3");
    let wrong = session(&bodies, &wrong["sessionId"]);
    assert_eq!(
        (wrong.len(), &wrong[2]["stateCode"]),
        (3, &json!(8022)),
        "callin, collectInfo, disconnect"
    );
    sim.advance_clock(300).await;
    let fees = fees(&r, "/stores/fee");
    let fee = fees
        .iter()
        .find(|f| f["sessionId"] == inbound["sessionId"])
        .unwrap();
    assert_eq!(
        (fee["extendNum"].as_str(), fee["serviceType"].as_str()),
        (Some("3"), Some("005"))
    );
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn axyb_b_reaches_a_through_x_and_a_reaches_b_through_y() {
    let (sim, r) = start().await;
    let c = sim.client("k-axyb");
    let ax = AxybAxRequest {
        orig_num: A1.into(),
        area_code: Some("021".into()),
        user_data: Some("chat-1".into()),
        ..Default::default()
    };
    let ax = c.axyb_bind_ax(&ax).await.unwrap();
    let yb = AxybYbRequest {
        orig_num: A2.into(),
        subscription_id: ax.subscription_id.clone(),
        ..Default::default()
    };
    let y = c.axyb_bind_yb(&yb).await.unwrap().relation_number;
    let x = ax.relation_number;
    let b_calls = call(&sim, "k-axyb", A2, &x, json!({})).await;
    assert_eq!(
        (
            b_calls["connectedTo"].as_str(),
            b_calls["stateCode"].as_u64()
        ),
        (Some(A1), Some(0))
    );
    let a_calls = call(&sim, "k-axyb", A1, &y, json!({})).await;
    assert_eq!(a_calls["connectedTo"], A2);
    let own = call(&sim, "k-axyb", A1, &x, json!({})).await;
    assert_eq!(own["stateCode"], 8032);
    let bodies = r.bodies("/chat/status");
    for event in session(&bodies, &a_calls["sessionId"]).iter().skip(1) {
        assert_eq!(
            event["subscriptionId"].as_str(),
            Some(ax.subscription_id.as_str())
        );
        assert_eq!(event["userData"], "chat-1");
    }
    sim.advance_clock(300).await;
    let fees = fees(&r, "/chat/fee");
    let fee = fees
        .iter()
        .find(|f| f["sessionId"] == b_calls["sessionId"])
        .unwrap();
    assert_eq!(
        (fee["bindNum"].as_str(), fee["fwdDisplayNum"].as_str()),
        (Some(x.as_str()), Some(y.as_str())),
        "A sees B's Y"
    );
    assert_eq!(fee["serviceType"], "007");
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn an_x_mode_call_goes_where_the_callin_answer_says() {
    let (sim, r) = start().await;
    // Huawei's Java demo answers with one-element arrays; the simulator reads either form.
    let connect = json!({"operation": "connect", "connectInfo": [{"calleeNum": A2,
        "userData": "x-1", "recordFlag": "true", "maxDuration": 1}]});
    r.answer("/xmode/status", &connect);
    let answer = call(&sim, "k-x", A1, X_X, json!({"talk_seconds": 600})).await;
    assert_eq!(
        (answer["connectedTo"].as_str(), answer["stateCode"].as_u64()),
        (Some(A2), Some(8010)),
        "cut at maxDuration"
    );

    let bodies = r.bodies("/xmode/status");
    parses(&bodies);
    assert_eq!(
        types(&bodies),
        ["callin", "callout", "alerting", "answer", "disconnect"]
    );
    let callin = &bodies[0]["statusInfo"];
    assert_eq!(
        (callin["notifyMode"].as_str(), callin.get("userData")),
        (Some("Block"), None)
    );
    for later in &bodies[1..] {
        assert_eq!(
            later["statusInfo"]["userData"], "x-1",
            "the answer's userData is echoed"
        );
        assert_eq!(later["statusInfo"].get("subscriptionId"), None);
    }
    let listed = pushes(&sim, "k-x").await;
    let block = &listed["pushes"][0];
    assert_eq!(
        (block["mode"].as_str(), block["kind"].as_str()),
        (Some("Block"), Some("callEvent"))
    );
    let answered: Value =
        serde_json::from_str(block["attempts"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(answered, connect);

    sim.advance_clock(3600).await;
    let fee = &fees(&r, "/xmode/fee")[0];
    assert_eq!(
        (fee["notifyMode"].as_str(), fee["userData"].as_str()),
        (Some("Block"), Some("x-1"))
    );
    assert_eq!(
        (fee["serviceType"].as_str(), fee.get("subscriptionId")),
        (Some("004"), None)
    );
    assert_eq!(
        (fee["recordFlag"].as_u64(), fee["ulFailReason"].as_u64()),
        (Some(1), Some(8010))
    );
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn an_x_mode_call_the_customer_closes_ends_8017_and_a_bad_answer_8014() {
    let (sim, r) = start().await;
    r.answer(
        "/xmode/status",
        &json!({"operation": "close", "closeInfo": {"userData": "closed-1"}}),
    );
    let closed = call(&sim, "k-x", A1, X_X, json!({})).await;
    assert_eq!(
        (closed["stateCode"].as_u64(), &closed["connectedTo"]),
        (Some(8017), &Value::Null)
    );
    let bodies = r.bodies("/xmode/status");
    assert_eq!(types(&bodies), ["callin", "disconnect"]);
    assert_eq!(bodies[1]["statusInfo"]["stateCode"], 8017);

    // A failed Block callin is not retried: the caller was released with 8014.
    r.fail_next("/xmode/status", 1, 500);
    let failed = call(&sim, "k-x", A1, X_X, json!({})).await;
    assert_eq!(failed["stateCode"], 8014);
    r.answer(
        "/xmode/status",
        &json!({"operation": "connect", "connectInfo": {"calleeNum": "13800000002"}}),
    );
    let malformed = call(&sim, "k-x", A1, X_X, json!({})).await;
    assert_eq!(
        malformed["stateCode"], 8014,
        "calleeNum not in global format"
    );
    sim.advance_clock(3600).await;
    let listed = pushes(&sim, "k-x").await;
    let blocks: Vec<&Value> = listed["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["mode"] == "Block")
        .collect();
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[1]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&blocks[1]["delivered"], &blocks[1]["nextAttemptAt"]),
        (&json!(false), &Value::Null)
    );
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn call_controls_refuse_what_the_platform_could_not_route() {
    let (sim, r) = start().await;
    let post = |body: Value| control_status(&sim, "/sim/call", body);
    assert_eq!(
        post(json!({"app_key": "k-none", "from": A1, "to": AXB_X})).await,
        404
    );
    assert_eq!(
        post(json!({"app_key": "k-axb", "from": A1, "to": "+8617999999999"})).await,
        400,
        "not the app's number"
    );
    assert_eq!(
        post(json!({"app_key": "k-axb", "from": "13800000001", "to": AXB_X})).await,
        400
    );
    assert_eq!(
        post(json!({"app_key": "k-axb", "from": A1, "to": AXB_X, "answer": "yes"})).await,
        400
    );
    assert_eq!(
        post(json!({"app_key": "k-axb", "from": A1, "to": AXB_X, "colour": 1})).await,
        400
    );
    sim.stop().await;
    r.stop().await;
}
