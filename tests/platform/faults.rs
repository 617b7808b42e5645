//! The simulator's fault controls (`/sim/faults`) and how the client reacts to each fault.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::support::platform::codes;
use crate::support::platform::wire::*;
use serde_json::{Value, json};
use xpool::upstream::{ErrorClass, UpstreamError};

use crate::common::*;

const X1: &str = "+8617000000001";

fn bind(a: &str, b: &str) -> AxbBindRequest {
    AxbBindRequest {
        caller_num: a.into(),
        callee_num: b.into(),
        relation_num: Some(X1.into()),
        ..Default::default()
    }
}

fn party(i: u32) -> String {
    format!("+86136{i:08}")
}

/// A simulator whose AXB app has `faults` (the fields of `/sim/faults` but `app_key`).
async fn axb_faulty(mut faults: Value) -> Sim {
    faults["app_key"] = "k-axb".into();
    let sim = Sim::start().await;
    sim.faults(faults).await;
    sim
}

#[tokio::test]
async fn added_latency_past_the_timeout_is_a_timeout_with_unknown_outcome() {
    let sim = axb_faulty(json!({"latency_ms": 1500})).await;
    let mut s = sim.settings("k-axb");
    s.timeout = Duration::from_millis(300);
    let e = sim
        .client_with(s)
        .axb_bind(&bind(A1, A2))
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Timeout { .. }), "{e:?}");
    assert!(e.outcome_unknown());
    assert_eq!(e.class(), ErrorClass::RetryLater);
    // The faults are per app: another app answers at once.
    let mut s = sim.settings("k-ax");
    s.timeout = Duration::from_millis(300);
    sim.client_with(s)
        .ax_query(&AxSelector::OrigNum(A1.into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_errors_are_retry_later_and_change_nothing() {
    let sim = axb_faulty(json!({"error_rate": 1.0})).await;
    let e = expect_code(
        sim.client("k-axb").axb_bind(&bind(A1, A2)).await,
        codes::INTERNAL_SYSTEM_ERROR,
    );
    assert!(matches!(e, UpstreamError::Platform { status: 500, .. }));
    assert_eq!(e.class(), ErrorClass::RetryLater);
    assert!(e.retry_after().is_some());
    sim.faults(json!({"app_key": "k-axb"})).await; // all faults off again
    assert!(sim.bindings("k-axb").await.is_empty());
    sim.client("k-axb").axb_bind(&bind(A1, A2)).await.unwrap();
}

#[tokio::test]
async fn flow_control_pauses_the_app() {
    let sim = axb_faulty(json!({"flow_control_rate": 1.0})).await;
    let mut s = sim.settings("k-axb");
    s.flow_control_backoff = Duration::from_secs(30);
    s.max_wait = Duration::from_millis(50);
    let client = sim.client_with(s);
    let e = expect_code(
        client.axb_bind(&bind(A1, A2)).await,
        codes::INVALID_DIGEST_OR_FLOW_CONTROL,
    );
    assert_eq!(
        e.class(),
        ErrorClass::RetryLater,
        "1010010 with 403 is flow control, not auth"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    assert!(client.circuit_closed());
    // The app is paused: the next calls are refused locally with a retry hint.
    for _ in 0..5 {
        let e = client.axb_bind(&bind(A1, A2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::RateLimited { .. }), "{e:?}");
        assert!(e.retry_after().unwrap() > Duration::from_secs(25));
    }
    assert_eq!(sim.requests("k-axb").await, 1);
}

#[tokio::test]
async fn a_lost_response_leaves_a_committed_binding_to_be_found_by_query() {
    let sim = axb_faulty(json!({"lost_response_rate": 1.0})).await;
    let mut s = sim.settings("k-axb");
    s.timeout = Duration::from_millis(300);
    let client = sim.client_with(s);
    let e = client.axb_bind(&bind(A1, A2)).await.unwrap_err();
    assert!(e.outcome_unknown(), "{e:?}");
    // The binding was made all the same; a query by X + parties finds it.
    let live = sim.bindings("k-axb").await;
    assert_eq!(live.len(), 1);
    let q = AxbQuery::RelationNum {
        relation_num: X1.into(),
        caller: Some(A1.into()),
        callee: Some(A2.into()),
        page_index: None,
        page_size: None,
    };
    let found = client.axb_query(&q).await.unwrap();
    assert_eq!(
        found.relation_num_list[0].subscription_id,
        live[0]["subscriptionId"].as_str().unwrap()
    );
    // A retried bind is refused as a duplicate, as the docs warn.
    sim.faults(json!({"app_key": "k-axb"})).await;
    expect_code(
        client.axb_bind(&bind(A1, A2)).await,
        codes::NUMBER_ALREADY_BOUND,
    );
    let stats = sim.stats("k-axb").await;
    assert_eq!(stats["by_code"]["lost"], 1, "{stats}");
    // Shutting down does not wait for the hanging answer.
    sim.stop().await;
}

#[tokio::test]
async fn the_request_rate_limit_answers_flow_control_and_the_limiter_stays_below_it() {
    let sim =
        Sim::start_with(&Setup::platform().app("rides", |a| a.both("max_bindings_per_x", 5000)))
            .await;
    sim.faults(json!({"app_key": "k-axb", "rps_limit": 10}))
        .await;

    // Unpaced, 30 back-to-back calls overrun a 10/s platform.
    let mut unpaced = sim.settings("k-axb");
    unpaced.flow_control_backoff = Duration::ZERO;
    let unpaced = sim.client_with(unpaced);
    let mut throttled = 0;
    for i in 0..30 {
        match unpaced
            .axb_bind(&bind(&party(2 * i), &party(2 * i + 1)))
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(codes::INVALID_DIGEST_OR_FLOW_CONTROL) => throttled += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(throttled > 0, "the simulator's limit answered flow control");

    // Paced by the client's own limiter at the same rate (burst 1), nothing is throttled.
    tokio::time::sleep(Duration::from_secs(2)).await; // let the simulator's bucket refill
    let mut paced = sim.settings("k-axb");
    paced.rate_per_second = NonZeroU32::new(10).unwrap();
    paced.burst = NonZeroU32::new(1).unwrap();
    let paced = sim.client_with(paced);
    for i in 100..130 {
        paced
            .axb_bind(&bind(&party(2 * i), &party(2 * i + 1)))
            .await
            .expect("no flow control when paced");
    }
}
