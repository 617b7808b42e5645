//! Forwarding: any replica accepts any call, and a call about an app this replica does not lead
//! goes to the app's leader. One tower layer does it for every method, with no code per RPC.
//!
//! For a method of `BindingService`, `PoolService`, `ReconcileService` or `CallService` (health,
//! reflection, `StoreService` and `WatchService` always stay local), the layer reads the first
//! gRPC frame of the request body and finds in it the request's `app` field, or its
//! `binding_id` when it names no app (UpdateBinding; Unbind and GetBinding by id), by field
//! number, from a table built at start-up from the API's descriptors (`methods`). The bytes
//! read are put back in front of the body, so the request goes on unchanged. A
//! [`Router`] then says where the call goes:
//!
//! - [`Route::Local`]: to this replica's handlers. So does every call the layer cannot look
//!   into: a compressed or malformed message (the handler answers INVALID_ARGUMENT), one over
//!   the size limit, a request that names neither an app nor a binding (ListApps, reconciliation
//!   runs by id, a Reconcile of all apps) unless the metadata `xpool-app` names its app
//!   ([`APP_HINT`]: `xpool reconcile --app` follows its run on the app's leader that way).
//! - [`Route::Forward`]: the same HTTP/2 request (path, metadata including `authorization`,
//!   body) to the leader, over one cached connection per address, with `grpc-timeout` set to
//!   what is left of the caller's deadline (less a margin for the way back: a tenth, at most
//!   50 ms) and `xpool-forwarded-by: <this node id>` added. The leader's answer (headers,
//!   messages, trailers — a stream too) comes back as it is. A route to this replica's own
//!   node id is served locally.
//! - [`Route::Unavailable`]: `UNAVAILABLE` `LEADER_UNAVAILABLE` with the router's reason.
//!
//! A call is a [`CallKind::Write`] for the methods that change state (`methods::WRITES`), else
//! a [`CallKind::Read`] — or a [`CallKind::ConsistentRead`] when the caller sends the metadata
//! `xpool-consistent: true` (the router serves plain reads from the local copy and sends
//! consistent ones to the leader), or for the reads only the leader can answer, the app's
//! live pool (`methods::LEADER_READS`: GetPoolStats, ListNumbers).
//!
//! A call forwarded once is never forwarded again: a request carrying `xpool-forwarded-by` whose
//! route is not local is answered `UNAVAILABLE` (leadership moved while it travelled; the
//! caller retries), so a disagreement between two replicas' views cannot loop. A leader that
//! cannot be reached, or does not answer before the caller's deadline, is `UNAVAILABLE`
//! `LEADER_UNAVAILABLE` naming it: a write sent to it may have been carried out, and a retried
//! Bind with the same `request_id` is idempotent on whichever replica leads by then.

mod body;
mod deadline;
mod methods;
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tower_layer::Layer;
use tower_service::Service;

use crate::lifecycle::{PoolError, Reason, quoted};
use crate::metrics::Metrics;
use deadline::{GRPC_TIMEOUT, encode_timeout, grpc_timeout, hop_margin};
use methods::{Method, Methods};
use wire::FirstFrame;

/// Metadata a replica adds to a call it forwards: its node id.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("xpool-forwarded-by");

/// Metadata a caller sends (`true`) to have a read answered by the app's leader.
pub const CONSISTENT: HeaderName = HeaderName::from_static("xpool-consistent");

/// The metadata that names the app of a call whose request names none, such as
/// GetReconcileRun and WatchReconcileRun by run id: it is routed as if its request named
/// that app (the app named in the request, when there is one, wins).
pub const APP_HINT: HeaderName = HeaderName::from_static("xpool-app");

/// How long connecting to a leader may take (TCP and TLS) before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// HTTP/2 pings on a connection to a leader: a leader that stops answering (a stopped process,
/// a lost network) fails its calls after about interval + timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request message the layer reads to find its target, unless set: tonic's default
/// decoding limit.
const DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Where a call goes. Implemented by the daemon's cluster state.
pub trait Router: Send + Sync + std::fmt::Debug + 'static {
    /// Route a call about `target` (an app name, or a binding id whose app the router looks
    /// up in its local copy).
    fn route(&self, target: &Target<'_>, kind: CallKind) -> Route;
}

