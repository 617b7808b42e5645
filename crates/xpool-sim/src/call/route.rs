//! Where the platform sends a call through X in the modes with stored bindings (binding-api.md
//! §2.1–§2.4; notifications.md §1.7 for the codes of calls it refuses). X mode asks the customer
//! instead (`super::xmode`).

use std::collections::HashMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::config::SimAppConfig;
use super::super::state::{AppState, Bindings, Ctx};
use xpool_platform::push::state as code;

/// What a call keeps of the binding (or, in X mode, of the Block answer) it went through.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bound {
    /// The binding's subscriptionId; `None` when none matched, and always in X mode.
    pub id: Option<String>,
    pub user_data: Option<String>,
    pub record_flag: bool,
    /// Longest talk, minutes (0: no limit).
    pub max_minutes: u64,
}

/// An AXB binding as a call (or a text) sees it.
#[derive(Debug, Clone)]
pub(crate) struct AxbView {
    pub bound: Bound,
    pub a: String,
    pub b: String,
    pub call_direction: u64,
    /// False when the binding's `privateSms` is `"false"` (binding-api.md §0.5).
    pub sms: bool,
}

/// An AX binding as a call (or a text) sees it.
#[derive(Debug, Clone)]
pub(crate) struct AxView {
    pub bound: Bound,
    pub a: String,
    pub call_direction: u64,
    /// The temporary callee and until when (RFC 3339; `None`: no end).
    pub callee: Option<(String, Option<String>)>,
    /// False when the binding's `privateSms` is `"false"`.
    pub sms: bool,
}

/// An AXE binding as a call sees it.
#[derive(Debug, Clone)]
pub(crate) struct AxeView {
    pub bound: Bound,
    pub a: String,
    pub callback_num: Option<String>,
    /// How long a callback record lasts (`None`: as long as the binding).
    pub callback_seconds: Option<u64>,
}

/// An AXYB relation (the AX and its YBs) as a call sees it.
#[derive(Debug, Clone)]
pub(crate) struct AxybView {
    pub bound: Bound,
    pub a: String,
    pub x: String,
    pub call_direction: u64,
    /// (Y, B) of each YB relation.
    pub ybs: Vec<(String, String)>,
}

/// Whom the platform connects, or why it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Routing {
    /// Forward to `callee`, showing `display` as the caller; `direction` for the CDR (§2.2).
    Forward {
        callee: String,
        display: String,
        direction: u64,
    },
    /// End the call before forwarding with this `stateCode`.
    Refuse { code: u64, direction: u64 },
}

/// The outcome of routing one call.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub bound: Bound,
    pub routing: Routing,
    /// AXE: the digits the caller keyed in when prompted (a `collectInfo` event).
    pub digits: Option<String>,
}

/// CDR `direction` of a call into A (AXB: B called A) and out of A (A called B), §2.2.
pub(crate) const INTO_A: u64 = 0;
pub(crate) const OUT_OF_A: u64 = 1;
/// CDR `direction` of a call that matched no binding.
pub(crate) const ABNORMAL: u64 = 2;

impl Route {
    /// A call refused before any binding matched.
    pub fn refused(code: u64) -> Route {
        Route {
            bound: Bound::default(),
            routing: Routing::Refuse {
                code,
                direction: ABNORMAL,
            },
            digits: None,
        }
    }

    fn through(bound: Bound, routing: Routing) -> Route {
        Route {
            bound,
            routing,
            digits: None,
        }
    }
}

/// One call as dialed: `from` called `to` (an X or Y of the app), keying in `extension` if
/// prompted (AXE).
#[derive(Debug, Clone)]
pub(crate) struct Dialed<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub extension: Option<&'a str>,
}

/// AXE callback records: subscriptionId ⇒ the last party forwarded to A through X + E, and when.
pub(crate) type Callbacks = HashMap<String, (String, OffsetDateTime)>;

/// Routes a call in a mode with stored bindings; `state` must be purged at `now`.
pub(crate) fn route(
    state: &mut AppState,
    app: &SimAppConfig,
    callbacks: &Callbacks,
    call: &Dialed<'_>,
    now: OffsetDateTime,
) -> Route {
    match &mut state.bindings {
        Bindings::Axb(s) => axb(s.call_view(call.to, call.from), call),
        Bindings::Ax(s) => ax(s.call_view(call.to), call, now),
        Bindings::Axe(s) => axe(s, callbacks, call, now),
        Bindings::Axyb(_) => axyb(state, app, call, now),
        Bindings::X => Route::refused(code::NO_BINDING),
    }
}

/// A forwarded call, or 8016 when `allowed` is false.
fn forward(bound: Bound, callee: &str, display: &str, direction: u64, allowed: bool) -> Route {
    let routing = if allowed {
        Routing::Forward {
            callee: callee.to_owned(),
            display: display.to_owned(),
            direction,
        }
    } else {
        Routing::Refuse {
            code: code::DIRECTION_NOT_ALLOWED,
            direction,
        }
    };
    Route::through(bound, routing)
}

/// AXB (§2.1): A reaches B and B reaches A through X, as `callDirection` allows (0 both, 1 only
/// A → B, 2 only B → A); anyone else: 8014.
fn axb(view: Option<AxbView>, call: &Dialed<'_>) -> Route {
    let Some(v) = view else {
        return Route::refused(code::NO_BINDING);
    };
    if call.from == v.a {
        forward(v.bound, &v.b, call.to, OUT_OF_A, v.call_direction != 2)
    } else {
        forward(v.bound, &v.a, call.to, INTO_A, v.call_direction != 1)
    }
}

