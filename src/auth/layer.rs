//! The tower layer that authenticates every gRPC call before it is decoded, and counts and
//! logs (rate-limited) every refusal — its own, and the `PERMISSION_DENIED` the handlers give.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower_layer::Layer;
use tower_service::Service;

use super::refusals::RefusalLog;
use super::{Authenticator, Caller, FORWARDED_CLIENT, Refusal};
use crate::daemon::connections::ConnInfo;
use crate::lifecycle::PoolError;
use crate::metrics::Metrics;

/// The layer: [`Server::layer`](tonic::transport::Server::layer), inside `TrackCalls` (whose
/// peer address it logs).
#[derive(Debug, Clone)]
pub struct Authenticate {
    shared: Arc<Shared>,
}

/// Cluster mode: whether a verified client certificate with these names is another replica's
/// (see [`Authenticate::new`]).
pub type Forwarders = Arc<dyn Fn(&[String]) -> bool + Send + Sync>;

struct Shared {
    /// `None`: no `[auth]`, every call is [`Caller::unrestricted`].
    auth: Option<Authenticator>,
    anonymous: Arc<Caller>,
    metrics: Arc<Metrics>,
    log: RefusalLog,
    /// `None` on a single node: [`FORWARDED_CLIENT`] is refused from anyone.
    forwarders: Option<Forwarders>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("auth", &self.auth)
            .field("forwarders", &self.forwarders.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticate {
    /// The layer over `auth`. In cluster mode, `forwarders`: a call that carries
    /// [`FORWARDED_CLIENT`] and no token is its caller's when it comes from a peer whose
    /// verified certificate `forwarders` says is a replica's (that replica authenticated the
    /// caller by its certificate, then forwarded the call).
    pub fn new(
        auth: Option<Authenticator>,
        metrics: Arc<Metrics>,
        forwarders: Option<Forwarders>,
    ) -> Authenticate {
        Authenticate {
            shared: Arc::new(Shared {
                auth,
                anonymous: Arc::new(Caller::unrestricted()),
                metrics,
                log: RefusalLog::default(),
                forwarders,
            }),
        }
    }
}

impl<S> Layer<S> for Authenticate {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The routes, behind authentication.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .map(|addr| addr.ip());
        let caller = match &shared.auth {
            None => Arc::clone(&shared.anonymous),
            Some(auth) if auth.is_open(req.uri().path()) => Arc::clone(&shared.anonymous),
            Some(auth) => {
                let header = req.headers().get(http::header::AUTHORIZATION);
                let client = req
                    .extensions()
                    .get::<ConnInfo>()
                    .and_then(|info| info.client.clone());
                let forwarded = req.headers().get(FORWARDED_CLIENT);
                let authenticated = match forwarded {
                    // A token authenticates by itself; the header is not looked at.
                    Some(name) if header.is_none() => shared.forwarded_client(
                        auth,
                        name.as_bytes(),
                        client.as_deref().map(Vec::as_slice),
                    ),
                    _ => auth.authenticate(
                        header.map(http::HeaderValue::as_bytes),
                        client.as_deref().map(Vec::as_slice),
                    ),
                };
                match authenticated {
                    Ok(caller) => caller,
                    Err(refusal) => {
                        let caller = match &refusal {
                            Refusal::RateLimited { caller, .. } => caller.clone(),
                            _ => String::new(),
                        };
                        shared.refused(peer, refusal.label(), &caller, req.uri().path());
                        let status = Status::from(PoolError::from(refusal));
                        return Box::pin(async move { Ok(status.into_http()) });
                    }
                }
            }
        };
        req.extensions_mut().insert(Arc::clone(&caller));
        let path = req.uri().path().to_owned();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            // A handler's PERMISSION_DENIED comes back as a trailers-only response.
            let denied = response
                .headers()
                .get("grpc-status")
                .is_some_and(|code| code.as_bytes() == b"7");
            if denied {
                shared.refused(peer, "scope", caller.name(), &path);
            }
            Ok(response)
        })
    }
}

impl Shared {
    /// The caller `name` that another replica forwarded a call for, when the peer's verified
    /// certificate (`client` names) is a replica's.
    fn forwarded_client(
        &self,
        auth: &Authenticator,
        name: &[u8],
        client: Option<&[String]>,
    ) -> Result<Arc<Caller>, Refusal> {
        let from_replica = self
            .forwarders
            .as_ref()
            .zip(client)
            .is_some_and(|(is_replica, names)| is_replica(names));
        if !from_replica {
            return Err(Refusal::UntrustedForwarder);
        }
        let name = std::str::from_utf8(name).map_err(|_| Refusal::UnknownClient("?".into()))?;
        auth.client_named(name)
    }

    /// Counts and (rate-limited) logs a refusal; `token_name` is empty when no token was
    /// recognised. Never the token itself.
    fn refused(&self, peer: Option<IpAddr>, reason: &'static str, token_name: &str, path: &str) {
        self.metrics.auth_refusal(reason);
        if let Some(count) = self.log.note(peer, reason, token_name, Instant::now()) {
            tracing::warn!(
                peer = ?peer,
                reason,
                token_name,
                method = path,
                refused_since_last_line = count,
                "call refused (logged at most once a minute per caller and reason)"
            );
        }
    }
}
