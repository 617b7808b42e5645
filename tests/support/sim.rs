//! A simulator on 127.0.0.1:0 for one test, its control API, and clients of its apps.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use xpool::upstream::{AppClient, AppSettings, Secret, http_client};

use super::platform;
use super::platform::auth::{self, Scheme};
use super::running::Running;
use super::setup::Setup;
use super::simulator::{SimConfig, serve};

/// A running simulator; it shuts down when dropped.
#[derive(Debug)]
pub struct Sim {
    pub base_url: String,
    http: reqwest::Client,
    server: Running<std::io::Error>,
}

impl Sim {
    /// A simulator with [`Setup::platform`].
    pub async fn start() -> Sim {
        Sim::start_with(&Setup::platform()).await
    }

    /// A simulator with [`Setup::platform`] and a client of its app `app_key`.
    pub async fn start_for(app_key: &str) -> (Sim, Arc<AppClient>) {
        Sim::start_with_client(&Setup::platform(), app_key).await
    }

    /// A simulator with the platform side of `setup` and a client of its app `app_key`.
    pub async fn start_with_client(setup: &Setup, app_key: &str) -> (Sim, Arc<AppClient>) {
        let sim = Sim::start_with(setup).await;
        let client = sim.client(app_key);
        (sim, client)
    }

    /// A simulator with the platform side of `setup`.
    pub async fn start_with(setup: &Setup) -> Sim {
        let config = SimConfig::from_toml_str(&setup.sim_toml()).expect("valid simulator config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        Sim {
            base_url,
            http: http_client(),
            server: Running::spawn(|shutdown| serve(config, listener, shutdown)),
        }
    }

    /// Shuts the simulator down and waits until it has stopped.
    pub async fn stop(mut self) {
        self.server
            .stop(Duration::from_secs(10), "the simulator")
            .await;
    }

    /// Settings for an app of the setup, whose secret is the key with `s-` for `k-`.
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
        let created = platform::time::format_created(time::OffsetDateTime::now_utc());
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