/// What a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The request's `app`.
    App(&'a str),
    /// The request's `binding_id`, when it names no app.
    Binding(&'a str),
}

/// What a call does, for the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Changes state: only the app's leader can carry it out.
    Write,
    /// Reads, and may be served from the local copy.
    Read,
    /// Reads, and the caller asked (`xpool-consistent: true`) for the leader's answer.
    ConsistentRead,
}

/// Where the router sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This replica serves it.
    Local,
    /// The replica `node_id` at `addr` (`http://host:port` or `https://host:port`) serves it.
    Forward { node_id: String, addr: String },
    /// Nobody can serve it now; the text says why, for the caller.
    Unavailable(String),
}

/// The layer: [`Server::layer(Forward::new(…))`](tonic::transport::Server::layer), inside
/// `Authenticate` (a caller the follower refuses is not sent on) and `DecodeErrors`.
#[derive(Debug, Clone)]
pub struct Forward {
    router: Arc<dyn Router>,
    /// This replica's node id: what `xpool-forwarded-by` says.
    node_id: String,
    methods: Arc<Methods>,
    client_tls: Option<ClientTlsConfig>,
    max_message: usize,
    /// Counts the calls for apps another replica leads (`xpool_forwarded_calls_total`).
    metrics: Option<Arc<Metrics>>,
    /// One lazily connected channel per leader address, kept for the life of the layer (the
    /// addresses are the cluster's few replicas); a channel reconnects by itself.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Forward {
    /// Routes calls with `router`; `node_id` is this replica's; `client_tls` is used for
    /// `https://` leader addresses. Reads requests of up to 4 MiB to find their target (see
    /// [`Forward::max_message_bytes`]).
    pub fn new(
        router: Arc<dyn Router>,
        node_id: String,
        client_tls: Option<ClientTlsConfig>,
    ) -> Self {
        let methods = Methods::from_descriptors(crate::grpc::pb::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|e| {
                // The set is compiled in, and a test decodes it.
                tracing::error!(error = %e, "the API's descriptors do not decode: nothing is forwarded");
                Methods::default()
            });
        Forward {
            router,
            node_id,
            methods: Arc::new(methods),
            client_tls,
            max_message: DEFAULT_MAX_MESSAGE,
            metrics: None,
            channels: Arc::default(),
        }
    }

    /// A layer that forwards nothing (a single node): every call goes to this replica's
    /// handlers, at the cost of one table lookup.
    pub fn off() -> Self {
        Forward {
            router: Arc::new(AllLocal),
            node_id: String::new(),
            methods: Arc::default(),
            client_tls: None,
            max_message: DEFAULT_MAX_MESSAGE,
            metrics: None,
            channels: Arc::default(),
        }
    }

    /// Reads request messages of up to `max` bytes to find their target. Set it to the
    /// server's own limit (`server.max_message_bytes`), so that every message a handler
    /// accepts is routed; a larger one is served locally (and refused there).
    pub fn max_message_bytes(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// Counts, in `metrics`, what came of each call for an app another replica leads.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, outcome: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.forwarded_call(outcome);
        }
    }
}

/// The router of [`Forward::off`].
#[derive(Debug)]
struct AllLocal;

impl Router for AllLocal {
    fn route(&self, _: &Target<'_>, _: CallKind) -> Route {
        Route::Local
    }
}

impl<S> Layer<S> for Forward {
    type Service = Forwarded<S>;

    fn layer(&self, inner: S) -> Forwarded<S> {
        Forwarded {
            inner,
            forward: Arc::new(self.clone()),
        }
    }
}

