//! The HTTP core of the client: pacing, the circuit, signing, sending and decoding.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::breaker::{Breaker, Circuit, Permit, Verdict};
use super::error::UpstreamError;
use super::limiter::{Limiter, Priority};
use super::result::{ErrorClass, classify, classify_http};
use super::secret::Secret;
use crate::metrics::{AppLabel, OperationLabels, UpstreamLabels, UpstreamMetrics};
use crate::platform::wire::{Envelope, Query};
use crate::platform::{auth, codes, time};

/// How long the platform refuses an IP it has blacklisted (binding-api.md §1.4).
pub const IP_BLACKLIST: Duration = Duration::from_secs(30 * 60);

/// Everything the client needs to know about one platform application.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub app_key: String,
    pub app_secret: Secret,
    /// The app's access address, e.g. `https://rtcpns.cn-north-1.myhuaweicloud.com`.
    pub base_url: String,
    pub scheme: auth::Scheme,
    /// Limit on each call, from connecting to the last byte of the answer (not the wait for a
    /// limiter slot, which `max_wait` bounds).
    pub timeout: Duration,
    pub rate_per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// How long a call may wait for a limiter slot before failing with `RateLimited`.
    pub max_wait: Duration,
    /// How long a flow-control answer holds back all of the app's calls.
    pub flow_control_backoff: Duration,
    /// How long the circuit stays open after an authentication failure before one probe.
    pub auth_cool_off: Duration,
}

impl AppSettings {
    /// Settings with the defaults: AKSK, 10 s timeout, 50 calls/s (burst 50), 5 s limiter
    /// wait, 5 s flow-control back-off, 60 s auth cool-off.
    pub fn new(
        app_key: impl Into<String>,
        app_secret: Secret,
        base_url: impl Into<String>,
    ) -> Self {
        let fifty = NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN);
        AppSettings {
            app_key: app_key.into(),
            app_secret,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            scheme: auth::Scheme::Aksk,
            timeout: Duration::from_secs(10),
            rate_per_second: fifty,
            burst: fifty,
            max_wait: Duration::from_secs(5),
            flow_control_backoff: Duration::from_secs(5),
            auth_cool_off: Duration::from_secs(60),
        }
    }
}

/// A client for one platform application: its own limiter and circuit, shared HTTP pool.
///
/// A handle made with [`AppClient::with_opts`] shares the app's limiter and circuit and makes
/// its calls with its own [`CallOpts`].
#[derive(Debug)]
pub struct AppClient {
    app: Arc<App>,
    /// How this handle's calls wait for the app's limiter.
    priority: Priority,
    max_wait: Option<Duration>,
    /// A slot taken with [`AppClient::take_slot`], spent by this handle's next call.
    permit: Mutex<Option<Slot>>,
}

/// A limiter slot that took this long counts as a wait.
const LIMITER_WAITED: Duration = Duration::from_millis(1);

/// What every handle of one app shares.
#[derive(Debug)]
struct App {
    settings: AppSettings,
    http: reqwest::Client,
    limiter: Limiter,
    breaker: Breaker,
    /// Where calls and limiter waits are counted, with the app's name.
    metrics: OnceLock<(String, UpstreamMetrics)>,
}

/// How a platform call waits for its app's rate limiter. Passed explicitly (see
/// [`AppClient::with_opts`]), so it survives any hand-over between tasks.
#[derive(Debug, Default)]
pub struct CallOpts {
    /// Where the call queues among the app's waiting calls.
    pub priority: Priority,
    /// The longest the call may wait for a slot (e.g. from the caller's gRPC deadline); `None`
    /// is the app's configured `max_wait`.
    pub max_wait: Option<Duration>,
    /// A slot already taken with [`AppClient::take_slot`]: the first call uses it instead of
    /// waiting for a new one.
    pub permit: Option<Slot>,
}

impl CallOpts {
    /// Calls queued at `priority`.
    pub fn priority(priority: Priority) -> Self {
        CallOpts {
            priority,
            ..CallOpts::default()
        }
    }

