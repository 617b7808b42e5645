//! What the platform pushes to the customer's server (notifications.md): call events (§1), CDRs
//! (§2), X-number status (§3) and SMS events (§4), plus the answers a Block-mode push expects
//! (§1.5, §4.3).
//!
//! The simulator writes these bodies and the daemon's receiver reads them, so both use the types
//! here. Writing uses the documented JSON types (`stateCode` a number, `numInfo.status` a
//! string, …) and leaves out absent fields; reading is tolerant as §8.2 asks: every field
//! optional, numbers accepted as numeric strings, unknown fields ignored.
//!
//! One URL may receive several kinds of body (§0.1); [`PushKind::of`] tells them apart by content
//! (§8.1) and [`PushBody::parse`] parses whichever it is.

mod call;
mod fee;
mod num_status;
mod sms;
pub mod state;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use call::{
    BLOCK, CallEvent, CallinAnswer, CallinOperation, CloseInfo, ConnectInfo, NOTIFY, StatusInfo,
};
pub use fee::{FeeInfo, FeeNotification, MAX_FEES_PER_PUSH, service_type};
pub use num_status::{MAX_NUMBERS_PER_PUSH, NumInfo, NumStatusNotification, number_status};
pub use sms::{
    ExtInfo, ExtPara, SmsAction, SmsBlockAnswer, SmsEvent, SmsMessage, SmsNotification,
    SmsOperation, TEXT_SMS,
};

/// `Content-Type` of every push (§0.2) and of a Block answer.
pub const CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// `eventType` of call events (§1.1), CDRs (§2.1) and X-number status (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventType {
    /// A caller reached X (in X mode a Block push: the answer routes the call).
    Callin,
    /// AXE: the digits the caller keyed in (the extension).
    CollectInfo,
    /// The platform dials the forwarded party.
    Callout,
    /// The forwarded party is ringing.
    Alerting,
    /// The forwarded party answered.
    Answer,
    /// The call ended; carries `stateCode`.
    Disconnect,
    /// A CDR batch.
    Fee,
    /// X-number status changes.
    NumStatus,
    /// Anything else (kept parseable; written as `"other"`).
    #[serde(other)]
    Other,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Callin => "callin",
            EventType::CollectInfo => "collectInfo",
            EventType::Callout => "callout",
            EventType::Alerting => "alerting",
            EventType::Answer => "answer",
            EventType::Disconnect => "disconnect",
            EventType::Fee => "fee",
            EventType::NumStatus => "numStatus",
            EventType::Other => "other",
        }
    }
}

/// The kind of a push body (§8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PushKind {
    /// §1, a body with `statusInfo`.
    CallEvent,
    /// §2, a body with `feeLst` (or `eventType` `fee`).
    Fee,
    /// §3, `eventType` `numStatus`.
    NumStatus,
    /// §4, a body with `smsEvent`.
    Sms,
}

impl PushKind {
    /// Tells the kind of a JSON body by its content, in §8.1's order; `None` for anything else.
    pub fn of(body: &Value) -> Option<PushKind> {
        let body = body.as_object()?;
        let event_type = body.get("eventType").and_then(Value::as_str);
        if body.contains_key("feeLst") || event_type == Some("fee") {
            Some(PushKind::Fee)
        } else if event_type == Some("numStatus") {
            Some(PushKind::NumStatus)
        } else if body.contains_key("smsEvent") {
            Some(PushKind::Sms)
        } else if body.contains_key("statusInfo") {
            Some(PushKind::CallEvent)
        } else {
            None
        }
    }

    /// The wire-style name used in logs and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::CallEvent => "callEvent",
            PushKind::Fee => "fee",
            PushKind::NumStatus => "numStatus",
            PushKind::Sms => "sms",
        }
    }
}

/// Any push body, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum PushBody {
    CallEvent(CallEvent),
    Fee(FeeNotification),
    NumStatus(NumStatusNotification),
    Sms(SmsNotification),
}

/// Why a push body could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum PushParseError {
    #[error("the body is not a JSON object: {0}")]
    NotJson(serde_json::Error),
    #[error("the body is none of the push kinds (no feeLst, numStatus, smsEvent or statusInfo)")]
    UnknownKind,
    #[error("a {} body with a malformed field: {source}", kind.as_str())]
    Malformed {
        kind: PushKind,
        source: serde_json::Error,
    },
}

