//! X mode (notifications.md §1.4, §1.5): the platform stores no bindings, so it pushes a Block
//! `callin` to the app's callback URL and routes the call as the answer says.

use super::super::config::SimAppConfig;
use super::super::state::Sim;
use super::play::{Call, callin};
use super::route::{Bound, INTO_A, Route, Routing};
use xpool_platform::number::is_global;
use xpool_platform::push::state as code;
use xpool_platform::push::{CallinAnswer, CallinOperation, ConnectInfo, PushKind};

/// Longest `maxDuration` a Block answer may give, minutes (§1.5).
const MAX_MINUTES: u64 = 1440;

/// Asks the customer where `call` goes. No callback URL, no 200, or an answer that is not a
/// valid `connect` or `close`: 8014; `close`: 8017.
pub(crate) async fn route(sim: &Sim, app: &SimAppConfig, call: &Call) -> Route {
    let Some(url) = &app.callback_url else {
        return Route::refused(code::NO_BINDING);
    };
    let question = callin(call, &Route::refused(code::NO_BINDING));
    let answer = sim
        .pushes
        .block(&sim.clock, app, url, PushKind::CallEvent, &question)
        .await;
    let answer = answer.and_then(|body| serde_json::from_str::<CallinAnswer>(&body).ok());
    decide(answer, &call.to)
}

/// The route a Block answer gives a call to `x`.
pub(crate) fn decide(answer: Option<CallinAnswer>, x: &str) -> Route {
    match answer {
        Some(CallinAnswer {
            operation: CallinOperation::Connect,
            connect_info: Some(info),
            ..
        }) if valid(&info) => connect(info, x),
        Some(CallinAnswer {
            operation: CallinOperation::Close,
            close_info,
            ..
        }) => Route {
            bound: Bound {
                user_data: close_info.and_then(|c| c.user_data),
                ..Bound::default()
            },
            routing: Routing::Refuse {
                code: code::X_CLOSED,
                direction: INTO_A,
            },
            digits: None,
        },
        _ => Route::refused(code::NO_BINDING),
    }
}

fn valid(info: &ConnectInfo) -> bool {
    is_global(&info.callee_num)
        && info.display_callee_num.as_deref().is_none_or(is_global)
        && info.max_duration.is_none_or(|m| m <= MAX_MINUTES)
}

fn connect(info: ConnectInfo, x: &str) -> Route {
    Route {
        bound: Bound {
            id: None,
            user_data: info.user_data,
            record_flag: info.record_flag.unwrap_or(false),
            max_minutes: info.max_duration.unwrap_or(0),
        },
        routing: Routing::Forward {
            display: info.display_callee_num.unwrap_or_else(|| x.to_owned()),
            callee: info.callee_num,
            direction: INTO_A,
        },
        digits: None,
    }
}
