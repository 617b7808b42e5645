//! Every bad push gets its own status and a short reason, and the receiver is unharmed: the next
//! good push is taken. None of these reaches the call log.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

#[tokio::test]
async fn every_bad_push_gets_its_status_and_the_next_good_one_is_taken() {
    let d = Daemon::start_with(setup()).await;
    let p = Pusher::new(&d);
    assert_good_push_taken(&p, "start-up").await;

    let call = callin(&party(1), X1);
    let oversized = json!({"eventType": "numStatus", "numInfo": [],
        "padding": "x".repeat(MAX_PUSH_BYTES)});
    let cases = [
        (
            "a GET",
            p.request(Method::GET, "/"),
            405,
            "pushes are POSTed",
        ),
        (
            "malformed JSON",
            p.request(Method::POST, "/").body("{\"eventType\": "),
            400,
            "the body is not JSON",
        ),
        (
            "JSON of no push kind",
            p.post("/", &json!({"eventType": "hangup", "info": {}})),
            400,
            "none of the push kinds",
        ),
        (
            "a JSON array",
            p.post("/events", &json!([call.clone()])),
            400,
            "none of the push kinds",
        ),
        (
            "an oversized body",
            p.post("/", &oversized),
            400,
            &format!("larger than {MAX_PUSH_BYTES} bytes (callbacks.max_push_bytes)"),
        ),
        (
            "a call event on the CDR path",
            as_xmode(p.post("/cdr", &call)),
            400,
            "/cdr takes fee pushes, and this is a callEvent push",
        ),
        (
            "number status on the SMS path",
            p.post("/sms", &json!({"eventType": "numStatus", "numInfo": []})),
            400,
            "/sms takes sms pushes, and this is a numStatus push",
        ),
        (
            "a call event with a malformed field",
            as_xmode(p.post(
                "/",
                &json!({"eventType": "disconnect", "statusInfo": {"stateCode": "busy"}}),
            )),
            400,
            "a call event with a malformed field",
        ),
        (
            "a CDR push whose feeLst is no list",
            p.post(
                "/cdr",
                &json!({"eventType": "fee", "feeLst": {"icid": "1"}}),
            ),
            400,
            "feeLst is not a list",
        ),
    ];
    for (what, request, status, says) in cases {
        let (got, text) = send(request).await;
        assert_eq!(got, status, "{what}: {text}");
        assert!(
            text.contains(says),
            "{what}: {text:?} does not say {says:?}"
        );
        assert!(text.len() < 200, "{what}: a short reason: {text:?}");
        assert_good_push_taken(&p, what).await;
    }
    let (_, text) = send(p.request(Method::PUT, "/numstatus")).await;
    assert_eq!(text, "pushes are POSTed\n");
    let allow = p.request(Method::GET, "/").send().await.unwrap();
    assert_eq!(allow.headers()["allow"], "POST");
    d.stop().await;
}

#[tokio::test]
async fn a_push_from_outside_the_allow_list_is_refused() {
    let d = Daemon::start_with(setup().callbacks("allow_from", vec!["127.0.0.1/32"])).await;
    let outside = Pusher::from(&d, Some([127, 0, 0, 2].into()));
    let (status, text) = send(as_xmode(outside.post("/", &callin(&party(1), X1)))).await;
    assert_eq!(
        (status, text.as_str()),
        (403, "the peer is not in callbacks.allow_from\n")
    );
    let (status, _) = send(outside.request(Method::GET, "/")).await;
    assert_eq!(status, 403, "refused before anything else is looked at");
    assert_good_push_taken(&Pusher::new(&d), "a refused peer").await;
    d.stop().await;
}

/// A push whose body never finishes does not hold up the others, and a body larger than the
/// limit is refused even without a Content-Length.
#[tokio::test]
async fn a_stalled_or_endless_body_does_not_block_other_pushes() {
    let d = Daemon::start_with(setup()).await;
    let p = Pusher::new(&d);
    let addr = d.receiver.clone().unwrap().replace("http://", "");

    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"eventType\":";
    stalled.write_all(head.as_bytes()).await.unwrap();
    assert_good_push_taken(&p, "a stalled body").await;

    // One write of more chunks than the limit takes, and no last chunk: the refusal comes
    // before the body ends.
    let mut chunked = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut request =
        "POST /cdr HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    for _ in 0..=MAX_PUSH_BYTES / 1024 {
        request += &format!("{:x}\r\n{}\r\n", 1024, "x".repeat(1024));
    }
    chunked.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = async {
        let mut buf = vec![0; 4096];
        // Until the reason arrives or the receiver closes.
        while !answer.contains("max_push_bytes") {
            match chunked.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer += &String::from_utf8_lossy(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer before the body ends");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("callbacks.max_push_bytes"), "{answer}");
    assert_good_push_taken(&p, "an endless body").await;
    drop(stalled);
    d.stop().await;
}

#[tokio::test]
async fn a_restarted_daemon_takes_pushes_on_the_same_port() {
    let d = Daemon::start_with(setup()).await;
    let before = d.receiver.clone();
    assert_good_push_taken(&Pusher::new(&d), "start-up").await;
    let d = d.restart().await;
    assert_eq!(d.receiver, before, "the simulator's URLs still lead to it");
    assert_good_push_taken(&Pusher::new(&d), "a restart").await;
    let call = sim_call(&d, "k-x", &party(3), X1).await;
    assert_eq!(call["stateCode"], 8017, "the simulator reaches it: {call}");
    d.stop().await;
}
