//! The HTTP pipeline on a real socket: routing, auth codes, IP blacklist, body checks, controls,
//! the lost-response fault and graceful shutdown.

use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{SimConfig, serve};
use xpool_platform::auth::{Scheme, new_nonce, token};
use xpool_platform::paths;
use xpool_platform::time::format_created;

const CONFIG: &str = r#"
[[apps]]
app_key = "k-axb"
app_secret = "s-axb"
mode = "AXB"
numbers = [{ number = "+8617000000001", area_code = "010" }]
"#;

struct Server {
    base: String,
    client: Client,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(toml: &str) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = SimConfig::from_toml_str(toml).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(config, listener, async move {
            let _ = stopped.await;
        }));
        Server {
            base,
            client: Client::new(),
            stop,
            task,
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// A request signed for `key`/`secret` with `scheme`.
    fn signed(
        &self,
        method: Method,
        path: &str,
        scheme: Scheme,
        key: &str,
        secret: &str,
    ) -> RequestBuilder {
        let created = format_created(time::OffsetDateTime::now_utc());
        self.request(method, path)
            .header("Authorization", scheme.authorization())
            .header(
                scheme.token_header(),
                token(scheme, key, secret, &new_nonce(), &created),
            )
    }

    fn axb(&self, method: Method) -> RequestBuilder {
        self.signed(method, paths::AXB, Scheme::Aksk, "k-axb", "s-axb")
    }

    async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let done = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        done.expect("shutdown within 5 s").unwrap().unwrap();
    }
}

/// Sends and returns (HTTP status, resultcode, resultdesc).
async fn call(req: RequestBuilder) -> (u16, String, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let text = |f: &str| body[f].as_str().unwrap_or_default().to_owned();
    (status, text("resultcode"), text("resultdesc"))
}

fn bind_body() -> Value {
    json!({"callerNum": "+8613800000001", "calleeNum": "+8613800000002", "relationNum": "+8617000000001"})
}

#[tokio::test]
async fn routing_auth_and_body_checks() {
    let s = Server::start(CONFIG).await;
    let resp = s.request(Method::GET, "/nope").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "Not Found");
    let resp = s.request(Method::PATCH, paths::AXB).send().await.unwrap();
    assert_eq!(resp.status(), 405);

    assert_eq!(call(s.request(Method::GET, paths::AXB)).await.1, "1023006");
    let unknown = s.signed(Method::GET, paths::AXB, Scheme::Aksk, "nobody", "x");
    assert_eq!(
        call(unknown).await,
        (403, "1010003".into(), "Invalid app_key.".into())
    );
    let wrong = s.signed(Method::GET, paths::AXB, Scheme::Wsse, "k-axb", "wrong");
    assert_eq!(
        call(wrong).await,
        (401, "1010010".into(), "Invalid digest.".into())
    );

    let ok = call(s.axb(Method::POST).json(&bind_body())).await;
    assert_eq!((ok.0, ok.1.as_str()), (200, "0"));
    let query = s
        .signed(Method::GET, paths::AXB, Scheme::Wsse, "k-axb", "s-axb")
        .query(&[("relationNum", "+8617000000001")]);
    assert_eq!(call(query).await.1, "0");
    let raw_plus = s.signed(
        Method::GET,
        &format!("{}?relationNum=+8617000000001", paths::AXB),
        Scheme::Aksk,
        "k-axb",
        "s-axb",
    );
    assert_eq!(call(raw_plus).await.2, "Invalid request. relationNum");

    let text = s
        .axb(Method::POST)
        .header("Content-Type", "text/plain")
        .body("{}");
    assert_eq!(
        call(text).await,
        (
            403,
            "1010002".into(),
            "Invalid request. Content-Type".into()
        )
    );
    let big = s
        .axb(Method::POST)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 70_000]);
    assert_eq!(
        call(big).await,
        (413, "1010002".into(), "Invalid request. body".into())
    );
    let broken = s
        .axb(Method::POST)
        .header("Content-Type", "application/json")
        .body("[1,");
    assert_eq!(call(broken).await.2, "Invalid request. body");
    let other_mode = s.signed(Method::GET, paths::AX, Scheme::Aksk, "k-axb", "s-axb");
    assert_eq!(call(other_mode).await.1, "1010040");

    let (status, stats) = s
        .control(Method::GET, "/sim/stats?app_key=k-axb", None)
        .await;
    assert_eq!(status, 200);
    // The bad digest counts for the app it named.
    assert_eq!(stats["requests"], 8);
    assert_eq!(stats["by_code"]["1010010"], 1);
    assert_eq!(stats["by_code"]["0"], 2);
    assert_eq!(stats["by_code"]["1010002"], 4);
    s.stop().await;
}

