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
use super::{Authenticator, Caller, Refusal};
use crate::daemon::connections::ConnInfo;
use crate::lifecycle::PoolError;
use crate::metrics::Metrics;

/// The layer: [`Server::layer`](tonic::transport::Server::layer), inside `TrackCalls` (whose
/// peer address it logs).
#[derive(Debug, Clone)]
pub struct Authenticate {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `None`: no `[auth]`, every call is [`Caller::unrestricted`].
    auth: Option<Authenticator>,
    anonymous: Arc<Caller>,
    metrics: Arc<Metrics>,
    log: RefusalLog,
}

impl Authenticate {
    pub fn new(auth: Option<Authenticator>, metrics: Arc<Metrics>) -> Authenticate {
        Authenticate {
            shared: Arc::new(Shared {
                auth,
                anonymous: Arc::new(Caller::unrestricted()),
                metrics,
                log: RefusalLog::default(),
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
                match auth.authenticate(
                    header.map(http::HeaderValue::as_bytes),
                    client.as_deref().map(Vec::as_slice),
                ) {
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
