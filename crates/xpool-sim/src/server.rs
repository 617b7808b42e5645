//! The request pipeline: route, IP blacklist, authentication, faults, app checks, body, business.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use super::auth;
use super::axe::AxeEndpoint;
use super::config::SimAppConfig;
use super::controls;
use super::faults::Held;
use super::params::Params;
use super::reply::{Fail, Outcome, render};
use super::state::{App, AppState, Bindings, Crud, Ctx, Sim, lock};
use xpool_platform::{Mode, codes, paths};

/// A binding endpoint of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Axb,
    Ax,
    AxCallee,
    Axe,
    AxeV2,
    AxeCount,
    Axyb,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            paths::AXB => Endpoint::Axb,
            paths::AX => Endpoint::Ax,
            paths::AX_CALLEE => Endpoint::AxCallee,
            paths::AXE => Endpoint::Axe,
            paths::AXE_V2 => Endpoint::AxeV2,
            paths::AXE_COUNT => Endpoint::AxeCount,
            paths::AXYB => Endpoint::Axyb,
            _ => return None,
        })
    }

    fn mode(self) -> Mode {
        match self {
            Endpoint::Axb => Mode::Axb,
            Endpoint::Ax | Endpoint::AxCallee => Mode::Ax,
            Endpoint::Axe | Endpoint::AxeV2 | Endpoint::AxeCount => Mode::Axe,
            Endpoint::Axyb => Mode::Axyb,
        }
    }

    fn methods(self) -> &'static [Method] {
        const ALL: &[Method] = &[Method::GET, Method::POST, Method::PUT, Method::DELETE];
        match self {
            Endpoint::Axb | Endpoint::Ax | Endpoint::Axe => ALL,
            Endpoint::AxCallee => &[Method::PUT],
            Endpoint::AxeV2 | Endpoint::AxeCount => &[Method::GET],
            Endpoint::Axyb => &[Method::GET, Method::POST, Method::DELETE],
        }
    }
}

/// The simulator's router: one fallback handler that routes by path itself.
pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new().fallback(handle).with_state(sim)
}

/// Plain-text 404, as the real gateway answers unknown paths.
pub(crate) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

/// 405 with the `Allow` header.
pub(crate) fn method_not_allowed(allowed: &[Method]) -> Response {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, allow)],
        "Method Not Allowed",
    )
        .into_response()
}

async fn handle(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path();
    if path == "/sim" || path.starts_with("/sim/") {
        return if sim.config.controls {
            controls::handle(&sim, req).await
        } else {
            not_found()
        };
    }
    let Some(endpoint) = Endpoint::from_path(path) else {
        return not_found();
    };
    if !endpoint.methods().contains(req.method()) {
        return method_not_allowed(endpoint.methods());
    }
    let ip = peer.ip();
    if sim.guard.is_banned(ip, Instant::now()) {
        return render(Err(Fail::new(codes::IP_BLACKLISTED))).1;
    }
    let app = match authenticate(&sim, req.headers()) {
        Ok(app) => app,
        Err((fail, named)) => {
            sim.guard.record_failure(ip, Instant::now());
            let (code, response) = render(Err(fail));
            // A failed authentication still counts for the app it named, so tests can see
            // whether a client kept knocking with a bad secret.
            if let Some(app) = named {
                lock(&app.stats).count(code);
            }
            return response;
        }
    };
    match carry_out_or_hold(&sim, &app, endpoint, req).await {
        Some(response) => response,
        None => {
            // Never answered: held until shutdown, then the connection is dropped.
            sim.cancel.cancelled().await;
            Response::new(Body::new(Lost))
        }
    }
}

