//! The HTTP core of the client: pacing, the circuit, signing, sending and decoding.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::breaker::{Breaker, Permit, Verdict};
use super::error::UpstreamError;
use super::limiter::{Limiter, Priority};
use super::result::{ErrorClass, classify, classify_http};
use super::secret::Secret;
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
    /// Limit on each call, from sending to the last byte of the answer.
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
#[derive(Debug)]
pub struct AppClient {
    settings: AppSettings,
    http: reqwest::Client,
    limiter: Limiter,
    breaker: Breaker,
}

/// An HTTP client suitable for the platform: rustls, no proxy lookups, no pooled keep-alive
/// reliance (the platform closes connections itself).
pub fn http_client() -> reqwest::Client {
    // With `rustls-no-provider`, rustls needs a process-wide provider; installing twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

tokio::task_local! {
    /// The longest the calls of the current task may wait for a limiter slot.
    static MAX_WAIT: Duration;
    /// The limiter priority of the current task's calls.
    static PRIORITY: Priority;
    /// Limiter slots the current task already took with [`AppClient::take_slot`].
    static PREPAID: std::cell::Cell<u32>;
}

/// Runs `f` with its first `slots` platform calls using slots already taken with
/// [`AppClient::take_slot`] instead of waiting for new ones.
pub async fn with_prepaid<F: std::future::Future>(slots: u32, f: F) -> F::Output {
    PREPAID.scope(std::cell::Cell::new(slots), f).await
}

/// Uses one prepaid slot, if the current task has one.
fn use_prepaid() -> bool {
    PREPAID
        .try_with(|left| {
            let n = left.get();
            left.set(n.saturating_sub(1));
            n > 0
        })
        .unwrap_or(false)
}

/// Runs `f` with its platform calls queued at `priority` in the app's limiter.
pub async fn with_priority<F: std::future::Future>(priority: Priority, f: F) -> F::Output {
    PRIORITY.scope(priority, f).await
}

/// Runs `f` with its platform calls waiting at most `max_wait` for a limiter slot (e.g. the
/// caller's gRPC deadline) instead of the app's configured `max_wait`.
pub async fn with_max_wait<F: std::future::Future>(max_wait: Duration, f: F) -> F::Output {
    MAX_WAIT.scope(max_wait, f).await
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
        AppClient {
            settings,
            http,
            limiter,
            breaker: Breaker::default(),
        }
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    pub fn app_key(&self) -> &str {
        &self.settings.app_key
    }

    /// True unless an authentication failure has opened the circuit.
    pub fn circuit_closed(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Sends one call and decodes a success answer as `T`.
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        call: Call<'_, B>,
    ) -> Result<T, UpstreamError> {
        let op = call.op;
        let app_key = || self.settings.app_key.clone();
        // Fail fast while the circuit is open, before waiting for a slot.
        if let Some(retry_after) = self.breaker.blocked_for() {
            return Err(UpstreamError::CircuitOpen {
                op,
                app_key: app_key(),
                retry_after,
            });
        }
        if !use_prepaid() {
            self.pace(op).await?;
        }
        let permit = self
            .breaker
            .admit()
            .map_err(|retry_after| UpstreamError::CircuitOpen {
                op,
                app_key: app_key(),
                retry_after,
            })?;

        let started = Instant::now();
        let result = self.send(&call).await;
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
            }) => Verdict::AuthFailed(self.settings.auth_cool_off),
            Err(UpstreamError::Platform { .. }) => Verdict::Authenticated,
            Err(_) => Verdict::NoAnswer,
        };
        self.breaker.record(permit, verdict);
        self.log(op, permit, started, &result);
        result
    }

    /// Takes a limiter slot for a call this task is about to make (see [`with_prepaid`]), so a
    /// caller can wait for the rate limit before it commits to anything; fails fast while the
    /// circuit is open.
    pub async fn take_slot(&self) -> Result<(), UpstreamError> {
        let op = "take_slot";
        if let Some(retry_after) = self.breaker.blocked_for() {
            return Err(UpstreamError::CircuitOpen {
                op,
                app_key: self.settings.app_key.clone(),
                retry_after,
            });
        }
        self.pace(op).await
    }

    /// Waits for a limiter slot, as long as the task's `max_wait` allows.
    async fn pace(&self, op: &'static str) -> Result<(), UpstreamError> {
        let max_wait = MAX_WAIT.try_with(|w| *w).unwrap_or(self.settings.max_wait);
        let priority = PRIORITY.try_with(|p| *p).unwrap_or(Priority::Normal);
        self.limiter
            .acquire(max_wait, priority)
            .await
            .map_err(|retry_after| UpstreamError::RateLimited {
                op,
                app_key: self.settings.app_key.clone(),
                retry_after,
            })
    }

    fn auth_open_for(&self, code: &str) -> Duration {
        if code == codes::IP_BLACKLISTED {
            self.settings.auth_cool_off.max(IP_BLACKLIST)
        } else {
            self.settings.auth_cool_off
        }
    }

    fn log<T>(
        &self,
        op: &str,
        permit: Permit,
        started: Instant,
        result: &Result<T, UpstreamError>,
    ) {
        let app = self.settings.app_key.as_str();
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
        let s = &self.settings;
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
                self.limiter.pause(self.settings.flow_control_backoff);
                self.settings.flow_control_backoff
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
                timeout: self.settings.timeout,
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
