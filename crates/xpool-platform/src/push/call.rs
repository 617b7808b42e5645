//! Call events (notifications.md §1) and the answer to an X-mode Block `callin` (§1.5).

use serde::{Deserialize, Serialize};

use super::EventType;
use crate::de;

/// `notifyMode` of an X-mode `callin`: the customer must answer with routing (§1.4).
pub const BLOCK: &str = "Block";
/// `notifyMode` / `notificationMode` of an informational push.
pub const NOTIFY: &str = "Notify";

/// A call event: `{"eventType": …, "statusInfo": {…}}` (§1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    pub event_type: EventType,
    #[serde(default)]
    pub status_info: StatusInfo,
}

/// The fields of one call event (§1.2); which are present depends on the event and the mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusInfo {
    /// `yyyy-MM-dd HH:mm:ss`, UTC (§0.4; see [`crate::time::parse_event_time`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The call's correlation key, the same in every event and in the CDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Calling number of the reported leg (not necessarily the real A/B).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Called number of the reported leg (X on `callin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub called: Option<String>,
    /// The binding the call matched; absent in X mode and when none matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The binding's `userData`; in X mode the echo of the Block answer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// X-mode `callin` only: [`BLOCK`] or [`NOTIFY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_mode: Option<String>,
    /// `disconnect` only: the hang-up reason, a JSON number (§1.7, [`super::state`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub state_code: Option<u64>,
    /// `disconnect` only: English text of `stateCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_desc: Option<String>,
    /// `collectInfo` only (AXE): the digits keyed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digit_info: Option<String>,
    /// Seen only in a Huawei SDK demo (UNCERTAIN); parsed, never written by the simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_callee_num: Option<String>,
    /// Seen only in a Huawei SDK demo (UNCERTAIN); parsed, never written by the simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_caller_num: Option<String>,
    /// AXE extension (UNCERTAIN on call events); parsed, never written by the simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend_num: Option<String>,
}

impl StatusInfo {
    /// True for an X-mode `callin` that waits for a routing answer (case-insensitive, as
    /// Huawei's demo compares).
    pub fn is_block(&self) -> bool {
        self.notify_mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(BLOCK))
    }
}

/// What the customer tells the platform to do with an X-mode call (§1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallinOperation {
    /// Forward the call as `connectInfo` says.
    Connect,
    /// End the call (the caller hears `closeInfo.closeHintTone`); `stateCode` 8017.
    Close,
}

/// The body of the 200 answer to a Block `callin` (§1.5). Written with single objects; read
/// from a single object or a one-element array (Huawei's Java demo sends arrays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallinAnswer {
    pub operation: CallinOperation,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_one_or_first"
    )]
    pub connect_info: Option<ConnectInfo>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_one_or_first"
    )]
    pub close_info: Option<CloseInfo>,
}

impl CallinAnswer {
    /// Connect the caller to `info.callee_num`.
    pub fn connect(info: ConnectInfo) -> Self {
        CallinAnswer {
            operation: CallinOperation::Connect,
            connect_info: Some(info),
            close_info: None,
        }
    }

    /// End the call.
    pub fn close(info: CloseInfo) -> Self {
        CallinAnswer {
            operation: CallinOperation::Close,
            connect_info: None,
            close_info: Some(info),
        }
    }
}

/// ApiConnectInfo (§1.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectInfo {
    /// The real party to dial, global format.
    #[serde(default)]
    pub callee_num: String,
    /// Caller ID shown to the callee; default (and carrier rule) the X of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_callee_num: Option<String>,
    /// Longest talk time in minutes, 0..=1440 (0: no limit).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_voice: Option<String>,
    /// Written as the string `"true"`/`"false"` like the demo; read from either form.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub record_flag: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    /// Echoed in the call's later events and in its CDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// ApiCloseInfo (§1.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_hint_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_write_documented_types_and_omit_absent_fields() {
        let event = CallEvent {
            event_type: EventType::Disconnect,
            status_info: StatusInfo {
                timestamp: Some("2024-03-01 02:17:40".into()),
                session_id: Some("s1".into()),
                state_code: Some(0),
                state_desc: Some("The user releases the call.".into()),
                ..Default::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"eventType":"disconnect","statusInfo":{"timestamp":"2024-03-01 02:17:40",
                "sessionId":"s1","stateCode":0,"stateDesc":"The user releases the call."}})
        );
        let read: CallEvent = serde_json::from_value(
            json!({"eventType":"callin","statusInfo":{"notifyMode":"block",
                "stateCode":"8014","novel":1}}),
        )
        .unwrap();
        assert!(read.status_info.is_block());
        assert_eq!(read.status_info.state_code, Some(8014));
    }

    #[test]
    fn block_answers_are_written_as_objects_and_read_from_objects_or_arrays() {
        let answer = CallinAnswer::connect(ConnectInfo {
            callee_num: "+8613700000002".into(),
            max_duration: Some(30),
            record_flag: Some(true),
            user_data: Some("order-778".into()),
            ..Default::default()
        });
        let written = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            written,
            json!({"operation":"connect","connectInfo":{"calleeNum":"+8613700000002",
                "maxDuration":30,"recordFlag":"true","userData":"order-778"}})
        );
        let from_array: CallinAnswer = serde_json::from_value(json!({"operation":"connect",
            "connectInfo":[{"calleeNum":"+8613700000002","maxDuration":"30","recordFlag":true,
            "userData":"order-778"}]}))
        .unwrap();
        assert_eq!(from_array, answer);
        let close: CallinAnswer =
            serde_json::from_value(json!({"operation":"close","closeInfo":[{"userData":"u"}]}))
                .unwrap();
        assert_eq!(close.close_info.unwrap().user_data.as_deref(), Some("u"));
        assert!(serde_json::from_value::<CallinAnswer>(json!({"operation":"transfer"})).is_err());
    }
}
