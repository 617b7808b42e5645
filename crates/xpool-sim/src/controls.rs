//! The unauthenticated test controls under `/sim/`: bindings, clock, faults, stats, numbers, and
//! what the platform pushes (calls, SMS, number status, the record of pushes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::config::SimNumber;
use super::faults::{Faults, release};
use super::server::{method_not_allowed, not_found};
use super::state::{App, Sim, lock, rfc3339};
use super::{call, numstatus, sms};
use xpool_platform::number::is_global;

/// A control request that cannot be served: HTTP status and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ControlError {
    status: StatusCode,
    message: String,
}

pub(crate) fn bad(message: impl Into<String>) -> ControlError {
    ControlError {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

pub(crate) type Answer = Result<Value, ControlError>;

/// Serves one `/sim/*` request.
pub(crate) async fn handle(sim: &Sim, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let get = req.method() == Method::GET;
    let allowed: &[Method] = match path.as_str() {
        "/sim/bindings" | "/sim/stats" | "/sim/pushes" => &[Method::GET],
        "/sim/clock" | "/sim/faults" => &[Method::GET, Method::POST],
        "/sim/numbers" | "/sim/call" | "/sim/sms" | "/sim/numstatus" => &[Method::POST],
        _ => return not_found(),
    };
    if !allowed.contains(req.method()) {
        return method_not_allowed(allowed);
    }
    let query = query_map(&req);
    let body = if get {
        Ok(Map::new())
    } else {
        read_body(sim, req).await
    };
    let answer = match (path.as_str(), get) {
        ("/sim/bindings", _) => bindings(sim, &query),
        ("/sim/stats", _) => app(sim, &query).and_then(|app| to_json(&*lock(&app.stats))),
        ("/sim/clock", true) => Ok(json!({"now": rfc3339(sim.clock.now())})),
        ("/sim/clock", false) => async { advance_clock(sim, &body?).await }.await,
        ("/sim/faults", true) => {
            app(sim, &query).and_then(|app| to_json(&lock(&app.faults).faults))
        }
        ("/sim/faults", false) => body.and_then(|b| set_faults(sim, &b)),
        ("/sim/pushes", _) => pushes(sim, &query),
        ("/sim/call", _) => async { call::play_call(sim, &body?).await }.await,
        ("/sim/sms", _) => async { sms::send(sim, &body?).await }.await,
        ("/sim/numstatus", _) => async { numstatus::change(sim, &body?).await }.await,
        _ => body.and_then(|b| change_numbers(sim, &b)),
    };
    match answer {
        Ok(value) => Json(value).into_response(),
        Err(e) => (e.status, Json(json!({"error": e.message}))).into_response(),
    }
}

fn query_map(req: &Request) -> Map<String, Value> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

async fn read_body(sim: &Sim, req: Request) -> Result<Map<String, Value>, ControlError> {
    let bytes = axum::body::to_bytes(req.into_body(), sim.config.max_body_bytes)
        .await
        .map_err(|_| bad("body is too large or unreadable"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad("body must be a JSON object")),
    }
}

/// The app named by `app_key`; 404 when unknown.
pub(crate) fn app<'a>(
    sim: &'a Sim,
    map: &Map<String, Value>,
) -> Result<&'a Arc<App>, ControlError> {
    let key = match map.get("app_key") {
        Some(Value::String(k)) if !k.is_empty() => k,
        _ => return Err(bad("app_key is required (a string)")),
    };
    sim.apps.get(key).ok_or_else(|| ControlError {
        status: StatusCode::NOT_FOUND,
        message: format!("unknown app_key {key:?}"),
    })
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Answer {
    serde_json::to_value(value).map_err(|e| ControlError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: e.to_string(),
    })
}

pub(crate) fn only_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), ControlError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("unknown field {k:?}"))),
        None => Ok(()),
    }
}

/// An optional string field; a JSON number is taken as its text.
pub(crate) fn opt_str(
    map: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, ControlError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad(format!("{name} must be a string"))),
    }
}

