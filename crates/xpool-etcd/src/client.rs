//! [`Client`]: the endpoints, their channels, failover, deadlines and auth. The typed calls live
//! in the other modules as `impl Client` blocks on top of [`Client::unary`].

use std::{
    fmt,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{
    config::{ClientConfig, Credentials, TlsConfig},
    error::{Error, Retry, retry_policy},
    pb::etcdserverpb::{AuthenticateRequest, auth_client::AuthClient},
};

/// The first pause after every endpoint failed once; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// The largest message accepted from etcd (tonic's default is 4 MiB; a large range or watch
/// response can exceed it).
/// HTTP/2 ping interval. etcd answers pings more often than every 5 s with GOAWAY
/// (`--grpc-keepalive-min-time`), as it does pings on a connection without a stream.
const PING_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Whether a call changes etcd's state, which decides whether an ambiguous failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Safe to repeat: retried on any transient failure.
    Read,
    /// Retried only when etcd provably did not process it.
    Write,
}

/// An etcd v3 client. Cheap to clone: clones share the connections and the auth token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// This handle's per-call deadline.
    timeout: Duration,
}

struct Inner {
    /// One lazily connected channel per endpoint, in configuration order.
    endpoints: Vec<(String, Channel)>,
    /// The endpoint calls start on: the last one that worked.
    current: AtomicUsize,
    credentials: Option<Credentials>,
    /// The auth token in use; `None` until first needed and after etcd rejects it.
    token: Mutex<Option<AsciiMetadataValue>>,
    /// Held while authenticating, so concurrent calls wait for one new token.
    authenticating: tokio::sync::Mutex<()>,
    attempt_timeout: Duration,
    keep_alive_timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints().collect::<Vec<_>>())
            .field(
                "user",
                &self.inner.credentials.as_ref().map(Credentials::user),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client for `config.endpoints`. Validates the configuration and reads the TLS files, but
    /// connects lazily: etcd need not be up yet. Must be called inside a tokio runtime.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no etcd endpoints configured".into()));
        }
        let tls = tls_config(config.tls.as_ref())?;
        let endpoints = config
            .endpoints
            .iter()
            .map(|url| Ok((url.clone(), channel(url, &config, &tls)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let inner = Inner {
            endpoints,
            current: AtomicUsize::new(0),
            credentials: config.credentials,
            token: Mutex::new(None),
            authenticating: tokio::sync::Mutex::new(()),
            attempt_timeout: config.attempt_timeout,
            keep_alive_timeout: config.keep_alive_timeout,
        };
        Ok(Self {
            inner: Arc::new(inner),
            timeout: config.request_timeout,
        })
    }

    /// A handle on the same connections whose calls have `timeout` as their deadline, for
    /// example the remaining deadline of the gRPC call being served.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            timeout,
        }
    }

    /// This handle's per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The configured endpoints, in order.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.inner.endpoints.iter().map(|(url, _)| url.as_str())
    }

    /// Runs one unary call with failover: each attempt goes to the current endpoint with the
    /// token and `hasleader` metadata; see the crate docs for what is retried.
    pub(crate) async fn unary<Req, Resp, F, Fut>(
        &self,
        kind: Kind,
        req: Req,
        call: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Backoff::new(self.inner.endpoints.len());
        let mut reauthenticated = false;
        let mut last: Option<Status> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(match last {
                    Some(status) => Error::Unavailable(status.message().to_owned()),
                    None => Error::Timeout(self.timeout),
                });
            }
            let attempt = match kind {
                Kind::Read => (deadline - now).min(self.inner.attempt_timeout),
                Kind::Write => deadline - now,
            };
            let token = self.token(deadline).await?;
            let (index, channel) = self.current();
            let mut request = Request::new(req.clone());
            decorate(&mut request, token.as_ref());
            request.set_timeout(attempt);
            let status = match tokio::time::timeout(attempt, call(channel, request)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => {
                    self.failed(index);
                    match kind {
                        Kind::Write => return Err(Error::Timeout(self.timeout)),
                        Kind::Read => continue,
                    }
                }
            };
            match (retry_policy(&status), kind) {
                (Retry::Reauthenticate, _) if token.is_some() && !reauthenticated => {
                    reauthenticated = true;
                    self.forget_token(token.as_ref());
                }
                (Retry::Safe, _) | (Retry::ReadsOnly, Kind::Read) => {
                    tracing::debug!(endpoint = self.url(index), %status, "etcd call failed, failing over");
                    self.failed(index);
                    backoff.pause(deadline).await;
                    last = Some(status);
                }
                _ => return Err(Error::from_status(&status)),
            }
        }
    }

    /// How long a stream may stay silent after a liveness check before it counts as dead.
    pub(crate) fn keep_alive_timeout(&self) -> Duration {
        self.inner.keep_alive_timeout
    }

    /// The current endpoint's index and channel.
    pub(crate) fn current(&self) -> (usize, Channel) {
        let index = self.inner.current.load(Ordering::Relaxed) % self.inner.endpoints.len();
        (index, self.inner.endpoints[index].1.clone())
    }

    /// The channel of endpoint `index`.
    pub(crate) fn channel(&self, index: usize) -> Channel {
        self.inner.endpoints[index].1.clone()
    }

    /// The URL of endpoint `index`.
    pub(crate) fn url(&self, index: usize) -> &str {
        &self.inner.endpoints[index].0
    }

    /// Moves calls off endpoint `index` (unless another call already did).
    pub(crate) fn failed(&self, index: usize) {
        let next = (index + 1) % self.inner.endpoints.len();
        let _ =
            self.inner
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The auth token to send, authenticating first when there is none; `None` without auth.
    pub(crate) async fn token(
        &self,
        deadline: Instant,
    ) -> Result<Option<AsciiMetadataValue>, Error> {
        let Some(credentials) = &self.inner.credentials else {
            return Ok(None);
        };
        if let Some(token) = self.cached_token() {
            return Ok(Some(token));
        }
        let _guard = self.inner.authenticating.lock().await;
        if let Some(token) = self.cached_token() {
            return Ok(Some(token));
        }
        let token = self.authenticate(credentials, deadline).await?;
        *self.inner.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(Some(token))
    }

    /// Drops `stale` so that the next call authenticates again.
    pub(crate) fn forget_token(&self, stale: Option<&AsciiMetadataValue>) {
        let mut token = self.inner.token.lock().unwrap_or_else(|e| e.into_inner());
        if token.as_ref() == stale {
            *token = None;
        }
    }

    fn cached_token(&self) -> Option<AsciiMetadataValue> {
        self.inner
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Auth.Authenticate with failover (a separate loop: `unary` needs the token it produces).
    async fn authenticate(
        &self,
        credentials: &Credentials,
        deadline: Instant,
    ) -> Result<AsciiMetadataValue, Error> {
        let req = AuthenticateRequest {
            name: credentials.user().to_owned(),
            password: credentials.password().to_owned(),
        };
        let mut backoff = Backoff::new(self.inner.endpoints.len());
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout(self.timeout));
            }
            let attempt = remaining.min(self.inner.attempt_timeout);
            let (index, channel) = self.current();
            let mut request = Request::new(req.clone());
            decorate(&mut request, None);
            request.set_timeout(attempt);
            let mut auth = AuthClient::new(channel);
            let call = auth.authenticate(request);
            let status = match tokio::time::timeout(attempt, call).await {
                Ok(Ok(response)) => {
                    let token = response.into_inner().token;
                    return MetadataValue::try_from(token)
                        .map_err(|_| Error::AuthFailed("etcd returned an unusable token".into()));
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("authenticate attempt timed out"),
            };
            match retry_policy(&status) {
                Retry::Safe | Retry::ReadsOnly => {
                    self.failed(index);
                    backoff.pause(deadline).await;
                }
                _ => return Err(Error::from_status(&status)),
            }
        }
    }
}

