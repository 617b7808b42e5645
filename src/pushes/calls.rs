//! Call events (notifications.md §1): stored, then answered 200; and the X-mode Block `callin`
//! (§1.4, §1.5), answered at once with whom to connect.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::Receiver;
use super::apps::{PushApp, Signed};
use super::reply::{Outcome, Reply, describe_json_error};
use crate::calls::Stored;
use crate::lifecycle::{CallRoute, PoolError};
use crate::metrics::OperationLabel;
use crate::platform::Mode;
use crate::platform::push::{
    CallEvent, CallinAnswer, CallinOperation, CloseInfo, ConnectInfo, EventType, PushKind,
};
use crate::store::BindingId;

impl From<Stored> for Outcome {
    fn from(stored: Stored) -> Self {
        match stored {
            Stored::New => Outcome::Ok,
            Stored::Duplicate => Outcome::Duplicate,
        }
    }
}

impl Receiver {
    pub(super) async fn call_event(
        self: &Arc<Self>,
        value: Value,
        signed: Signed<'_>,
        arrived: Instant,
    ) -> Reply {
        let kind = PushKind::CallEvent;
        let event: CallEvent = match serde_json::from_value(value) {
            Ok(event) => event,
            Err(e) => {
                let note = format!(
                    "a call event with a malformed field: {}",
                    describe_json_error(&e)
                );
                return Reply::refused(Some(kind), Outcome::BadJson, note);
            }
        };
        let info = &event.status_info;
        // `called` is X on a callin; later events name the real parties, so their app comes
        // from the signature (or is the only one).
        let by_number = || {
            [&info.called, &info.orig_callee_num]
                .into_iter()
                .flatten()
                .find_map(|x| self.apps.by_number(&self.pool, x))
        };
        let app = signed.app().or_else(by_number).or_else(|| self.apps.only());
        if let Some(app) = app
            && let Err(why) = signed.admits(app)
        {
            return Reply::refused(Some(kind), Outcome::BadSignature, why);
        }
        if event.event_type == EventType::Callin && info.is_block() {
            return self.answer_callin(event, app, arrived);
        }
        let Some(app) = app else {
            let note = "a call event for no configured app (no known signing key or X number); \
                        dropped";
            return Reply::refused(Some(kind), Outcome::UnknownApp, note);
        };
        match self.calls.record_event(&app.name, &event).await {
            Ok(stored) => Reply::done(kind, stored.into()),
            Err(e) => not_stored(kind, &e),
        }
    }

    /// Answers a Block `callin`: `connect` to the other party of the caller's binding on X, or
    /// `close` (with the app's `close_hint_tone`) when there is none. The answer is made from
    /// memory and sent before the event is stored: the platform does not retry a callin (§1.6)
    /// and the caller is waiting, so the answer must not wait for a disk sync. A crash between
    /// the two loses the callin event only; the call's later events and its CDR are retried
    /// until stored.
    fn answer_callin(
        self: &Arc<Self>,
        event: CallEvent,
        app: Option<&PushApp>,
        arrived: Instant,
    ) -> Reply {
        let kind = PushKind::CallEvent;
        let info = &event.status_info;
        let x = info.called.as_deref().unwrap_or_default();
        let caller = info.caller.as_deref().unwrap_or_default();
        let route = self.route(app, caller, x);
        let routed = route.as_ref().map(|route| route.binding_id.into());
        let answer = match route {
            Some(route) => CallinAnswer::connect(connect_info(route, x)),
            None => CallinAnswer::close(CloseInfo {
                close_hint_tone: app.and_then(|app| app.close_hint_tone.clone()),
                user_data: None,
            }),
        };
        let body = encode(&answer, self.settings.answer_connect_info_as_array);
        let metrics = &self.metrics.pushes;
        let operation = match answer.operation {
            CallinOperation::Connect => "connect",
            CallinOperation::Close => "close",
        };
        metrics
            .callin_answers
            .get_or_create(&OperationLabel { operation })
            .inc();
        metrics
            .callin_answer_seconds
            .observe(arrived.elapsed().as_secs_f64());
        let Some(app) = app else {
            let note = "an X-mode callin to a number of no configured app; answered close";
            return Reply::refused(Some(kind), Outcome::UnknownApp, note).with_answer(body);
        };
        self.store_later(app.name.clone(), event, routed);
        Reply::answer(kind, None, body)
    }

    /// X mode: the other party of `caller`'s binding on `x` in `app`'s pool; `None` when there
    /// is none, or the app is not in X mode.
    pub(super) fn route(&self, app: Option<&PushApp>, caller: &str, x: &str) -> Option<CallRoute> {
        let pool = self.pool.app(&app?.name).ok()?;
        if pool.mode() != Mode::X {
            return None;
        }
        pool.route_call(caller, x)
    }