    /// Calls waiting at most `max_wait` for a slot.
    pub fn max_wait(max_wait: Duration) -> Self {
        CallOpts {
            max_wait: Some(max_wait),
            ..CallOpts::default()
        }
    }

    /// The first call uses `permit` instead of waiting.
    pub fn prepaid(permit: Slot) -> Self {
        CallOpts {
            permit: Some(permit),
            ..CallOpts::default()
        }
    }
}

/// One limiter slot, taken ahead of the call that spends it.
#[derive(Debug)]
#[must_use = "a slot not spent on a call is lost"]
pub struct Slot(());

/// An HTTP client suitable for the platform: rustls, no proxy lookups, no pooled keep-alive
/// reliance (the platform closes connections itself).
pub fn http_client() -> reqwest::Client {
    // With `rustls-no-provider`, rustls needs a process-wide provider; installing twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        // reqwest's default, stated so that a change of default cannot bring back Nagle's
        // stall: a write held until the platform's delayed ACK (40 ms on Linux).
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default()
}

/// One endpoint call, described for logs and errors.
pub(crate) struct Call<'a, B> {
    pub op: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub query: Query,
    pub body: Option<&'a B>,
}

impl AppClient {
    pub fn new(settings: AppSettings, http: reqwest::Client) -> Self {
        let limiter = Limiter::new(settings.rate_per_second, settings.burst);
        let app = App {
            settings,
            http,
            limiter,
            breaker: Breaker::default(),
            metrics: OnceLock::new(),
        };
        AppClient {
            app: Arc::new(app),
            priority: Priority::default(),
            max_wait: None,
            permit: Mutex::new(None),
        }
    }

    /// A handle on the same app (limiter, circuit, connections) whose calls use `opts`.
    pub fn with_opts(&self, opts: CallOpts) -> AppClient {
        let CallOpts {
            priority,
            max_wait,
            permit,
        } = opts;
        AppClient {
            app: Arc::clone(&self.app),
            priority,
            max_wait,
            permit: Mutex::new(permit),
        }
    }

    pub fn settings(&self) -> &AppSettings {
        &self.app.settings
    }

    pub fn app_key(&self) -> &str {
        &self.app.settings.app_key
    }

    /// True unless an authentication failure has opened the circuit.
    pub fn circuit_closed(&self) -> bool {
        self.app.breaker.is_closed()
    }

    /// The state of the app's circuit breaker.
    pub fn circuit(&self) -> Circuit {
        self.app.breaker.circuit()
    }

    /// Spends this handle's prepaid slot, if it still has one.
    fn use_permit(&self) -> bool {
        self.permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
    }