/// The routes, behind forwarding.
#[derive(Debug, Clone)]
pub struct Forwarded<S> {
    inner: S,
    forward: Arc<Forward>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Forwarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Some(method) = self.forward.methods.get(req.uri().path()).copied() else {
            return Box::pin(self.inner.call(req));
        };
        // The service that was made ready goes with the call; a clone stays for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let forward = Arc::clone(&self.forward);
        Box::pin(forward.route(method, req, inner))
    }
}

impl Forward {
    async fn route<S>(
        self: Arc<Self>,
        method: Method,
        req: http::Request<Body>,
        mut inner: S,
    ) -> Result<http::Response<Body>, S::Error>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>>,
    {
        let received = Instant::now();
        let (parts, body) = req.into_parts();
        let (head, body) = body::read_first_frame(body, self.max_message).await;
        let req = http::Request::from_parts(parts, Body::new(body));
        let FirstFrame::Message(message) = wire::first_frame(&head) else {
            return inner.call(req).await;
        };
        let Some(fields) = wire::strings(message, method.app, method.binding_id) else {
            return inner.call(req).await;
        };
        let hinted = req
            .headers()
            .get(APP_HINT)
            .and_then(|v| v.to_str().ok())
            .filter(|app| !app.is_empty())
            .map(str::to_owned);
        let target = match (fields.a, fields.b, hinted.as_deref()) {
            (Some(app), _, _) if !app.is_empty() => Target::App(app),
            (_, Some(binding), _) if !binding.is_empty() => Target::Binding(binding),
            (_, _, Some(app)) => Target::App(app),
            _ => return inner.call(req).await,
        };
        let kind = match method.kind {
            CallKind::Read if is_true(req.headers().get(CONSISTENT)) => CallKind::ConsistentRead,
            kind => kind,
        };
        let route = self.router.route(&target, kind);
        let forwarded_by = req
            .headers()
            .get(FORWARDED_BY)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match (route, forwarded_by) {
            (Route::Local, _) => inner.call(req).await,
            (Route::Forward { node_id, .. }, _) if node_id == self.node_id => inner.call(req).await,
            (route, Some(by)) => {
                self.count("refused_loop");
                Ok(refuse_again(&target, &by, &route).into_http())
            }
            (Route::Unavailable(why), None) => {
                self.count("no_leader");
                Ok(unavailable(&target, why, None).into_http())
            }
            (Route::Forward { node_id, addr }, None) => {
                let deadline = grpc_timeout(req.headers()).map(|t| received + t);
                Ok(self.forward(req, deadline, &target, &node_id, &addr).await)
            }
        }
    }

    /// Sends `req` to the leader `node_id` at `addr`, and answers its response, or
    /// `UNAVAILABLE` when it cannot be reached or does not answer by `deadline`.
    async fn forward(
        &self,
        req: http::Request<Body>,
        deadline: Option<Instant>,
        target: &Target<'_>,
        node_id: &str,
        addr: &str,
    ) -> http::Response<Body> {
        let (mut parts, body) = req.into_parts();
        let caller = parts.extensions.get::<Arc<crate::auth::Caller>>().cloned();
        parts.extensions = http::Extensions::new();
        parts.version = http::Version::HTTP_2;
        let headers = &mut parts.headers;
        for hop in [
            http::header::CONNECTION,
            http::header::TRANSFER_ENCODING,
            http::header::UPGRADE,
        ] {
            headers.remove(hop);
        }
        headers.remove(GRPC_TIMEOUT);
        // The leader gets what is left less a margin, and this replica waits for it until
        // half the margin is left: the leader's own answer at its deadline (a Bind's
        // OUTCOME_UNKNOWN) travels back in time, and so does ours when it never answers.
        let mut wait_until = None;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let margin = hop_margin(left);
            if left.is_zero() {
                self.count("timed_out");
                return Status::deadline_exceeded(
                    "the call's deadline passed before it was sent to the app's leader",
                )
                .into_http();
            }
            headers.insert(GRPC_TIMEOUT, encode_timeout(left - margin));
            wait_until = Some(deadline - margin / 2);
        }
        // A caller known by its client certificate: the leader sees this replica's, so it is
        // told whom this replica authenticated (and trusts that only from a replica).
        headers.remove(crate::auth::FORWARDED_CLIENT);
        if !headers.contains_key(http::header::AUTHORIZATION)
            && let Some(caller) = caller.filter(|caller| caller.by_certificate())
            && let Ok(name) = HeaderValue::from_str(caller.name())
        {
            headers.insert(crate::auth::FORWARDED_CLIENT, name);
        }
        // Config validation keeps node ids to plain characters; a hop without the header
        // could be forwarded once more.
        if let Ok(me) = HeaderValue::from_str(&self.node_id) {
            headers.insert(FORWARDED_BY, me);
        }
        let req = http::Request::from_parts(parts, body);