/// Adds the auth token and etcd's `hasleader` requirement to a request.
pub(crate) fn decorate<T>(request: &mut Request<T>, token: Option<&AsciiMetadataValue>) {
    let metadata = request.metadata_mut();
    metadata.insert("hasleader", AsciiMetadataValue::from_static("true"));
    if let Some(token) = token {
        metadata.insert("token", token.clone());
    }
}

/// Pauses after every endpoint has failed once in a row, doubling up to [`MAX_BACKOFF`].
pub(crate) struct Backoff {
    endpoints: usize,
    failures: usize,
    pause: Duration,
}

impl Backoff {
    pub(crate) fn new(endpoints: usize) -> Self {
        Self {
            endpoints: endpoints.max(1),
            failures: 0,
            pause: FIRST_BACKOFF,
        }
    }

    /// Records a failure; sleeps (never past `deadline`) when a round of endpoints is done.
    pub(crate) async fn pause(&mut self, deadline: Instant) {
        self.failures += 1;
        if self.failures.is_multiple_of(self.endpoints) {
            tokio::time::sleep_until(deadline.min(Instant::now() + self.pause)).await;
            self.pause = (self.pause * 2).min(MAX_BACKOFF);
        }
    }
}

fn tls_config(tls: Option<&TlsConfig>) -> Result<ClientTlsConfig, Error> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "cannot read etcd TLS {what} {}: {e}",
                path.display()
            ))
        })
    };
    let Some(tls) = tls else {
        return Ok(ClientTlsConfig::new().with_native_roots());
    };
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(path) => config.ca_certificate(Certificate::from_pem(read(path, "CA file")?)),
        None => config.with_native_roots(),
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read(cert, "certificate file")?,
                read(key, "key file")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Config(
                "etcd TLS cert_file and key_file go together".into(),
            ));
        }
    }
    if let Some(name) = &tls.domain_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

fn channel(url: &str, config: &ClientConfig, tls: &ClientTlsConfig) -> Result<Channel, Error> {
    let bad = |why: String| Error::Config(format!("etcd endpoint {url:?}: {why}"));
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        return Err(bad("must start with http:// or https://".into()));
    }
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(config.keep_alive_timeout)
        .keep_alive_while_idle(false);
    if https {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(endpoint.connect_lazy())
}
