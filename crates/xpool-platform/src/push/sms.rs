//! SMS notifications (notifications.md §4): `{"appKey": …, "smsEvent": {…}}`, and the answer to a
//! Block-mode one (§4.3).

use serde::{Deserialize, Serialize};

use super::call::BLOCK;
use crate::de;

/// `event` of a text message (one example has `"Text SMS "`: compare trimmed, ignoring spaces).
pub const TEXT_SMS: &str = "TextSMS";

/// One SMS push.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsNotification {
    #[serde(default, deserialize_with = "de::string")]
    pub app_key: String,
    #[serde(default)]
    pub sms_event: SmsEvent,
}

/// The SMS event (§4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsEvent {
    /// Unique SMS id; with `notificationMode` the dedupe key (§6).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub sms_identifier: Option<String>,
    /// `Notify` (forwarded, informational) or `Block` (the customer decides, §4.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_mode: Option<String>,
    /// The real sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling: Option<String>,
    /// The real receiver, only once the platform forwarded the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub called: Option<String>,
    /// The X number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_number: Option<String>,
    /// [`TEXT_SMS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// ISO-8601 UTC with milliseconds (see [`crate::time::parse_sms_time`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<String>,
    /// The binding (AX, AXB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The text, when support enabled "SMS notification carries content".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_content: Option<String>,
    /// Reserved; keys seen: `splitNum`, `direction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_info: Option<ExtInfo>,
    /// Forwarding result: examples show 0 on Block and 2 on Notify pushes (meaning UNCERTAIN).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub send_result: Option<u64>,
}

impl SmsEvent {
    /// True for a Block push, which waits for an [`SmsBlockAnswer`].
    pub fn is_block(&self) -> bool {
        self.notification_mode
            .as_deref()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(BLOCK))
    }
}

/// `extInfo` (§4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtInfo {
    #[serde(default)]
    pub ext_paras: Vec<ExtPara>,
}

/// One `extParas` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtPara {
    #[serde(default, deserialize_with = "de::string")]
    pub key: String,
    #[serde(default, deserialize_with = "de::string")]
    pub value: String,
}

/// The body of the 200 answer to a Block SMS push (§4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsBlockAnswer {
    #[serde(default)]
    pub actions: Vec<SmsAction>,
}

/// What to do with a blocked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmsOperation {
    /// Forward it to `message.called`.
    #[serde(rename = "vNumberRoute")]
    VNumberRoute,
    /// Drop it.
    #[serde(rename = "DiscardMessage")]
    DiscardMessage,
}

/// One action of a Block answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsAction {
    pub operation: SmsOperation,
    /// Only for [`SmsOperation::VNumberRoute`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<SmsMessage>,
    /// Reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_paras: Option<Vec<ExtPara>>,
    /// AX only, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// Whom a routed message goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// The real receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub called: Option<String>,
    /// The same as the push's `calling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_answers_round_trip() {
        let answer = SmsBlockAnswer {
            actions: vec![SmsAction {
                operation: SmsOperation::VNumberRoute,
                message: Some(SmsMessage {
                    called: Some("+8613800000002".into()),
                    calling: Some("+8613800000001".into()),
                }),
                ext_paras: None,
                user_data: None,
            }],
        };
        let body = json!({"actions":[{"operation":"vNumberRoute",
            "message":{"called":"+8613800000002","calling":"+8613800000001"}}]});
        assert_eq!(serde_json::to_value(&answer).unwrap(), body);
        let demo: SmsBlockAnswer = serde_json::from_value(
            json!({"actions":[{"operation":"DiscardMessage","extParas":[]}]}),
        )
        .unwrap();
        assert_eq!(demo.actions[0].operation, SmsOperation::DiscardMessage);
    }
}