/// Carries out a request at once, or, while its app stalls (`hang_ms`), holds it until the
/// stall ends: read in full now, carried out then even if its client has given up meanwhile,
/// as a stopped platform process that resumes would. `None`: the request gets no answer.
async fn carry_out_or_hold(
    sim: &Arc<Sim>,
    app: &Arc<App>,
    endpoint: Endpoint,
    req: Request,
) -> Option<Response> {
    if !lock(&app.faults).hung(Instant::now()) {
        return carry_out(sim, app, endpoint, req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, sim.config.max_body_bytes).await else {
        let fail = Fail::invalid("body").with_status(StatusCode::PAYLOAD_TOO_LARGE);
        return Some(render(Err(fail)).1);
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    let (answer, answered) = tokio::sync::oneshot::channel();
    let work = {
        let (sim, app) = (Arc::clone(sim), Arc::clone(app));
        Held::new(async move {
            let _ = answer.send(carry_out(&sim, &app, endpoint, req).await);
        })
    };
    let held = lock(&app.faults).hold(work, Instant::now());
    if let Err(work) = held {
        // The stall ended while the body was read.
        work.run().await;
    }
    tokio::select! {
        answer = answered => answer.ok().flatten(),
        () = sim.cancel.cancelled() => None,
    }
}

/// Carries out one request and counts it: its answer, or `None` when the lost-response fault
/// takes the answer of a committed change.
async fn carry_out(sim: &Sim, app: &App, endpoint: Endpoint, req: Request) -> Option<Response> {
    let changes = req.method() != Method::GET;
    let outcome = process(sim, app, endpoint, req).await;
    if changes && outcome.is_ok() && lock(&app.faults).lose_response() {
        lock(&app.stats).count("lost");
        return None;
    }
    let (code, response) = render(outcome);
    lock(&app.stats).count(code);
    Some(response)
}

/// Parses the auth headers, finds the app, verifies the digest against real time and refuses a
/// replayed nonce. A failure carries the app the headers named, when they named a known one.
fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<Arc<App>, (Fail, Option<Arc<App>>)> {
    let token = auth::parse_headers(headers).map_err(|fail| (fail, None))?;
    let app = sim
        .apps
        .get(&token.username)
        .ok_or_else(|| (Fail::new(codes::INVALID_APP_KEY), None))?;
    let skew = sim.config.auth.max_clock_skew_seconds;
    let now = OffsetDateTime::now_utc();
    let created = auth::verify(&token, &app.config.app_secret, now, skew)
        .map_err(|fail| (fail, Some(Arc::clone(app))))?;
    if sim.config.auth.reject_replayed_nonces
        && !sim
            .nonces
            .first_use(&token.username, &token.nonce, created, now)
    {
        return Err((Fail::new(codes::TIME_OUT_LIMIT), Some(Arc::clone(app))));
    }
    Ok(Arc::clone(app))
}

/// Everything after authentication: faults, app checks, body, business logic.
async fn process(sim: &Sim, app: &App, endpoint: Endpoint, req: Request) -> Outcome {
    let latency = lock(&app.faults).faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    lock(&app.faults).check(Instant::now())?;
    if app.config.frozen {
        return Err(Fail::new(codes::SUBSCRIBER_FROZEN));
    }
    if app.config.mode != endpoint.mode() {
        return Err(Fail::new(codes::API_NOT_ALLOWED));
    }
    let (parts, body) = req.into_parts();
    let query = Params::from_query(&parts.uri);
    let params = if parts.method == Method::POST || parts.method == Method::PUT {
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"));
        if !json {
            return Err(Fail::invalid("Content-Type"));
        }
        let bytes = axum::body::to_bytes(body, sim.config.max_body_bytes)
            .await
            .map_err(|_| Fail::invalid("body").with_status(StatusCode::PAYLOAD_TOO_LARGE))?;
        Params::from_json(&bytes)?
    } else {
        query.clone()?
    };
    if endpoint == Endpoint::Axyb && query?.str("app_key")?.as_deref() != Some(&app.config.app_key)
    {
        return Err(Fail::invalid("app_key"));
    }
    let now = sim.clock.now();
    let mut state = lock(&app.state);
    state.purge(now);
    dispatch(
        &mut state,
        &app.config,
        endpoint,
        &parts.method,
        &params,
        now,
    )
}

/// Runs one request against an app's (purged) state.
pub(crate) fn dispatch(
    state: &mut AppState,
    app: &SimAppConfig,
    endpoint: Endpoint,
    method: &Method,
    params: &Params,
    now: OffsetDateTime,
) -> Outcome {
    let AppState { numbers, bindings } = state;
    let ctx = Ctx { app, numbers, now };
    match (bindings, endpoint) {
        (Bindings::Axb(s), Endpoint::Axb) => s.handle(ctx, method, params),
        (Bindings::Ax(s), Endpoint::Ax) => s.handle(ctx, method, params),
        (Bindings::Ax(s), Endpoint::AxCallee) => s.set_callee(ctx, params),
        (Bindings::Axe(s), Endpoint::Axe) => s.handle(ctx, AxeEndpoint::V1, method, params),
        (Bindings::Axe(s), Endpoint::AxeV2) => s.handle(ctx, AxeEndpoint::V2, method, params),
        (Bindings::Axe(s), Endpoint::AxeCount) => s.handle(ctx, AxeEndpoint::Count, method, params),
        (Bindings::Axyb(s), Endpoint::Axyb) => s.handle(ctx, method, params),
        _ => Err(Fail::new(codes::API_NOT_ALLOWED)),
    }
}

/// The body of a lost response: it fails at once, so the connection is dropped unanswered.
#[derive(Debug)]
struct Lost;

impl axum::body::HttpBody for Lost {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "response lost by fault injection",
        ))))
    }
}
