//! CDRs (notifications.md §2), number status (§3) and SMS (§4).

use std::collections::BTreeMap;

use serde_json::Value;

use super::Receiver;
use super::apps::{PushApp, Signed};
use super::calls::not_stored;
use super::reply::{Outcome, Reply, describe_json_error};
use crate::lifecycle::StatusCounts;
use crate::platform::push::{
    FeeInfo, NumInfo, NumStatusNotification, PushKind, SmsAction, SmsBlockAnswer, SmsEvent,
    SmsMessage, SmsNotification, SmsOperation,
};

/// A push of `kind` whose body `serde` could not read as one.
fn malformed(kind: PushKind, e: &serde_json::Error) -> Reply {
    let note = format!(
        "a {} push with a malformed field: {}",
        kind.as_str(),
        describe_json_error(e)
    );
    Reply::refused(Some(kind), Outcome::BadJson, note)
}

impl Receiver {
    /// A CDR batch: each record read on its own (one bad record must not make the platform
    /// re-send the batch, §2.1); the unreadable ones counted and skipped, the rest stored.
    pub(super) async fn fees(&self, value: Value, signed: Signed<'_>) -> Reply {
        let kind = PushKind::Fee;
        let list = match value {
            Value::Object(mut body) => body.remove("feeLst"),
            _ => None,
        };
        let entries = match list {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                let note = "a fee push whose feeLst is not a list";
                return Reply::refused(Some(kind), Outcome::BadJson, note);
            }
        };
        let (fees, skipped) = read_fees(entries);
        if let Some((count, first)) = skipped {
            let metrics = &self.metrics.pushes;
            metrics.entries(kind.as_str(), "malformed", count);
            let note = format!("skipped {count} CDR record(s) that could not be read: {first}");
            self.warnings
                .warn(kind.as_str(), Outcome::BadJson, &note, None);
        }
        // The app the whole push is for, when known without the records; otherwise each
        // record's appKey says (and each such app's signature rule applies).
        let app = signed.app().or_else(|| self.apps.only());
        let targets: Vec<&PushApp> = match app {
            Some(app) => vec![app],
            None => fees
                .iter()
                .filter_map(|fee| fee.app_key.as_deref())
                .filter_map(|key| self.apps.by_key(key))
                .collect(),
        };
        for target in targets {
            if let Err(why) = signed.admits(target) {
                return Reply::refused(Some(kind), Outcome::BadSignature, why);
            }
        }
        if fees.is_empty() {
            return Reply::done(kind, Outcome::Ok);
        }
        match self
            .calls
            .record_fees(app.map(|app| app.name.as_str()), &fees)
            .await
        {
            Ok(counts) => {
                let metrics = &self.metrics.pushes;
                metrics.entries(kind.as_str(), "stored", counts.stored);
                metrics.entries(kind.as_str(), "duplicate", counts.duplicates);
                metrics.entries(kind.as_str(), "skipped", counts.skipped);
                let outcome = if counts.stored == 0 && counts.duplicates > 0 {
                    Outcome::Duplicate
                } else {
                    Outcome::Ok
                };
                Reply::done(kind, outcome)
            }
            Err(e) => not_stored(kind, &e),
        }
    }

    /// Number status: each number to the app whose pool holds it; numbers of no app are
    /// counted and skipped.
    pub(super) async fn num_status(&self, value: Value, signed: Signed<'_>) -> Reply {
        let kind = PushKind::NumStatus;
        let push: NumStatusNotification = match serde_json::from_value(value) {
            Ok(push) => push,
            Err(e) => return malformed(kind, &e),
        };
        let mut by_app: BTreeMap<&str, (&PushApp, Vec<NumInfo>)> = BTreeMap::new();
        let mut unknown = 0;
        for info in push.num_info {
            match self.apps.by_number(&self.pool, &info.number) {
                Some(app) => by_app
                    .entry(&app.name)
                    .or_insert_with(|| (app, Vec::new()))
                    .1
                    .push(info),
                None => unknown += 1,
            }
        }
        for (app, _) in by_app.values() {
            if let Err(why) = signed.admits(app) {
                return Reply::refused(Some(kind), Outcome::BadSignature, why);
            }
        }
        let metrics = &self.metrics.pushes;
        metrics.entries(kind.as_str(), "skipped", unknown);
        if by_app.is_empty() && unknown == 0 {
            return Reply::done(kind, Outcome::Ok);
        }
        if by_app.is_empty() {
            let note = format!("a numStatus push for {unknown} number(s) no app holds; dropped");
            return Reply::refused(Some(kind), Outcome::UnknownApp, note);
        }
        let mut total = StatusCounts::default();
        for (name, (_, infos)) in by_app {
            // In cluster mode an app led elsewhere (leadership moved since the push was
            // routed): 503, and the platform sends the push again.
            let pool = match self.pool.app(name) {
                Ok(pool) => pool,
                Err(e) => return not_stored(kind, &e),
            };
            match pool.set_number_status(&infos).await {
                Ok(counts) => {
                    total.changed += counts.changed;
                    total.unchanged += counts.unchanged;
                    total.skipped += counts.skipped;
                }
                // What was applied stays: applying a status again changes nothing.
                Err(e) => return not_stored(kind, &e),
            }
        }
        metrics.entries(kind.as_str(), "changed", total.changed);
        metrics.entries(kind.as_str(), "unchanged", total.unchanged);
        metrics.entries(kind.as_str(), "skipped", total.skipped);
        Reply::done(kind, Outcome::Ok)
    }

    /// An SMS event, stored; a Block one answered with where to forward it (§4.3).
    pub(super) async fn sms(&self, value: Value, signed: Signed<'_>) -> Reply {
        let kind = PushKind::Sms;
        let push: SmsNotification = match serde_json::from_value(value) {
            Ok(push) => push,
            Err(e) => return malformed(kind, &e),
        };
        let event = &push.sms_event;
        let app = signed
            .app()
            .or_else(|| self.apps.by_key(&push.app_key))
            .or_else(|| {
                let x = event.virtual_number.as_deref()?;
                self.apps.by_number(&self.pool, x)
            })
            .or_else(|| self.apps.only());
        if let Some(app) = app
            && let Err(why) = signed.admits(app)
        {
            return Reply::refused(Some(kind), Outcome::BadSignature, why);
        }
        let answer = event.is_block().then(|| self.sms_answer(app, event));
        let Some(app) = app else {
            let note = "an SMS push for no configured app (no known key or X number); dropped";
            let dropped = Reply::refused(Some(kind), Outcome::UnknownApp, note);
            return match answer {
                Some(body) => dropped.with_answer(body),
                None => dropped,
            };
        };
        match (self.calls.record_sms(&app.name, event).await, answer) {
            (Ok(stored), Some(body)) => Reply::answer(kind, Some(stored.into()), body),
            (Ok(stored), None) => Reply::done(kind, stored.into()),
            (Err(e), _) => not_stored(kind, &e),
        }
    }

    /// Forward (`vNumberRoute`, the contract's default). In X mode the message goes to the
    /// other party of the sender's binding on X, as a call would; otherwise the platform
    /// knows the receiver.
    fn sms_answer(&self, app: Option<&PushApp>, event: &SmsEvent) -> Vec<u8> {
        let (calling, x) = (event.calling.as_deref(), event.virtual_number.as_deref());
        let message = calling
            .zip(x)
            .and_then(|(calling, x)| self.route(app, calling, x))
            .map(|route| SmsMessage {
                called: Some(route.callee),
                calling: event.calling.clone(),
            });
        let answer = SmsBlockAnswer {
            actions: vec![SmsAction {
                operation: SmsOperation::VNumberRoute,
                message,
                ext_paras: None,
                user_data: None,
            }],
        };
        serde_json::to_vec(&answer).unwrap_or_default()
    }
}

