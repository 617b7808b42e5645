//! `POST /sim/call`: one call through an app's number, played as the platform would
//! (notifications.md §1, §2): routed through the binding (or, in X mode, by the customer's
//! Block answer), its events pushed to the app's `callback_url` before the control answers, its
//! CDR booked for the batch pushed to `cdr_url` once the call's end second has passed on the
//! simulator's clock.

pub(crate) mod play;
pub(crate) mod route;
pub(crate) mod xmode;

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::controls::{Answer, app, bad, global_number, only_fields, opt_str};
use super::state::{Sim, lock};
use play::{Call, HOST_NAME};
use route::{Dialed, INTO_A, Route, Routing};
use xpool_platform::Mode;
use xpool_platform::push::state as code;
use xpool_platform::push::{EventType, NOTIFY, PushKind, number_status};

pub(crate) use route::{AxView, AxbView, AxeView, AxybView, Bound, Callbacks};

/// Talk time when the request gives none, and the longest accepted (a day).
const DEFAULT_TALK_SECONDS: u64 = 30;
const MAX_TALK_SECONDS: u64 = 86_400;

/// What calls and SMS leave behind.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// AXE callback records (binding-api.md §2.3).
    pub callbacks: Callbacks,
    /// (app_key, number) ⇒ the status `/sim/numstatus` last pushed (notifications.md §3).
    pub statuses: HashMap<(String, String), String>,
    seq: u64,
}

impl Traffic {
    /// A fresh sequence number for session and SMS ids.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// True when calls and SMS through `number` are refused: paused or unavailable (§3).
    pub fn blocked(&self, app_key: &str, number: &str) -> bool {
        self.statuses
            .get(&(app_key.to_owned(), number.to_owned()))
            .is_some_and(|s| number_status::blocks_traffic(s))
    }
}

/// Plays one call; answers `{"sessionId", "stateCode", "connectedTo", "subscriptionId"}`.
pub(crate) async fn play_call(sim: &Sim, body: &Map<String, Value>) -> Answer {
    only_fields(
        body,
        &[
            "app_key",
            "from",
            "to",
            "extension",
            "answer",
            "talk_seconds",
        ],
    )?;
    let app = app(sim, body)?;
    let from = global_number(body, "from")?;
    let to = global_number(body, "to")?;
    let extension = opt_str(body, "extension")?;
    let answer = match body.get("answer") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("answer must be true or false")),
    };
    let talk_seconds = match body.get("talk_seconds") {
        None | Some(Value::Null) => DEFAULT_TALK_SECONDS,
        Some(v) => v
            .as_u64()
            .filter(|s| *s <= MAX_TALK_SECONDS)
            .ok_or_else(|| bad("talk_seconds must be an integer from 0 to 86400"))?,
    };
    let config = &app.config;
    let now = sim.clock.now();
    let (call, routed) = {
        let mut state = lock(&app.state);
        state.purge(now);
        if state.numbers.get(&to).is_none() {
            return Err(bad(format!(
                "to {to} is not a number of app {}",
                config.app_key
            )));
        }
        let mut traffic = lock(&sim.traffic);
        let call = Call {
            app_key: config.app_key.clone(),
            mode: config.mode,
            session_id: session_id(traffic.next_seq(), now),
            icid: format!("{}.{}", uuid::Uuid::new_v4().simple(), traffic.next_seq()),
            from: from.clone(),
            to: to.clone(),
            answer,
            talk_seconds,
            start: now,
        };
        let dialed = Dialed {
            from: &from,
            to: &to,
            extension: extension.as_deref(),
        };
        let routed = if traffic.blocked(&config.app_key, &to) {
            Some(Route::refused(code::X_UNAVAILABLE))
        } else if config.mode == Mode::X {
            None
        } else {
            Some(route::route(
                &mut state,
                config,
                &traffic.callbacks,
                &dialed,
                now,
            ))
        };
        (call, routed)
    };
    // In X mode the Block callin has been pushed (and answered) while routing.
    let asked = routed.is_none();
    let route = match routed {
        Some(route) => route,
        None => xmode::route(sim, config, &call).await,
    };
    let mut played = play::play(&call, &route);
    if config.mode == Mode::X && !asked {
        played.events[0].status_info.notify_mode = Some(NOTIFY.to_owned());
    }
    if let (
        Mode::Axe,
        Routing::Forward {
            direction: INTO_A, ..
        },
        Some(id),
    ) = (config.mode, &route.routing, &route.bound.id)
    {
        let record = (from.clone(), call.start);
        lock(&sim.traffic).callbacks.insert(id.clone(), record);
    }
    if let Some(url) = &config.callback_url {
        for event in &played.events {
            if asked && event.event_type == EventType::Callin {
                continue;
            }
            sim.pushes
                .notify(&sim.clock, config, url, PushKind::CallEvent, event)
                .await;
        }
    }
    if let Some(url) = &config.cdr_url {
        sim.pushes
            .book_cdr(config, url, played.fee, batch_due(played.end));
    }
    let connected_to = match &route.routing {
        Routing::Forward { callee, .. } => Some(callee.clone()),
        Routing::Refuse { .. } => None,
    };
    Ok(json!({
        "sessionId": call.session_id,
        "stateCode": played.state_code,
        "connectedTo": connected_to,
        "subscriptionId": route.bound.id,
    }))
}

/// A session id shaped like the platform's (`1200_1029_4294967295_20190123091514@host`).
fn session_id(seq: u64, start: OffsetDateTime) -> String {
    let stamp = start
        .format(format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_default();
    format!("1200_{seq:04}_4294967295_{stamp}@{HOST_NAME}")
}

/// When the CDR of a call that ended at `end` is pushed: once the end's second is over, with
/// every other CDR of the app due by then (notifications.md §2.1 merges CDRs of calls that end
/// within a short time).
fn batch_due(end: OffsetDateTime) -> OffsetDateTime {
    let second = end.replace_nanosecond(0).unwrap_or(end);
    second + time::Duration::seconds(1)
}