        let sent = async {
            let mut channel = self.channel(addr)?;
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(req).await
        };
        let answered = match wait_until {
            None => Ok(sent.await),
            Some(until) => tokio::time::timeout_at(until.into(), sent).await,
        };
        let error: Box<dyn std::error::Error + Send + Sync> = match answered {
            Ok(Ok(response)) => {
                self.count("forwarded");
                return response;
            }
            Ok(Err(e)) => e.into(),
            Err(_) => tonic::TimeoutExpired(()).into(),
        };
        // The channel ends a call at its `grpc-timeout` by itself (before `wait_until`).
        let why = if is_timeout(&*error) {
            self.count("timed_out");
            tracing::debug!(leader = node_id, addr, "a forwarded call timed out");
            format!(
                "this replica does not lead app {}, and its leader {node_id} did not answer \
                 before the call's deadline",
                app_of(target),
            )
        } else {
            self.count("unreachable");
            tracing::debug!(leader = node_id, addr, error = %error, "a forwarded call failed");
            format!(
                "this replica does not lead app {}, and its leader {node_id} could not be \
                 reached or failed the call",
                app_of(target),
            )
        };
        unavailable(target, why, Some(node_id)).into_http()
    }

    /// The channel to `addr`, made (connecting lazily) on first use.
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let mut endpoint = Endpoint::from_shared(addr.to_owned())?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        if addr.starts_with("https://") {
            if self.client_tls.is_none() {
                tracing::warn!(
                    addr,
                    "a leader's address is https://, but forwarding has no client TLS config: \
                     its certificate cannot be verified and calls to it fail"
                );
            }
            endpoint = endpoint.tls_config(self.client_tls.clone().unwrap_or_default())?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Whether `error` is (or was caused by) a deadline that passed.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn is_true(value: Option<&HeaderValue>) -> bool {
    value.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
}

/// The app a target names, for messages: quoted, or "of binding …".
fn app_of(target: &Target<'_>) -> String {
    match target {
        Target::App(app) => quoted(app),
        Target::Binding(id) => format!("of binding {}", quoted(id)),
    }
}

/// `UNAVAILABLE` `LEADER_UNAVAILABLE`, with the app (or binding) and the leader, when known.
fn unavailable(target: &Target<'_>, why: String, leader: Option<&str>) -> Status {
    let mut error = PoolError::refused(Reason::LeaderUnavailable, why);
    error = match target {
        Target::App(app) => error.with("app", app),
        Target::Binding(id) => error.with("binding_id", id),
    };
    if let Some(leader) = leader {
        error = error.with("leader", leader);
    }
    Status::from(error)
}

/// The answer to a forwarded call that this replica would forward again.
fn refuse_again(target: &Target<'_>, by: &str, route: &Route) -> Status {
    let (leader, whom) = match route {
        Route::Forward { node_id, .. } => (
            Some(node_id.as_str()),
            format!(" (it sees {node_id} as the leader)"),
        ),
        Route::Unavailable(why) => (None, format!(" ({why})")),
        Route::Local => (None, String::new()),
    };
    let why = format!(
        "forwarded by {by}, but this replica does not lead app {} either{whom}: leadership \
         is moving",
        app_of(target),
    );
    unavailable(target, why, leader)
}

#[cfg(test)]
mod loopback_tests;
#[cfg(test)]
mod tests;
