//! What the simulator pushes to the customer's server (notifications.md), received by a tiny
//! server of the test's own: calls in every mode (events, stateCode, CDR), X-mode routing by the
//! receiver's answer, retries on the simulator's clock, CDR batches, number status and SMS.

mod calls;
mod delivery;
mod receiver;
mod texts;

use serde_json::{Value, json};

use crate::support::{App, Setup, Sim};
use receiver::Receiver;

/// The apps of [`Setup::platform`] plus an X-mode app, each pushing to `/<name>/status`,
/// `/<name>/fee` and `/<name>/sms` on `r`.
pub fn setup(r: &Receiver) -> Setup {
    let urls = |name: &'static str| {
        move |app: App| {
            app.sim("callback_url", r.url(&format!("/{name}/status")))
                .sim("cdr_url", r.url(&format!("/{name}/fee")))
                .sim("sms_url", r.url(&format!("/{name}/sms")))
        }
    };
    let mut setup = Setup::platform();
    setup
        .apps
        .push(App::new("xmode", "k-x", "X").numbers(8617600000001, &["010", "010"]));
    setup
        .app("rides", urls("rides"))
        .app("drivers", urls("drivers"))
        .app("stores", urls("stores"))
        .app("chat", urls("chat"))
        .app("xmode", urls("xmode"))
        .sim_section("[auth]\nmax_failures = 5\n\n[push]\ntimeout_ms = 1000\n")
}

/// A receiver and a simulator pushing to it.
pub async fn start() -> (Sim, Receiver) {
    let r = Receiver::start().await;
    let sim = Sim::start_with(&setup(&r)).await;
    (sim, r)
}

/// `POST /sim/call` from `from` to `to` as `app_key`, with the extra fields of `extra`.
pub async fn call(sim: &Sim, app_key: &str, from: &str, to: &str, extra: Value) -> Value {
    let mut body = json!({"app_key": app_key, "from": from, "to": to});
    if let Value::Object(extra) = extra {
        body.as_object_mut().unwrap().extend(extra);
    }
    sim.control_post("/sim/call", body).await
}

/// The HTTP status a `POST` of `body` to the control `path` gets (for refusals, which
/// `Sim::control_post` would panic on).
pub async fn control_status(sim: &Sim, path: &str, body: Value) -> u16 {
    sim.unsigned(reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `GET /sim/pushes?app_key=…`.
pub async fn pushes(sim: &Sim, app_key: &str) -> Value {
    sim.control_get(&format!("/sim/pushes?app_key={app_key}"))
        .await
}

/// The `eventType` of each body.
pub fn types(bodies: &[Value]) -> Vec<&str> {
    bodies
        .iter()
        .map(|b| b["eventType"].as_str().unwrap_or("?"))
        .collect()
}

/// The `statusInfo` of the bodies of one session.
pub fn session<'a>(bodies: &'a [Value], session_id: &Value) -> Vec<&'a Value> {
    bodies
        .iter()
        .map(|b| &b["statusInfo"])
        .filter(|info| info["sessionId"] == *session_id)
        .collect()
}

/// The CDRs received on `path`, each push's records flattened in order.
pub fn fees(r: &Receiver, path: &str) -> Vec<Value> {
    r.bodies(path)
        .iter()
        .flat_map(|b| b["feeLst"].as_array().cloned().unwrap_or_default())
        .collect()
}