    /// Sends one call and decodes a success answer as `T`.
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        call: Call<'_, B>,
    ) -> Result<T, UpstreamError> {
        let op = call.op;
        let app_key = || self.app.settings.app_key.clone();
        // Fail fast while the circuit is open, before waiting for a slot.
        if let Some(retry_after) = self.app.breaker.blocked_for() {
            return Err(UpstreamError::CircuitOpen {
                op,
                app_key: app_key(),
                retry_after,
            });
        }
        if !self.use_permit() {
            self.pace(op).await?;
        }
        let permit =
            self.app
                .breaker
                .admit()
                .map_err(|retry_after| UpstreamError::CircuitOpen {
                    op,
                    app_key: app_key(),
                    retry_after,
                })?;

        let started = Instant::now();
        // reqwest's own timeout covers connecting, sending and the body; this one also covers
        // whatever else `send` may wait for, so `timeout` bounds the call end to end.
        let timeout = self.app.settings.timeout;
        let result = match tokio::time::timeout(timeout, self.send(&call)).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout { op, timeout }),
        };
        let verdict = match &result {
            Ok(_) => Verdict::Authenticated,
            Err(UpstreamError::Platform {
                class: ErrorClass::Auth,
                code,
                ..
            }) => Verdict::AuthFailed(self.auth_open_for(code)),
            Err(UpstreamError::Http {
                class: ErrorClass::Auth,
                ..
            }) => Verdict::AuthFailed(self.app.settings.auth_cool_off),
            Err(UpstreamError::Platform { .. }) => Verdict::Authenticated,
            Err(_) => Verdict::NoAnswer,
        };
        self.app.breaker.record(permit, verdict);
        self.log(op, permit, started, &result);
        if let Some((app, metrics)) = self.app.metrics.get() {
            let labels = OperationLabels {
                app: app.clone(),
                operation: op,
            };
            metrics
                .call_seconds
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            let result = result.as_ref().err().map_or("ok", UpstreamError::label);
            metrics
                .calls
                .get_or_create(&UpstreamLabels {
                    app: labels.app,
                    operation: op,
                    result,
                })
                .inc();
        }
        result
    }

    /// Counts this app's calls, limiter waits and refusals in `metrics`, labelled `app`
    /// (every handle of the app shares it; the first call wins).
    pub fn observe(&self, app: &str, metrics: UpstreamMetrics) {
        let _ = self.app.metrics.set((app.to_owned(), metrics));
    }

    /// Takes a limiter slot (waiting as this handle's options allow) for a call about to be
    /// made with [`CallOpts::prepaid`], so a caller can wait for the rate limit before it
    /// commits to anything; fails fast while the circuit is open.
    pub async fn take_slot(&self) -> Result<Slot, UpstreamError> {
        let op = "take_slot";
        if let Some(retry_after) = self.app.breaker.blocked_for() {
            return Err(UpstreamError::CircuitOpen {
                op,
                app_key: self.app.settings.app_key.clone(),
                retry_after,
            });
        }
        self.pace(op).await.map(|()| Slot(()))
    }

    /// Waits for a limiter slot, as long as this handle's `max_wait` allows.
    async fn pace(&self, op: &'static str) -> Result<(), UpstreamError> {
        let max_wait = self.max_wait.unwrap_or(self.app.settings.max_wait);
        let started = Instant::now();
        let paced = self.app.limiter.acquire(max_wait, self.priority).await;
        if let Some((app, metrics)) = self.app.metrics.get() {
            let counter = match &paced {
                Err(_) => Some(&metrics.limiter_refusals),
                Ok(()) if started.elapsed() >= LIMITER_WAITED => Some(&metrics.limiter_waits),
                Ok(()) => None,
            };
            if let Some(counter) = counter {
                counter.get_or_create(&AppLabel { app: app.clone() }).inc();
            }
        }
        paced.map_err(|retry_after| UpstreamError::RateLimited {
            op,
            app_key: self.app.settings.app_key.clone(),
            retry_after,
        })
    }

    fn auth_open_for(&self, code: &str) -> Duration {
        if code == codes::IP_BLACKLISTED {
            self.app.settings.auth_cool_off.max(IP_BLACKLIST)
        } else {
            self.app.settings.auth_cool_off
        }
    }

    fn log<T>(
        &self,
        op: &str,
        permit: Permit,
        started: Instant,
        result: &Result<T, UpstreamError>,
    ) {
        let app = self.app.settings.app_key.as_str();
        let ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(_) => tracing::debug!(
                app,
                op,
                ms,
                probe = permit == Permit::Probe,
                "platform call ok"
            ),
            Err(e) if e.class() == ErrorClass::Auth => tracing::error!(
                app, op, ms, error = %e,
                "platform rejected the app's credentials; its calls stop until the circuit half-opens"
            ),
            Err(e) => tracing::debug!(app, op, ms, error = %e, "platform call failed"),
        }
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        call: &Call<'_, B>,
    ) -> Result<T, UpstreamError> {
        let op = call.op;
        let s = &self.app.settings;
        let nonce = auth::new_nonce();
        let created = time::format_created(::time::OffsetDateTime::now_utc());
        let token = auth::token(
            s.scheme,
            &s.app_key,
            s.app_secret.expose(),
            &nonce,
            &created,
        );
        let mut request = self
            .app
            .http
            .request(call.method.clone(), format!("{}{}", s.base_url, call.path))
            .query(&call.query)
            .timeout(s.timeout)
            .header(CONTENT_TYPE, "application/json;charset=UTF-8")
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, s.scheme.authorization())
            .header(s.scheme.token_header(), token);
        if let Some(body) = call.body {
            let bytes = serde_json::to_vec(body).map_err(|e| UpstreamError::Decode {
                op,
                detail: format!("encoding request: {e}"),
            })?;
            request = request.body(bytes);
        }

        let response = request.send().await.map_err(|e| self.transport(op, e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.transport(op, e))?;
        self.decode(op, status, &bytes)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        op: &'static str,
        status: StatusCode,
        bytes: &[u8],
    ) -> Result<T, UpstreamError> {
        let status_code = status.as_u16();
        let Ok(envelope) = serde_json::from_slice::<Envelope>(bytes) else {
            return Err(if status.is_success() {
                UpstreamError::Decode {
                    op,
                    detail: format!("HTTP {status_code}, no resultcode"),
                }
            } else {
                UpstreamError::Http {
                    op,
                    status: status_code,
                    class: classify_http(status_code),
                }
            });
        };
        if envelope.resultcode == codes::SUCCESS {
            return serde_json::from_slice(bytes).map_err(|e| UpstreamError::Decode {
                op,
                detail: e.to_string(),
            });
        }
        let class = classify(status_code, &envelope.resultcode, &envelope.resultdesc);
        let retry_after = (class == ErrorClass::RetryLater).then(|| {
            if envelope.resultcode == codes::INVALID_DIGEST_OR_FLOW_CONTROL {
                self.app
                    .limiter
                    .pause(self.app.settings.flow_control_backoff);
                self.app.settings.flow_control_backoff
            } else {
                Duration::from_secs(1)
            }
        });
        Err(UpstreamError::Platform {
            op,
            status: status_code,
            code: envelope.resultcode,
            desc: envelope.resultdesc,
            class,
            retry_after,
        })
    }

    fn transport(&self, op: &'static str, e: reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            UpstreamError::Timeout {
                op,
                timeout: self.app.settings.timeout,
            }
        } else {
            let maybe_sent = !e.is_connect();
            UpstreamError::Transport {
                op,
                source: e.without_url(),
                maybe_sent,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_per_second() -> AppClient {
        let mut settings = AppSettings::new("key", Secret::new("secret"), "http://127.0.0.1:9");
        settings.rate_per_second = NonZeroU32::MIN;
        settings.burst = NonZeroU32::MIN;
        AppClient::new(settings, http_client())
    }

    /// A platform that takes connections (or not even that: the backlog holds them) and never
    /// answers, as a stopped process does.
    async fn silent_platform() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        (url, held)
    }

    #[tokio::test]
    async fn a_platform_that_never_answers_times_out_as_configured() {
        let (url, held) = silent_platform().await;
        let mut settings = AppSettings::new("key", Secret::new("secret"), url);
        settings.timeout = Duration::from_millis(200);
        let client = AppClient::new(settings, http_client());
        for method in [Method::GET, Method::POST] {
            let call = Call::<()> {
                op: "probe",
                method,
                path: "/rest/provision/caas/privatenumber/v1.0",
                query: vec![("relationNum", "+8617000000001".into())],
                body: None,
            };
            // The outer limit only keeps a broken build from hanging the test.
            let result = tokio::time::timeout(
                Duration::from_secs(30),
                client.call::<(), serde_json::Value>(call),
            )
            .await
            .expect("the call ends by itself");
            assert!(
                matches!(result, Err(UpstreamError::Timeout { op: "probe", .. })),
                "{result:?}"
            );
        }
        held.abort();
    }

    #[tokio::test]
    async fn handles_share_the_limiter_and_spend_a_prepaid_slot_once() {
        let client = one_per_second();
        let slot = client.take_slot().await.expect("the first slot is free");
        let hurried = client.with_opts(CallOpts::max_wait(Duration::ZERO));
        assert!(
            matches!(
                hurried.take_slot().await,
                Err(UpstreamError::RateLimited { .. })
            ),
            "a handle shares its app's limiter"
        );
        let prepaid = client.with_opts(CallOpts::prepaid(slot));
        assert!(prepaid.use_permit());
        assert!(!prepaid.use_permit(), "a slot pays for one call");
        assert!(!client.use_permit());
    }
}
