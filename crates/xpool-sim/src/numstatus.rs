//! `POST /sim/numstatus`: an X number's status changes, and the platform pushes it to the app's
//! `callback_url` (notifications.md §3). Paused and unavailable numbers then refuse calls (8055)
//! and SMS until a later status lifts it.

use serde_json::{Map, Value, json};

use super::controls::{Answer, app, bad, global_number, only_fields, opt_str};
use super::state::{Sim, lock};
use xpool_platform::push::{NumInfo, NumStatusNotification, PushKind, number_status};

/// Sets and pushes one number's status; answers `{"number", "status", "pushed", "delivered"}`.
pub(crate) async fn change(sim: &Sim, body: &Map<String, Value>) -> Answer {
    only_fields(body, &["app_key", "number", "status", "cause"])?;
    let app = app(sim, body)?;
    let number = global_number(body, "number")?;
    let status = opt_str(body, "status")?
        .filter(|s| number_status::ALL.contains(&s.as_str()))
        .ok_or_else(|| bad("status must be \"5\", \"9\", \"10\" or \"11\""))?;
    let cause = opt_str(body, "cause")?;
    match &cause {
        Some(_) if status != number_status::UNAVAILABLE => {
            return Err(bad("cause is only sent with status \"10\" (unavailable)"));
        }
        Some(c) if !number_status::CAUSES.contains(&c.as_str()) => {
            return Err(bad(
                "cause must be one of \"1\", \"2\", \"3\", \"5\" … \"9\"",
            ));
        }
        _ => {}
    }
    let config = &app.config;
    if lock(&app.state).numbers.get(&number).is_none() {
        return Err(bad(format!(
            "number {number} is not a number of app {}",
            config.app_key
        )));
    }
    lock(&sim.traffic)
        .statuses
        .insert((config.app_key.clone(), number.clone()), status.clone());
    let delivered = match &config.callback_url {
        Some(url) => {
            let body = NumStatusNotification::new(vec![NumInfo {
                number: number.clone(),
                status: status.clone(),
                cause,
            }]);
            sim.pushes
                .notify(&sim.clock, config, url, PushKind::NumStatus, &body)
                .await
        }
        None => false,
    };
    Ok(json!({
        "number": number,
        "status": status,
        "pushed": config.callback_url.is_some(),
        "delivered": delivered,
    }))
}