/// A required number in global format (`+` and digits).
pub(crate) fn global_number(map: &Map<String, Value>, name: &str) -> Result<String, ControlError> {
    opt_str(map, name)?.filter(|n| is_global(n)).ok_or_else(|| {
        bad(format!(
            "{name} must be a number in global format, as +8613800000001"
        ))
    })
}

fn bindings(sim: &Sim, query: &Map<String, Value>) -> Answer {
    let app = app(sim, query)?;
    let mut state = lock(&app.state);
    state.purge(sim.clock.now());
    Ok(json!({"bindings": to_json(&state.list())?}))
}

/// Moves the clock, then makes every push due by the new time before answering.
async fn advance_clock(sim: &Sim, body: &Map<String, Value>) -> Answer {
    only_fields(body, &["advance_seconds"])?;
    let seconds = body
        .get("advance_seconds")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("advance_seconds must be a non-negative integer"))?;
    sim.clock
        .advance(seconds)
        .ok_or_else(|| bad("advance_seconds moves the clock past year 9999"))?;
    sim.pushes.clock_moved();
    let pushes = sim.pushes.round(sim).await;
    Ok(json!({"now": rfc3339(sim.clock.now()), "pushes": pushes}))
}

/// Every push to an app, oldest first, and how many of its CDRs wait for their batch.
fn pushes(sim: &Sim, query: &Map<String, Value>) -> Answer {
    let app = app(sim, query)?;
    let (pushes, pending) = sim.pushes.list(&app.config.app_key);
    Ok(json!({"pushes": pushes, "pendingCdrs": pending}))
}

fn set_faults(sim: &Sim, body: &Map<String, Value>) -> Answer {
    only_fields(
        body,
        &[
            "app_key",
            "latency_ms",
            "hang_ms",
            "error_rate",
            "flow_control_rate",
            "lost_response_rate",
            "rps_limit",
        ],
    )?;
    let app = app(sim, body)?;
    let rate = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(0.0),
        Some(v) => v
            .as_f64()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| bad(format!("{name} must be a number from 0 to 1"))),
    };
    let millis = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer"))),
    };
    let rps_limit = match body.get("rps_limit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("rps_limit must be null or a positive integer"))?,
        ),
    };
    let faults = Faults {
        latency_ms: millis("latency_ms")?,
        hang_ms: millis("hang_ms")?,
        error_rate: rate("error_rate")?,
        flow_control_rate: rate("flow_control_rate")?,
        lost_response_rate: rate("lost_response_rate")?,
        rps_limit,
    };
    let answer = to_json(&faults)?;
    let hang = Duration::from_millis(faults.hang_ms);
    let ended = lock(&app.faults).set(faults, Instant::now());
    tokio::spawn(release(ended));
    if !hang.is_zero() {
        let app = Arc::clone(app);
        tokio::spawn(async move {
            tokio::time::sleep(hang).await;
            let ended = lock(&app.faults).end_hang(Instant::now());
            release(ended).await;
        });
    }
    Ok(answer)
}

fn change_numbers(sim: &Sim, body: &Map<String, Value>) -> Answer {
    only_fields(body, &["app_key", "add", "remove"])?;
    let app = app(sim, body)?;
    let add: Vec<SimNumber> = match body.get("add") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            bad(format!(
                "add must be a list of {{number, area_code, blacklisted}}: {e}"
            ))
        })?,
    };
    for number in &add {
        number.validate().map_err(|m| bad(format!("add: {m}")))?;
    }
    let remove: Vec<String> = match body.get("remove") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| bad("remove must be a list of number strings"))?,
    };
    let mut state = lock(&app.state);
    for number in &remove {
        state.remove_number(number);
    }
    for number in &add {
        state.numbers.insert(number);
    }
    Ok(json!({"numbers": state.numbers.all().collect::<Vec<_>>()}))
}