    /// Stores an answered callin's event, linked to the binding it was `routed` to, on the
    /// daemon's tracker; counts the push when that is done.
    fn store_later(self: &Arc<Self>, app: String, event: CallEvent, routed: Option<BindingId>) {
        let receiver = Arc::clone(self);
        self.tasks.spawn(async move {
            let kind = PushKind::CallEvent;
            let stored = receiver.calls.record_answered_callin(&app, &event, routed);
            let reply = match stored.await {
                Ok(stored) => Reply::done(kind, stored.into()),
                // Answered already: this only counts and logs why the event is not kept.
                Err(e) => not_stored(kind, &e),
            };
            receiver.settle(&reply, None);
        });
    }
}

/// A push the call log would not store: 400 when the push itself is at fault (a field it
/// needs is missing or wrong: sending it again cannot help), otherwise 503, so the platform
/// retries it (§6).
pub(super) fn not_stored(kind: PushKind, e: &PoolError) -> Reply {
    if let PoolError::InvalidArgument { .. } = e {
        let note = format!("a {} push that cannot be stored: {e}", kind.as_str());
        return Reply::refused(Some(kind), Outcome::BadJson, note);
    }
    let note = format!("the push could not be stored, retry later: {e}");
    Reply::refused(Some(kind), Outcome::Unavailable, note)
}

/// Where to connect an X-mode call to `x`, as the binding says.
fn connect_info(route: CallRoute, x: &str) -> ConnectInfo {
    let CallRoute {
        binding_id,
        callee,
        max_call_minutes,
        record,
        record_hint_tone,
        last_minute_tone,
    } = route;
    ConnectInfo {
        callee_num: callee,
        // The carrier rule: the callee sees the X of the call.
        display_callee_num: Some(x.to_owned()),
        max_duration: max_call_minutes.map(u64::from),
        wait_voice: None,
        record_flag: record,
        record_hint_tone,
        last_min_voice: last_minute_tone,
        // Echoed in the call's later events and CDR: they name the binding.
        user_data: Some(binding_id.to_string()),
    }
}

/// The answer's JSON; with `as_array`, `connectInfo` / `closeInfo` as one-element arrays, as
/// Huawei's Java demo writes them (§1.5 UNCERTAIN).
fn encode(answer: &CallinAnswer, as_array: bool) -> Vec<u8> {
    if !as_array {
        return serde_json::to_vec(answer).unwrap_or_default();
    }
    let mut value = serde_json::to_value(answer).unwrap_or(Value::Null);
    for key in ["connectInfo", "closeInfo"] {
        if let Some(info) = value.get_mut(key) {
            *info = Value::Array(vec![info.take()]);
        }
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::lifecycle::BindingId;

    #[test]
    fn a_route_becomes_a_connect_answer_naming_the_binding() {
        let id = BindingId::parse("0190f5d6-8f5a-7b3c-9d1e-2f3a4b5c6d7e").unwrap();
        let route = CallRoute {
            binding_id: id,
            callee: "+8613900000002".into(),
            max_call_minutes: Some(30),
            record: Some(true),
            record_hint_tone: Some("rec.wav".into()),
            last_minute_tone: None,
        };
        let answer = CallinAnswer::connect(connect_info(route, "+8617600000001"));
        let written: Value = serde_json::from_slice(&encode(&answer, false)).unwrap();
        assert_eq!(
            written,
            json!({"operation": "connect", "connectInfo": {"calleeNum": "+8613900000002",
                "displayCalleeNum": "+8617600000001", "maxDuration": 30, "recordFlag": "true",
                "recordHintTone": "rec.wav", "userData": id.to_string()}})
        );
        let as_array: Value = serde_json::from_slice(&encode(&answer, true)).unwrap();
        assert_eq!(as_array["connectInfo"][0], written["connectInfo"]);
        let read: CallinAnswer = serde_json::from_value(as_array).unwrap();
        assert_eq!(
            read, answer,
            "the platform's reading of either form is the same"
        );
    }

    #[test]
    fn a_close_answer_carries_the_apps_tone() {
        let answer = CallinAnswer::close(CloseInfo {
            close_hint_tone: Some("bye.wav".into()),
            user_data: None,
        });
        let written: Value = serde_json::from_slice(&encode(&answer, true)).unwrap();
        assert_eq!(
            written,
            json!({"operation": "close", "closeInfo": [{"closeHintTone": "bye.wav"}]})
        );
    }
}
