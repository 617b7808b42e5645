//! SMS (notifications.md §4): forwarded and notified in AXB and AX, asked about (Block) when
//! the platform cannot tell the receiver, and always asked about in X mode.

use serde_json::{Value, json};

use super::receiver::assert_signed;
use super::*;
use crate::common::*;
use crate::support::platform::push::PushBody;
use crate::support::platform::time::parse_sms_time;
use crate::support::platform::wire::{AxBindRequest, AxbBindRequest};

const AXB_X: &str = "+8617000000001";
const AX_X: &str = "+8617100000001";
const X_X: &str = "+8617600000001";

async fn text(sim: &Sim, app_key: &str, from: &str, to: &str, text: &str) -> Value {
    let body = json!({"app_key": app_key, "from": from, "to": to, "text": text});
    sim.control_post("/sim/sms", body).await
}

#[tokio::test]
async fn an_axb_text_goes_to_the_other_party_and_is_notified() {
    let (sim, r) = start().await;
    let bind = AxbBindRequest {
        caller_num: A1.into(),
        callee_num: A2.into(),
        relation_num: Some(AXB_X.into()),
        ..Default::default()
    };
    let id = sim
        .client("k-axb")
        .axb_bind(&bind)
        .await
        .unwrap()
        .subscription_id;
    let sent = text(&sim, "k-axb", A2, AXB_X, "on my way").await;
    assert_eq!(
        (sent["forwardedTo"].as_str(), sent["forwardedText"].as_str()),
        (Some(A1), Some("on my way"))
    );
    let dropped = text(&sim, "k-axb", A5, AXB_X, "who is this").await;
    assert_eq!(dropped["forwardedTo"], Value::Null, "no binding: dropped");
    let no_sms = AxbBindRequest {
        caller_num: A3.into(),
        callee_num: A4.into(),
        relation_num: Some(AXB_X.into()),
        private_sms: Some(false),
        ..Default::default()
    };
    sim.client("k-axb").axb_bind(&no_sms).await.unwrap();
    let off = text(&sim, "k-axb", A3, AXB_X, "hello").await;
    assert_eq!(off["forwardedTo"], Value::Null, "privateSms off: dropped");

    let got = r.got("/rides/sms");
    assert_eq!(got.len(), 1);
    assert_signed(&got[0], "k-axb", "s-axb");
    assert!(matches!(
        PushBody::parse(got[0].body.to_string().as_bytes()),
        Ok(PushBody::Sms(_))
    ));
    let body = &got[0].body;
    assert_eq!(body["appKey"], "k-axb");
    let event = &body["smsEvent"];
    let expect = json!({"smsIdentifier": sent["smsIdentifier"], "notificationMode": "Notify",
        "calling": A2, "called": A1, "virtualNumber": AXB_X, "event": "TextSMS",
        "subscriptionId": id, "smsContent": "on my way"});
    for (key, value) in expect.as_object().unwrap() {
        assert_eq!(&event[key], value, "{key}");
    }
    assert!(parse_sms_time(event["timeStamp"].as_str().unwrap()).is_some());
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn ax_texts_follow_the_at_suffix_rule_and_the_customer_decides_without_one() {
    let (sim, r) = start().await;
    let bind = AxBindRequest {
        orig_num: A1.into(),
        private_num: Some(AX_X.into()),
        ..Default::default()
    };
    sim.client("k-ax").ax_bind(&bind).await.unwrap();

    let to_a = text(&sim, "k-ax", A5, AX_X, "hello").await;
    let from_b = format!("hello[From{A5}]");
    assert_eq!(
        (to_a["forwardedTo"].as_str(), to_a["forwardedText"].as_str()),
        (Some(A1), Some(from_b.as_str()))
    );
    let to_b = text(&sim, "k-ax", A1, AX_X, "see you @13800000002").await;
    assert_eq!(
        (to_b["forwardedTo"].as_str(), to_b["forwardedText"].as_str()),
        (Some(A2), Some("see you"))
    );

    // No `@B`: a Block push; the customer routes it, and a Notify push follows.
    r.answer(
        "/drivers/sms",
        &json!({"actions": [{"operation": "vNumberRoute", "message": {"called": A3, "calling": A1}}]}),
    );
    let asked = text(&sim, "k-ax", A1, AX_X, "where are you").await;
    assert_eq!(asked["forwardedTo"], A3);
    let events: Vec<Value> = r
        .bodies("/drivers/sms")
        .iter()
        .map(|b| b["smsEvent"].clone())
        .collect();
    let modes: Vec<&str> = events
        .iter()
        .map(|e| e["notificationMode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["Notify", "Notify", "Block", "Notify"]);
    assert_eq!(
        events[2].get("called"),
        None,
        "a Block push has no receiver yet"
    );
    assert_eq!(events[2]["smsIdentifier"], events[3]["smsIdentifier"]);
    assert_eq!(
        (
            events[3]["called"].as_str(),
            events[3]["smsContent"].as_str()
        ),
        (Some(A3), Some("where are you"))
    );

    r.answer(
        "/drivers/sms",
        &json!({"actions": [{"operation": "DiscardMessage"}]}),
    );
    let discarded = text(&sim, "k-ax", A1, AX_X, "never mind").await;
    assert_eq!(discarded["forwardedTo"], Value::Null);
    assert_eq!(r.bodies("/drivers/sms").len(), 5, "the Block push only");
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn an_x_mode_text_is_asked_about_then_forwarded() {
    let (sim, r) = start().await;
    r.answer(
        "/xmode/sms",
        &json!({"actions": [{"operation": "vNumberRoute", "message": {"called": A2}}]}),
    );
    let sent = text(&sim, "k-x", A1, X_X, "hi").await;
    assert_eq!(sent["forwardedTo"], A2);
    let events: Vec<Value> = r
        .bodies("/xmode/sms")
        .iter()
        .map(|b| b["smsEvent"].clone())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[0]["notificationMode"].as_str(),
            events[0]["sendResult"].as_u64()
        ),
        (Some("Block"), Some(0))
    );
    assert_eq!(
        (
            events[1]["notificationMode"].as_str(),
            events[1]["called"].as_str()
        ),
        (Some("Notify"), Some(A2))
    );
    let listed = pushes(&sim, "k-x").await;
    let modes: Vec<&str> = listed["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["Block", "Notify"]);

    let refused = sim
        .unsigned(reqwest::Method::POST, "/sim/sms")
        .json(&json!({"app_key": "k-axe", "from": A1, "to": "+8617200000001", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400, "AXE has no SMS");
    sim.stop().await;
    r.stop().await;
}
