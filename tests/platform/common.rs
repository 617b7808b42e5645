//! A simulator on 127.0.0.1:0 for one test, and clients of its apps.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use xpool::platform::auth::{self, Scheme};
use xpool::upstream::{AppClient, AppSettings, ErrorClass, Secret, UpstreamError, http_client};
use xpool_sim::{SimConfig, serve};

/// The simulator config most tests use: one app per mode.
pub const CONFIG: &str = r#"
[[apps]]
app_key = "k-axb"
app_secret = "s-axb"
mode = "AXB"
max_bindings_per_x = 3
numbers = [
  { number = "+8617000000001", area_code = "010" },
  { number = "+8617000000002", area_code = "010" },
  { number = "+8617000000003", area_code = "021" },
  { number = "+8617000000009", area_code = "0755", blacklisted = true },
]

[[apps]]
app_key = "k-ax"
app_secret = "s-ax"
mode = "AX"
numbers = [
  { number = "+8617100000001", area_code = "010" },
  { number = "+8617100000002", area_code = "010" },
  { number = "+8617100000003", area_code = "021" },
  { number = "+8617100000004", area_code = "021" },
  { number = "+8617100000005", area_code = "021" },
  { number = "+8617100000006", area_code = "0755" },
]

[[apps]]
app_key = "k-axe"
app_secret = "s-axe"
mode = "AXE"
extension_digits = 1
numbers = [
  { number = "+8617200000001", area_code = "010" },
  { number = "+8617200000002", area_code = "021" },
]

[[apps]]
app_key = "k-axyb"
app_secret = "s-axyb"
mode = "AXYB"
numbers = [
  { number = "+8617300000001", area_code = "010" },
  { number = "+8617300000002", area_code = "010" },
  { number = "+8617300000003", area_code = "021" },
]

[[apps]]
app_key = "k-frozen"
app_secret = "s-frozen"
mode = "AXB"
frozen = true
numbers = [ { number = "+8617400000001", area_code = "010" } ]

[[apps]]
app_key = "k-norec"
app_secret = "s-norec"
mode = "AXB"
recording_enabled = false
numbers = [ { number = "+8617500000001", area_code = "010" } ]

[auth]
max_failures = 5
"#;

/// A running simulator; it shuts down when dropped.
pub struct Sim {
    pub base_url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::start_with(CONFIG).await
    }

    pub async fn start_with(config: &str) -> Sim {
        let config = SimConfig::from_toml_str(config).expect("valid simulator config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(config, listener, shutdown.clone().cancelled_owned()));
        Sim {
            base_url,
            http: http_client(),
            shutdown,
            task: Some(task),
        }
    }

    /// Shuts the simulator down and waits until it has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("simulator stops promptly")
                .unwrap()
                .unwrap();
        }
    }

    /// Settings for an app of [`CONFIG`], whose secret is the key with `s-` for `k-`.
    pub fn settings(&self, app_key: &str) -> AppSettings {
        let secret = app_key.replacen("k-", "s-", 1);
        let mut s = AppSettings::new(app_key, Secret::new(secret), &self.base_url);
        s.timeout = Duration::from_secs(5);
        s.rate_per_second = std::num::NonZeroU32::new(10_000).unwrap();
        s.burst = s.rate_per_second;
        s
    }

    pub fn client(&self, app_key: &str) -> Arc<AppClient> {
        Arc::new(AppClient::new(self.settings(app_key), http_client()))
    }

    pub fn client_with(&self, settings: AppSettings) -> Arc<AppClient> {
        Arc::new(AppClient::new(settings, http_client()))
    }

    /// `GET /sim/bindings?app_key=…`: every live binding of the app.
    pub async fn bindings(&self, app_key: &str) -> Vec<Value> {
        let v: Value = self
            .control_get(&format!("/sim/bindings?app_key={app_key}"))
            .await;
        v["bindings"].as_array().expect("bindings array").clone()
    }

    pub async fn advance_clock(&self, seconds: u64) {
        self.control_post("/sim/clock", json!({ "advance_seconds": seconds }))
            .await;
    }

    pub async fn faults(&self, body: Value) {
        self.control_post("/sim/faults", body).await;
    }

    /// `GET /sim/stats`: requests that authenticated as the app, by result code.
    pub async fn stats(&self, app_key: &str) -> Value {
        self.control_get(&format!("/sim/stats?app_key={app_key}"))
            .await
    }

    pub async fn requests(&self, app_key: &str) -> u64 {
        self.stats(app_key).await["requests"]
            .as_u64()
            .expect("requests count")
    }

    pub async fn control_get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub async fn control_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// A raw signed JSON request, for what the typed client never sends.
    pub fn raw(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        app_key: &str,
    ) -> reqwest::RequestBuilder {
        self.signed(method, path_and_query, app_key)
            .header("Content-Type", "application/json;charset=UTF-8")
    }

    /// A raw signed request without a content type.
    pub fn signed(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        app_key: &str,
    ) -> reqwest::RequestBuilder {
        let secret = app_key.replacen("k-", "s-", 1);
        let nonce = auth::new_nonce();
        let created = xpool::platform::time::format_created(time::OffsetDateTime::now_utc());
        self.http
            .request(method, format!("{}{path_and_query}", self.base_url))
            .header("Authorization", Scheme::Aksk.authorization())
            .header(
                "X-AKSK",
                auth::token(Scheme::Aksk, app_key, &secret, &nonce, &created),
            )
    }

    pub fn unsigned(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path_and_query}", self.base_url))
    }
}

/// Asserts a platform error with this result code; returns it.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, UpstreamError>,
    code: &str,
) -> UpstreamError {
    match result {
        Err(e) if e.code() == Some(code) => e,
        other => panic!("expected result code {code}, got {other:?}"),
    }
}

#[track_caller]
pub fn expect_class<T: std::fmt::Debug>(
    result: Result<T, UpstreamError>,
    class: ErrorClass,
) -> UpstreamError {
    match result {
        Err(e) if e.class() == class => e,
        other => panic!("expected {class}, got {other:?}"),
    }
}

/// Reads `resultcode` and `resultdesc` of a raw answer.
pub async fn raw_result(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("a JSON body");
    let code = v["resultcode"]
        .as_str()
        .expect("resultcode is a JSON string")
        .to_owned();
    (
        status,
        code,
        v["resultdesc"].as_str().unwrap_or_default().to_owned(),
    )
}

pub const A1: &str = "+8613800000001";
pub const A2: &str = "+8613800000002";
pub const A3: &str = "+8613800000003";
pub const A4: &str = "+8613800000004";
pub const A5: &str = "+8613800000005";
pub const A6: &str = "+8613800000006";
pub const A7: &str = "+8613800000007";
