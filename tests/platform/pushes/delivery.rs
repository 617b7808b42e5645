//! Delivery (notifications.md §6): retries of failed pushes on the simulator's clock, giving up,
//! timeouts, CDR batches, the `/sim/pushes` record; and number status (§3).

use serde_json::{Value, json};

use super::receiver::Receiver;
use super::*;
use crate::common::*;
use crate::support::platform::time::parse_event_time;
use crate::support::platform::wire::AxbBindRequest;

const X: &str = "+8617000000001";

async fn numstatus(sim: &Sim, number: &str, status: &str, cause: Option<&str>) -> Value {
    let mut body = json!({"app_key": "k-axb", "number": number, "status": status});
    if let Some(cause) = cause {
        body["cause"] = json!(cause);
    }
    sim.control_post("/sim/numstatus", body).await
}

/// The attempts of push `i` of `app_key`: HTTP status, or 0 when there was no answer.
async fn attempts(sim: &Sim, app_key: &str, i: usize) -> Vec<u64> {
    let listed = pushes(sim, app_key).await;
    listed["pushes"][i]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn a_failed_push_is_retried_on_the_simulators_clock_until_delivered() {
    let (sim, r) = start().await;
    r.fail_next("/rides/status", 2, 500);
    let answer = numstatus(&sim, X, "9", None).await;
    assert_eq!(
        (answer["pushed"].as_bool(), answer["delivered"].as_bool()),
        (Some(true), Some(false))
    );

    let listed = pushes(&sim, "k-axb").await;
    let push = &listed["pushes"][0];
    assert_eq!(
        (push["kind"].as_str(), push["mode"].as_str()),
        (Some("numStatus"), Some("Notify"))
    );
    assert_eq!(push["url"], r.url("/rides/status"));
    assert_eq!(push["body"], r.bodies("/rides/status")[0]);
    assert_eq!(push["attempts"][0]["status"], 500);
    assert_eq!(push["delivered"], false);
    let first = push["attempts"][0]["at"].as_str().unwrap().to_owned();
    let due = push["nextAttemptAt"].as_str().unwrap();
    let gap = time::OffsetDateTime::parse(due, &time::format_description::well_known::Rfc3339)
        .unwrap()
        - time::OffsetDateTime::parse(&first, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(
        gap.whole_minutes(),
        1,
        "the first retry is a minute after the failure"
    );

    sim.advance_clock(30).await;
    assert_eq!(attempts(&sim, "k-axb", 0).await, [500], "not due yet");
    sim.advance_clock(31).await;
    assert_eq!(
        attempts(&sim, "k-axb", 0).await,
        [500, 500],
        "one minute after the failure"
    );
    sim.advance_clock(120).await;
    assert_eq!(
        attempts(&sim, "k-axb", 0).await,
        [500, 500],
        "the next is four minutes after it"
    );
    sim.advance_clock(60).await;
    assert_eq!(attempts(&sim, "k-axb", 0).await, [500, 500, 200]);
    let listed = pushes(&sim, "k-axb").await;
    assert_eq!(
        (
            &listed["pushes"][0]["delivered"],
            &listed["pushes"][0]["nextAttemptAt"]
        ),
        (&json!(true), &Value::Null)
    );
    let bodies = r.bodies("/rides/status");
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "the identical body each time"
    );
    sim.advance_clock(86_400).await;
    assert_eq!(r.bodies("/rides/status").len(), 3, "no more after delivery");
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_tried_seven_times_then_given_up() {
    // A port nothing listens on: every attempt is refused at once.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let r = Receiver::start().await;
    let setup = setup(&r).app("rides", |app| {
        app.sim("callback_url", format!("http://{closed}/status"))
    });
    let sim = Sim::start_with(&setup).await;
    numstatus(&sim, X, "10", Some("2")).await;
    // One jump past the whole schedule makes every retry in turn.
    let advanced = sim
        .control_post("/sim/clock", json!({"advance_seconds": 301 * 60}))
        .await;
    assert_eq!(advanced["pushes"], 6);
    let listed = pushes(&sim, "k-axb").await;
    let push = &listed["pushes"][0];
    let tried = push["attempts"].as_array().unwrap();
    assert_eq!(tried.len(), 7, "the first attempt and six retries");
    assert!(
        tried.iter().all(|a| a["error"]
            .as_str()
            .unwrap()
            .starts_with("connection failed")),
        "{tried:?}"
    );
    assert_eq!(
        (&push["delivered"], &push["nextAttemptAt"]),
        (&json!(false), &Value::Null)
    );
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out_and_the_push_is_retried() {
    let (sim, r) = start().await;
    r.hang("/rides/status");
    let answer = numstatus(&sim, X, "11", None).await;
    assert_eq!(answer["delivered"], false);
    let listed = pushes(&sim, "k-axb").await;
    let error = listed["pushes"][0]["attempts"][0]["error"]
        .as_str()
        .unwrap();
    assert!(error.starts_with("timeout"), "{error}");
    assert!(listed["pushes"][0]["nextAttemptAt"].is_string());
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn cdrs_due_together_are_merged_into_one_push() {
    let (sim, r) = start().await;
    let c = sim.client("k-axb");
    for (a, b) in [(A1, A2), (A3, A4)] {
        let bind = AxbBindRequest {
            caller_num: a.into(),
            callee_num: b.into(),
            relation_num: Some(X.into()),
            ..Default::default()
        };
        c.axb_bind(&bind).await.unwrap();
    }
    // Long calls, so none ends (in real time) before the clock is moved past them all.
    let talk = json!({"talk_seconds": 600});
    let mut sessions = Vec::new();
    for (from, to) in [(A1, X), (A3, X), (A2, X)] {
        let answer = call(&sim, "k-axb", from, to, talk.clone()).await;
        sessions.push(answer["sessionId"].clone());
    }
    assert_eq!(pushes(&sim, "k-axb").await["pendingCdrs"], 3);
    sim.advance_clock(3600).await;
    let cdrs = r.bodies("/rides/fee");
    assert_eq!(
        cdrs.len(),
        1,
        "one push for the CDRs due together: {cdrs:?}"
    );
    let batch = cdrs[0]["feeLst"].as_array().unwrap();
    let merged: Vec<&Value> = batch.iter().map(|f| &f["sessionId"]).collect();
    assert_eq!(
        merged,
        sessions.iter().collect::<Vec<_>>(),
        "in order of their end"
    );
    let ends: Vec<_> = batch
        .iter()
        .map(|f| parse_event_time(f["callEndTime"].as_str().unwrap()).unwrap())
        .collect();
    assert!(ends.is_sorted(), "{ends:?}");

    // A call ending later gets a push of its own.
    let later = call(&sim, "k-axb", A1, X, json!({"talk_seconds": 600})).await;
    sim.advance_clock(3600).await;
    let cdrs = r.bodies("/rides/fee");
    assert_eq!(cdrs.len(), 2);
    assert_eq!(cdrs[1]["feeLst"].as_array().unwrap().len(), 1);
    assert_eq!(cdrs[1]["feeLst"][0]["sessionId"], later["sessionId"]);
    sim.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn number_status_is_pushed_and_a_paused_number_refuses_calls() {
    let (sim, r) = start().await;
    let bind = AxbBindRequest {
        caller_num: A1.into(),
        callee_num: A2.into(),
        relation_num: Some(X.into()),
        ..Default::default()
    };
    sim.client("k-axb").axb_bind(&bind).await.unwrap();
    let answer = numstatus(&sim, X, "10", Some("2")).await;
    assert_eq!(answer["delivered"], true);
    assert_eq!(
        r.bodies("/rides/status")[0],
        json!({"eventType": "numStatus", "numInfo": [{"number": X, "status": "10", "cause": "2"}]})
    );
    let refused = call(&sim, "k-axb", A1, X, json!({})).await;
    assert_eq!(refused["stateCode"], 8055);
    numstatus(&sim, X, "5", None).await;
    let bodies = r.bodies("/rides/status");
    assert_eq!(
        bodies.last().unwrap()["numInfo"][0],
        json!({"number": X, "status": "5"}),
        "no cause unless unavailable"
    );
    let connected = call(&sim, "k-axb", A1, X, json!({})).await;
    assert_eq!(connected["stateCode"], 0);

    let bad = |body: Value| control_status(&sim, "/sim/numstatus", body);
    assert_eq!(
        bad(json!({"app_key": "k-axb", "number": X, "status": "7"})).await,
        400
    );
    assert_eq!(
        bad(json!({"app_key": "k-axb", "number": X, "status": "9", "cause": "2"})).await,
        400
    );
    assert_eq!(
        bad(json!({"app_key": "k-axb", "number": "+8617999999999", "status": "5"})).await,
        400
    );
    sim.stop().await;
    r.stop().await;
}