#[tokio::test]
async fn repeated_auth_failures_blacklist_the_ip() {
    let s = Server::start(&format!("[auth]\nmax_failures = 3\n{CONFIG}")).await;
    for _ in 0..3 {
        let bad = s.signed(Method::GET, paths::AXB, Scheme::Aksk, "k-axb", "wrong");
        assert_eq!(call(bad).await.1, "1010010");
    }
    let good = s
        .axb(Method::GET)
        .query(&[("relationNum", "+8617000000001")]);
    assert_eq!(
        call(good).await,
        (
            403,
            "1020176".into(),
            "Authentication failed, try again later".into()
        )
    );
    s.stop().await;
}

/// An AKSK request for `k-axb` carrying exactly these nonce and created time.
fn with_token(s: &Server, method: Method, nonce: &str, created: &str) -> RequestBuilder {
    s.request(method, paths::AXB)
        .header("Authorization", Scheme::Aksk.authorization())
        .header(
            "X-AKSK",
            token(Scheme::Aksk, "k-axb", "s-axb", nonce, created),
        )
}

#[tokio::test]
async fn a_replayed_token_is_refused_even_with_another_body() {
    let s = Server::start(CONFIG).await;
    let created = format_created(time::OffsetDateTime::now_utc());
    let nonce = new_nonce();
    let first = with_token(&s, Method::POST, &nonce, &created).json(&bind_body());
    assert_eq!(call(first).await.1, "0");
    // The same header again, on a query and on a bind with other parties.
    let query =
        with_token(&s, Method::GET, &nonce, &created).query(&[("relationNum", "+8617000000001")]);
    assert_eq!(
        call(query).await,
        (401, "1010013".into(), "Time out limit.".into())
    );
    let other = json!({"callerNum": "+8613800000003", "calleeNum": "+8613800000004"});
    let replay = with_token(&s, Method::POST, &nonce, &created).json(&other);
    assert_eq!(call(replay).await.1, "1010013");
    // A fresh nonce with the same created time is fine.
    let fresh = with_token(&s, Method::POST, &new_nonce(), &created).json(&other);
    assert_eq!(call(fresh).await.1, "0");
    let (_, stats) = s
        .control(Method::GET, "/sim/stats?app_key=k-axb", None)
        .await;
    assert_eq!(stats["by_code"]["1010013"], 2);
    assert_eq!(stats["by_code"]["0"], 2);
    s.stop().await;

    let lax = Server::start(&format!("[auth]\nreject_replayed_nonces = false\n{CONFIG}")).await;
    let nonce = new_nonce();
    for _ in 0..2 {
        let query = with_token(&lax, Method::GET, &nonce, &created)
            .query(&[("relationNum", "+8617000000001")]);
        assert_eq!(
            call(query).await.1,
            "1012007",
            "switched off: no replay check"
        );
    }
    lax.stop().await;
}

