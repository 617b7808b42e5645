//! X-number status notifications (notifications.md §3):
//! `{"eventType":"numStatus","numInfo":[{"number","status","cause"}, …]}`.

use serde::{Deserialize, Serialize};

use super::EventType;
use crate::de;

/// Most numbers in one push (§3).
pub const MAX_NUMBERS_PER_PUSH: usize = 100;

/// `status` and `cause` codes (§3); strings on the wire.
pub mod number_status {
    /// Normal: no impact.
    pub const NORMAL: &str = "5";
    /// Paused: no new bindings, no calls, no SMS.
    pub const PAUSED: &str = "9";
    /// Unavailable (with a `cause`): no new bindings, no calls, no SMS.
    pub const UNAVAILABLE: &str = "10";
    /// Binding-frozen: no new bindings; existing ones keep working.
    pub const BINDING_FROZEN: &str = "11";
    /// Every status.
    pub const ALL: [&str; 4] = [NORMAL, PAUSED, UNAVAILABLE, BINDING_FROZEN];

    /// The causes of [`UNAVAILABLE`]: deleted, arrears, suspended, carrier call-barring,
    /// call-barring lifted, unconditional / no-answer / busy forwarding on X (`"4"` is not listed).
    pub const CAUSES: [&str; 8] = ["1", "2", "3", "5", "6", "7", "8", "9"];

    /// True when calls and SMS through a number in `status` are refused (stateCode 8055).
    pub fn blocks_traffic(status: &str) -> bool {
        status == PAUSED || status == UNAVAILABLE
    }
}

/// One X-number status push: 1 to [`MAX_NUMBERS_PER_PUSH`] entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumStatusNotification {
    #[serde(default = "num_status")]
    pub event_type: EventType,
    #[serde(default)]
    pub num_info: Vec<NumInfo>,
}

fn num_status() -> EventType {
    EventType::NumStatus
}

impl NumStatusNotification {
    pub fn new(num_info: Vec<NumInfo>) -> Self {
        NumStatusNotification {
            event_type: EventType::NumStatus,
            num_info,
        }
    }
}

/// One number's status (§3). `status` and `cause` are strings, read from numbers too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumInfo {
    #[serde(default, deserialize_with = "de::string")]
    pub number: String,
    /// One of [`number_status`].
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    /// Only with status [`number_status::UNAVAILABLE`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub cause: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_and_cause_are_strings() {
        let n = NumStatusNotification::new(vec![NumInfo {
            number: "+8617000000009".into(),
            status: number_status::UNAVAILABLE.into(),
            cause: Some("2".into()),
        }]);
        let body = json!({"eventType":"numStatus","numInfo":[
            {"number":"+8617000000009","status":"10","cause":"2"}]});
        assert_eq!(serde_json::to_value(&n).unwrap(), body);
        let read: NumStatusNotification = serde_json::from_value(
            json!({"eventType":"numStatus","numInfo":[{"number":"+8617000000009","status":5}]}),
        )
        .unwrap();
        assert_eq!(read.num_info[0].status, "5");
        assert!(number_status::blocks_traffic("9") && !number_status::blocks_traffic("11"));
    }
}