/// AX (§2.2): anyone but A reaches A; A reaches its temporary callee while it is set (8013
/// otherwise). `callDirection` 1 lets only A call through X (documented), 2 only the others (a
/// reading of an UNCERTAIN value); refused: 8016. No binding on X: 8018 ("no AX binding exists").
fn ax(view: Option<AxView>, call: &Dialed<'_>, now: OffsetDateTime) -> Route {
    let Some(v) = view else {
        return Route::refused(code::NO_PERMISSION);
    };
    if call.from != v.a {
        return forward(v.bound, &v.a, call.to, INTO_A, v.call_direction != 1);
    }
    if v.call_direction == 2 {
        let refused = Routing::Refuse {
            code: code::DIRECTION_NOT_ALLOWED,
            direction: OUT_OF_A,
        };
        return Route::through(v.bound, refused);
    }
    let live = |until: &Option<String>| {
        until
            .as_deref()
            .is_none_or(|t| OffsetDateTime::parse(t, &Rfc3339).is_ok_and(|until| until > now))
    };
    match v.callee.filter(|(_, until)| live(until)) {
        Some((callee, _)) => forward(v.bound, &callee, call.to, OUT_OF_A, true),
        None => Route::through(
            v.bound,
            Routing::Refuse {
                code: code::AX_NO_CALLEE,
                direction: OUT_OF_A,
            },
        ),
    }
}

/// AXE (§2.3): a bound A dialing X reaches the last party that reached it (its callback record,
/// while it lasts), else its `callbackNum`, else 8019. Anyone else is prompted for E: none keyed
/// in is 8033, an E with no binding 8022.
fn axe(
    s: &super::super::axe::AxeState,
    callbacks: &Callbacks,
    call: &Dialed<'_>,
    now: OffsetDateTime,
) -> Route {
    if let Some(v) = s.call_view_of_a(call.to, call.from) {
        let record = v.bound.id.as_ref().and_then(|id| callbacks.get(id));
        let lasts = |at: OffsetDateTime| {
            v.callback_seconds.is_none_or(|s| {
                let s = i64::try_from(s).unwrap_or(i64::MAX);
                at.checked_add(time::Duration::seconds(s))
                    .is_none_or(|end| end > now)
            })
        };
        let target = record
            .filter(|(_, at)| lasts(*at))
            .map(|(party, _)| party.clone())
            .or_else(|| v.callback_num.clone());
        return match target {
            Some(party) => forward(v.bound, &party, call.to, OUT_OF_A, true),
            None => Route::through(
                v.bound,
                Routing::Refuse {
                    code: code::CALLBACK_NOT_FOUND,
                    direction: OUT_OF_A,
                },
            ),
        };
    }
    let digits = call.extension.unwrap_or_default().to_owned();
    let mut route = if digits.is_empty() {
        Route::refused(code::EMPTY_EXTENSION)
    } else {
        match s.call_view_of_extension(call.to, &digits) {
            Some(v) => forward(v.bound, &v.a, call.to, INTO_A, true),
            None => Route::refused(code::AXE_NO_BINDING),
        }
    };
    route.digits = Some(digits);
    route
}

/// AXYB (§2.4): B reaches A by dialing X (shown A as its Y; an unknown caller gets a Y of its
/// own, 8031 when none is free), A reaches B by dialing B's Y; `callDirection` 1 allows only
/// A → B, 2 only B → A. A bound number dialing its own privacy number: 8032; nothing bound: 8030.
fn axyb(state: &mut AppState, app: &SimAppConfig, call: &Dialed<'_>, now: OffsetDateTime) -> Route {
    let AppState { numbers, bindings } = state;
    let Bindings::Axyb(s) = bindings else {
        return Route::refused(code::AXYB_NO_BINDING);
    };
    if let Some(v) = s.call_view_of_x(call.to) {
        if call.from == v.a {
            return Route::refused(code::AXYB_OWN_NUMBER);
        }
        let allowed = v.call_direction != 1;
        let y = match v.ybs.iter().find(|(_, b)| b == call.from) {
            Some((y, _)) => y.clone(),
            None if !allowed => return forward(v.bound, &v.a, call.to, INTO_A, false),
            None => {
                let ctx = Ctx { app, numbers, now };
                let id = v.bound.id.clone().unwrap_or_default();
                match s.allocate_y_for_call(ctx, &id, call.from) {
                    Some(y) => y,
                    None => return Route::refused(code::AXYB_NO_Y),
                }
            }
        };
        return forward(v.bound, &v.a, &y, INTO_A, allowed);
    }
    let relations = s.call_views_with_y(call.to);
    if relations
        .iter()
        .any(|v| v.ybs.iter().any(|(y, b)| y == call.to && b == call.from))
    {
        return Route::refused(code::AXYB_OWN_NUMBER);
    }
    let Some(v) = relations.into_iter().find(|v| v.a == call.from) else {
        return Route::refused(code::AXYB_NO_BINDING);
    };
    let Some((_, b)) = v.ybs.iter().find(|(y, _)| y == call.to).cloned() else {
        return Route::refused(code::AXYB_NO_BINDING);
    };
    let x = v.x.clone();
    forward(v.bound, &b, &x, OUT_OF_A, v.call_direction != 2)
}