/// The records of `feeLst` that read as CDRs, and how many did not with the first's error.
fn read_fees(entries: Vec<Value>) -> (Vec<FeeInfo>, Option<(u32, String)>) {
    let mut fees = Vec::with_capacity(entries.len());
    let mut skipped: Option<(u32, String)> = None;
    for (i, entry) in entries.into_iter().enumerate() {
        match serde_json::from_value::<FeeInfo>(entry) {
            Ok(fee) => fees.push(fee),
            Err(e) => match &mut skipped {
                Some((count, _)) => *count += 1,
                None => {
                    let first = format!("feeLst[{i}]: {}", describe_json_error(&e));
                    skipped = Some((1, first));
                }
            },
        }
    }
    (fees, skipped)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_cdr_record_is_read_on_its_own() {
        let entries = vec![
            json!({"icid": "a", "sessionId": "s1", "direction": 1}),
            json!({"icid": "b", "direction": "sideways"}),
            json!("not a record"),
            json!({"icid": "c", "callerNum": "+8613900000001"}),
        ];
        let (fees, skipped) = read_fees(entries);
        let icids: Vec<_> = fees.iter().map(|f| f.icid.as_deref()).collect();
        assert_eq!(icids, [Some("a"), Some("c")]);
        let (count, first) = skipped.unwrap();
        assert_eq!(count, 2);
        assert!(first.starts_with("feeLst[1]: "), "{first}");
        assert!(
            !first.contains("sideways"),
            "values are not quoted: {first}"
        );
    }
}