#[tokio::test]
async fn controls_drive_faults_clock_and_bindings() {
    let s = Server::start(CONFIG).await;
    let faults = json!({"app_key": "k-axb", "error_rate": 1.0});
    assert_eq!(
        s.control(Method::POST, "/sim/faults", Some(faults)).await.0,
        200
    );
    assert_eq!(call(s.axb(Method::POST).json(&bind_body())).await.0, 500);
    let bad = json!({"app_key": "k-axb", "error_rate": 2});
    let (status, body) = s.control(Method::POST, "/sim/faults", Some(bad)).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("error_rate"));
    let limit = json!({"app_key": "k-axb", "rps_limit": 1});
    s.control(Method::POST, "/sim/faults", Some(limit)).await;
    let mut body = bind_body();
    body["duration"] = json!(60);
    assert_eq!(call(s.axb(Method::POST).json(&body)).await.1, "0");
    let limited = call(
        s.axb(Method::GET)
            .query(&[("relationNum", "+8617000000001")]),
    )
    .await;
    assert_eq!((limited.0, limited.1.as_str()), (403, "1010010"));
    s.control(
        Method::POST,
        "/sim/faults",
        Some(json!({"app_key": "k-axb"})),
    )
    .await;

    let (_, listed) = s
        .control(Method::GET, "/sim/bindings?app_key=k-axb", None)
        .await;
    assert_eq!(listed["bindings"][0]["mode"], "AXB");
    assert_eq!(listed["bindings"][0]["a"], "+8613800000001");
    assert!(listed["bindings"][0]["expiresAt"].is_string());
    let advance = json!({"advance_seconds": 60});
    assert_eq!(
        s.control(Method::POST, "/sim/clock", Some(advance)).await.0,
        200
    );
    let (_, listed) = s
        .control(Method::GET, "/sim/bindings?app_key=k-axb", None)
        .await;
    assert_eq!(listed["bindings"], json!([]));
    let (status, _) = s
        .control(Method::GET, "/sim/bindings?app_key=nobody", None)
        .await;
    assert_eq!(status, 404);

    let numbers =
        json!({"app_key": "k-axb", "add": [{"number": "+8617000000002", "area_code": "021"}]});
    let (_, answer) = s.control(Method::POST, "/sim/numbers", Some(numbers)).await;
    assert_eq!(answer["numbers"].as_array().unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn a_lost_response_commits_and_never_blocks_shutdown() {
    let s = Server::start(CONFIG).await;
    let faults = json!({"app_key": "k-axb", "lost_response_rate": 1.0});
    s.control(Method::POST, "/sim/faults", Some(faults)).await;
    let lost = s
        .axb(Method::POST)
        .json(&bind_body())
        .timeout(Duration::from_millis(300));
    assert!(lost.send().await.unwrap_err().is_timeout());
    let (_, listed) = s
        .control(Method::GET, "/sim/bindings?app_key=k-axb", None)
        .await;
    assert_eq!(listed["bindings"].as_array().unwrap().len(), 1, "committed");
    let (_, stats) = s
        .control(Method::GET, "/sim/stats?app_key=k-axb", None)
        .await;
    assert_eq!(stats["by_code"]["lost"], 1);

    let hanging = s
        .axb(Method::DELETE)
        .query(&[("relationNum", "+8617000000001")])
        .send();
    let hanging = tokio::spawn(hanging);
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop().await;
    let result = tokio::time::timeout(Duration::from_secs(5), hanging)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_err(), "the held request is dropped, not answered");
}

#[tokio::test]
async fn a_hang_holds_requests_and_carries_them_out_when_cleared() {
    let s = Server::start(CONFIG).await;
    let hang = json!({"app_key": "k-axb", "hang_ms": 60_000});
    assert_eq!(
        s.control(Method::POST, "/sim/faults", Some(hang)).await.0,
        200
    );
    // The caller gives up; the platform still holds its bind.
    let abandoned = s
        .axb(Method::POST)
        .json(&bind_body())
        .timeout(Duration::from_millis(300));
    assert!(abandoned.send().await.unwrap_err().is_timeout());
    let listed = || s.control(Method::GET, "/sim/bindings?app_key=k-axb", None);
    assert_eq!(
        listed().await.1["bindings"],
        json!([]),
        "held, not carried out"
    );
    // A lookup sent after the bind, still waiting when the hang is cleared, overtakes it.
    let lookup = tokio::spawn(call(
        s.axb(Method::GET)
            .query(&[("relationNum", "+8617000000001")]),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!lookup.is_finished(), "the lookup is held too");
    let clear = json!({"app_key": "k-axb"});
    s.control(Method::POST, "/sim/faults", Some(clear)).await;
    let (status, code, _) = lookup.await.unwrap();
    assert_eq!((status, code.as_str()), (403, "1012007"), "not there yet");
    let bindings = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let bindings = listed().await.1["bindings"].clone();
            if bindings != json!([]) {
                return bindings;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the abandoned bind is carried out");
    assert_eq!(bindings[0]["a"], "+8613800000001");
    let (_, stats) = s
        .control(Method::GET, "/sim/stats?app_key=k-axb", None)
        .await;
    assert_eq!(stats["requests"], 2);
    s.stop().await;
}

#[tokio::test]
async fn a_hang_ends_by_itself_and_never_blocks_shutdown() {
    let s = Server::start(CONFIG).await;
    let hang = json!({"app_key": "k-axb", "hang_ms": 300});
    s.control(Method::POST, "/sim/faults", Some(hang)).await;
    let started = std::time::Instant::now();
    let (status, code, _) = call(s.axb(Method::POST).json(&bind_body())).await;
    assert_eq!((status, code.as_str()), (200, "0"));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "held for the hang"
    );

    let hang = json!({"app_key": "k-axb", "hang_ms": 60_000});
    s.control(Method::POST, "/sim/faults", Some(hang)).await;
    let held = tokio::spawn(
        s.axb(Method::GET)
            .query(&[("relationNum", "+8617000000001")])
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.stop().await;
    let result = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert!(
        result.is_err(),
        "the held request is dropped at shutdown, not answered"
    );
}

#[tokio::test]
async fn controls_can_be_switched_off() {
    let s = Server::start(&format!("controls = false\n{CONFIG}")).await;
    let resp = s.request(Method::GET, "/sim/clock").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    s.stop().await;
}
