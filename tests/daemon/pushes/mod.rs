//! The daemon's receiver of the platform's pushes (`[callbacks]`), on 127.0.0.1 beside a
//! simulator whose apps push to it: every bad push refused with its status while good ones
//! keep being taken, signatures, the allow-list, X-mode calls routed by the receiver's answer,
//! and the records of calls, CDRs, number status and SMS stored (`records`, which needs the call
//! log and number status of `xpool::calls` / `xpool::lifecycle`).

mod calls;
mod crash;
mod records;
mod refusals;
mod signatures;
mod xmode;

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::platform::auth::{self, Scheme};
use crate::support::platform::time::format_created;
use crate::support::*;

/// An AXB app's numbers.
pub const AXB_X: &str = "+8617000000001";
/// The X-mode app's numbers.
pub const X1: &str = "+8617600000001";
pub const X2: &str = "+8617600000002";
/// The X-mode app's tone for refused callers.
pub const BYE: &str = "bye.wav";
/// `callbacks.max_push_bytes` of [`setup`].
pub const MAX_PUSH_BYTES: usize = 4096;

/// An AXB app, and an X-mode app that verifies signatures and has a close tone; the receiver
/// on, taking at most [`MAX_PUSH_BYTES`].
pub fn setup() -> Setup {
    Setup::new(vec![
        App::new("rides", "k-axb", "AXB").numbers(8617000000001, &["010", "010"]),
        App::new("xmode", "k-x", "X")
            .daemon("verify_push_signature", true)
            .daemon("close_hint_tone", BYE)
            .numbers(8617600000001, &["010", "010"]),
    ])
    .receiver()
    .callbacks("max_push_bytes", MAX_PUSH_BYTES as i64)
}

/// Sends pushes to a daemon's receiver, as the platform would (or would not).
#[derive(Debug)]
pub struct Pusher {
    http: reqwest::Client,
    base: String,
}

impl Pusher {
    pub fn new(d: &Daemon) -> Pusher {
        Pusher::from(d, None)
    }

    /// A pusher whose requests leave from `local` (a loopback address of its own).
    pub fn from(d: &Daemon, local: Option<std::net::IpAddr>) -> Pusher {
        let http = reqwest::Client::builder()
            .local_address(local)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let base = d.receiver.clone().expect("the receiver is on");
        Pusher { http, base }
    }

    /// A request of `method` to `path`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// POSTs `body` to `path` as the platform does, unsigned.
    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.request(Method::POST, path)
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(body.to_string())
    }
}

/// Signs `request` as app `key` with `secret` in `scheme`, created at `created`.
pub fn sign(
    request: RequestBuilder,
    scheme: Scheme,
    key: &str,
    secret: &str,
    created: OffsetDateTime,
) -> RequestBuilder {
    let created = format_created(created);
    let token = auth::token(scheme, key, secret, &auth::new_nonce(), &created);
    request
        .header("Authorization", scheme.authorization())
        .header(scheme.token_header(), token)
}

/// Signs `request` as the X-mode app, now, with AKSK.
pub fn as_xmode(request: RequestBuilder) -> RequestBuilder {
    sign(
        request,
        Scheme::Aksk,
        "k-x",
        "s-x",
        OffsetDateTime::now_utc(),
    )
}

/// An X-mode Block `callin` from `caller` to `x`.
pub fn callin(caller: &str, x: &str) -> Value {
    json!({"eventType": "callin", "statusInfo": {
        "timestamp": "2024-03-01 02:14:55", "sessionId": format!("s-{caller}-{x}"),
        "caller": caller, "called": x, "notifyMode": "Block"}})
}

/// Sends `request`; its status and body.
pub async fn send(request: RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A good push is still taken: the X-mode app's signed Block callin from a caller with no
/// binding is answered 200 with `close` and the app's tone (before anything is stored).
pub async fn assert_good_push_taken(p: &Pusher, after: &str) {
    let response = as_xmode(p.post("/", &callin(&party(999), X1)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "after {after}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        content_type, "application/json;charset=UTF-8",
        "after {after}"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"operation": "close", "closeInfo": {"closeHintTone": BYE}}),
        "after {after}"
    );
}

/// `POST /sim/call` from `from` to `to` of `app_key`.
pub async fn sim_call(d: &Daemon, app_key: &str, from: &str, to: &str) -> Value {
    let body = json!({"app_key": app_key, "from": from, "to": to, "talk_seconds": 60});
    d.sim.control_post("/sim/call", body).await
}

/// `GET /sim/pushes?app_key=…`.
pub async fn sim_pushes(d: &Daemon, app_key: &str) -> Value {
    d.sim
        .control_get(&format!("/sim/pushes?app_key={app_key}"))
        .await
}