impl PushBody {
    /// Parses a raw push body: tells its kind (§8.1), then reads it tolerantly.
    pub fn parse(bytes: &[u8]) -> Result<PushBody, PushParseError> {
        let value: Value = serde_json::from_slice(bytes).map_err(PushParseError::NotJson)?;
        let kind = PushKind::of(&value).ok_or(PushParseError::UnknownKind)?;
        let malformed = |source| PushParseError::Malformed { kind, source };
        Ok(match kind {
            PushKind::CallEvent => {
                PushBody::CallEvent(serde_json::from_value(value).map_err(malformed)?)
            }
            PushKind::Fee => PushBody::Fee(serde_json::from_value(value).map_err(malformed)?),
            PushKind::NumStatus => {
                PushBody::NumStatus(serde_json::from_value(value).map_err(malformed)?)
            }
            PushKind::Sms => PushBody::Sms(serde_json::from_value(value).map_err(malformed)?),
        })
    }

    pub fn kind(&self) -> PushKind {
        match self {
            PushBody::CallEvent(_) => PushKind::CallEvent,
            PushBody::Fee(_) => PushKind::Fee,
            PushBody::NumStatus(_) => PushKind::NumStatus,
            PushBody::Sms(_) => PushKind::Sms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_told_apart_by_content() {
        let of = |v: Value| PushKind::of(&v);
        assert_eq!(
            of(json!({"eventType":"fee","feeLst":[]})),
            Some(PushKind::Fee)
        );
        assert_eq!(of(json!({"feeLst":[]})), Some(PushKind::Fee));
        assert_eq!(
            of(json!({"eventType":"numStatus","numInfo":[]})),
            Some(PushKind::NumStatus)
        );
        assert_eq!(of(json!({"appKey":"k","smsEvent":{}})), Some(PushKind::Sms));
        assert_eq!(
            of(json!({"eventType":"answer","statusInfo":{}})),
            Some(PushKind::CallEvent)
        );
        assert_eq!(of(json!({"eventType":"answer"})), None);
        assert_eq!(of(json!([1])), None);
    }

    #[test]
    fn every_documented_example_parses() {
        // notifications.md §1.3, §2.3, §3 and §4.1, as constructed there.
        let call = br#"{"eventType":"disconnect","statusInfo":{"timestamp":"2024-03-01 02:17:40",
            "sessionId":"s1","caller":"+8613900000001","called":"+8613700000002",
            "stateCode":0,"stateDesc":"The user releases the call.","subscriptionId":"8d1f"}}"#;
        let PushBody::CallEvent(event) = PushBody::parse(call).unwrap() else {
            panic!("not a call event");
        };
        assert_eq!(event.event_type, EventType::Disconnect);
        assert_eq!(event.status_info.state_code, Some(0));

        let status = br#"{"eventType":"numStatus","numInfo":[{"number":"+8617000000009","status":"10","cause":"2"}]}"#;
        let PushBody::NumStatus(n) = PushBody::parse(status).unwrap() else {
            panic!("not a number status");
        };
        assert_eq!(n.num_info[0].cause.as_deref(), Some("2"));

        let sms = br#"{"appKey":"k","smsEvent":{"smsIdentifier":"id1","notificationMode":"Block",
            "calling":"+8613800000001","virtualNumber":"+8617000000001","event":"Text SMS ",
            "timeStamp":"2018-09-13T09:46:16.023Z","sendResult":0,
            "extInfo":{"extParas":[{"key":"splitNum","value":"2"}]}}}"#;
        let PushBody::Sms(s) = PushBody::parse(sms).unwrap() else {
            panic!("not an SMS");
        };
        assert!(s.sms_event.is_block());
        assert_eq!(
            PushBody::parse(b"{}").unwrap_err().to_string(),
            PushParseError::UnknownKind.to_string()
        );
        assert!(matches!(
            PushBody::parse(br#"{"feeLst":[{"direction":"x"}]}"#),
            Err(PushParseError::Malformed {
                kind: PushKind::Fee,
                ..
            })
        ));
    }
}
