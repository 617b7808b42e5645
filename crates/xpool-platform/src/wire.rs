//! JSON bodies and query parameters of the binding endpoints (binding-api.md §2).
//!
//! Requests serialize with the documented types (booleans as `"true"`/`"false"` strings where the
//! docs say `String enum`); responses deserialize tolerantly: numbers or strings, unknown fields
//! ignored, absent lists empty. Field names are the platform's camelCase names.

use serde::{Deserialize, Serialize};

use super::de;

/// The fields every response carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(deserialize_with = "de::string")]
    pub resultcode: String,
    #[serde(default, deserialize_with = "de::string")]
    pub resultdesc: String,
}

/// How the platform matches `areaCode` when it chooses X itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AreaMatch {
    /// `"0"`: only numbers of that city (the platform's default).
    #[default]
    #[serde(rename = "0")]
    Strict,
    /// `"1"`: if the city has none, any number of the app.
    #[serde(rename = "1")]
    Loose,
}

/// `timeUnit` of AXE lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TimeUnit {
    #[default]
    #[serde(rename = "0")]
    Hours,
    #[serde(rename = "1")]
    Minutes,
}

impl TimeUnit {
    pub fn seconds(self) -> u64 {
        match self {
            TimeUnit::Hours => 3600,
            TimeUnit::Minutes => 60,
        }
    }
}

/// Tones played before a call is connected (file names uploaded in the console).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreVoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_hint_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_hint_tone: Option<String>,
}

/// Query parameters of a GET or DELETE, in order; values are percent-encoded when sent.
pub type Query = Vec<(&'static str, String)>;

// ----------------------------------------------------------------------------------------------
// AXB (§2.1)

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxbBindRequest {
    pub caller_num: String,
    pub callee_num: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_match_mode: Option<AreaMatch>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub record_flag: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub private_sms: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<PreVoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxbBindResponse {
    #[serde(deserialize_with = "de::string")]
    pub subscription_id: String,
    #[serde(default)]
    pub relation_num: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
}

/// AXB unbind selector: one binding, or every binding on an X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxbUnbind {
    Subscription(String),
    /// Removes **every** live binding on this X.
    RelationNum(String),
}

impl AxbUnbind {
    pub fn query(&self) -> Query {
        match self {
            AxbUnbind::Subscription(id) => vec![("subscriptionId", id.clone())],
            AxbUnbind::RelationNum(x) => vec![("relationNum", x.clone())],
        }
    }
}

/// AXB modify: absent fields stay unchanged; `duration` restarts the platform's timer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxbModifyRequest {
    pub subscription_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_num: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub private_sms: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub record_flag: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<PreVoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// AXB query selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxbQuery {
    Subscription(String),
    /// Bindings on X: all of them (paged), or the one holding `caller` and/or `callee`.
    RelationNum {
        relation_num: String,
        caller: Option<String>,
        callee: Option<String>,
        page_index: Option<u32>,
        page_size: Option<u32>,
    },
}

impl AxbQuery {
    /// Every binding on `x`, one page.
    pub fn page(x: &str, page_index: u32, page_size: u32) -> Self {
        AxbQuery::RelationNum {
            relation_num: x.to_owned(),
            caller: None,
            callee: None,
            page_index: Some(page_index),
            page_size: Some(page_size),
        }
    }

    pub fn query(&self) -> Query {
        match self {
            AxbQuery::Subscription(id) => vec![("subscriptionId", id.clone())],
            AxbQuery::RelationNum {
                relation_num,
                caller,
                callee,
                page_index,
                page_size,
            } => {
                let mut q = vec![("relationNum", relation_num.clone())];
                q.extend(caller.clone().map(|v| ("callerNum", v)));
                q.extend(callee.clone().map(|v| ("calleeNum", v)));
                q.extend(page_index.map(|v| ("pageIndex", v.to_string())));
                q.extend(page_size.map(|v| ("pageSize", v.to_string())));
                q
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxbQueryResponse {
    #[serde(default, deserialize_with = "de::u64_or_zero")]
    pub total_count: u64,
    #[serde(default)]
    pub relation_num_list: Vec<AxbRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxbRecord {
    #[serde(deserialize_with = "de::string")]
    pub subscription_id: String,
    #[serde(default)]
    pub relation_num: String,
    #[serde(default)]
    pub caller_num: String,
    #[serde(default)]
    pub callee_num: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    /// The configured lifetime in seconds (0 = never expires), not the time left.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub record_flag: Option<bool>,
    /// Tones and SMS: returned "probably" (binding-api.md §2.1.4), read when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub private_sms: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<PreVoice>,
    /// Creation or last modification, `yyyy-MM-dd HH:mm:ss`, platform time (UTC+8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

// ----------------------------------------------------------------------------------------------
// AX (§2.2)

/// `privateNumType`, the only documented value.
pub const PRIVATE_NUM_TYPE: &str = "mobile-virtual";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxBindRequest {
    pub orig_num: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    /// Required with `area_code`: always [`PRIVATE_NUM_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_num_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_match_mode: Option<AreaMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_num_display: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub record_flag: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub private_sms: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<PreVoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_flag: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxBindResponse {
    #[serde(default)]
    pub orig_num: String,
    #[serde(default)]
    pub private_num: String,
    #[serde(deserialize_with = "de::string")]
    pub subscription_id: String,
}

/// AX unbind / query selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxSelector {
    Subscription(String),
    /// The X (an X holds at most one A).
    PrivateNum(String),
    /// Query only: every X of this A (at most 5).
    OrigNum(String),
}

impl AxSelector {
    pub fn query(&self) -> Query {
        match self {
            AxSelector::Subscription(id) => vec![("subscriptionId", id.clone())],
            AxSelector::PrivateNum(x) => vec![("privateNum", x.clone())],
            AxSelector::OrigNum(a) => vec![("origNum", a.clone())],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxModifyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_num: Option<String>,
    /// New A; absent = unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_num: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub private_sms: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub record_flag: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxQueryResponse {
    #[serde(default)]
    pub private_num_list: Vec<AxRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxRecord {
    #[serde(default)]
    pub orig_num: String,
    #[serde(default)]
    pub private_num: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_num_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_time: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub subscription_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub record_flag: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub max_duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    /// Tones and SMS: the exact field list of the AX record is not documented (§2.2.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_bool_str",
        deserialize_with = "de::opt_bool"
    )]
    pub private_sms: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<PreVoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// AX "set temporary callee" (§2.2.5): lets A call `callee_num` through X for `duration` seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxSetCalleeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_num: Option<String>,
    pub callee_num: String,
    /// Seconds, 1..=259200; the platform's default is 60.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

// ----------------------------------------------------------------------------------------------
// AXE (§2.3)

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeBindRequest {
    pub bind_num: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_match_mode: Option<AreaMatch>,
    /// Requested extension; honoured only with `virtual_num`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub extend_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_num_mode: Option<String>,
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
    pub callback_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unit: Option<TimeUnit>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub bind_expired_time: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub callback_expired_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeBindResponse {
    #[serde(deserialize_with = "de::string")]
    pub subscription_id: String,
    #[serde(default)]
    pub virtual_num: String,
    #[serde(default, deserialize_with = "de::string")]
    pub extend_num: String,
}

/// AXE single-binding selector: a subscription, or an X with its extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxeSelector {
    Subscription(String),
    Slot {
        virtual_num: String,
        extend_num: String,
    },
}

impl AxeSelector {
    pub fn query(&self) -> Query {
        match self {
            AxeSelector::Subscription(id) => vec![("subscriptionId", id.clone())],
            AxeSelector::Slot {
                virtual_num,
                extend_num,
            } => {
                vec![
                    ("virtualNum", virtual_num.clone()),
                    ("extendNum", extend_num.clone()),
                ]
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeModifyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_num: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub extend_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_num_mode: Option<String>,
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
    pub callback_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unit: Option<TimeUnit>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub bind_expired_time: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub callback_expired_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// One AXE binding as the queries return it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeRecord {
    #[serde(deserialize_with = "de::string")]
    pub subscription_id: String,
    #[serde(default)]
    pub virtual_num: String,
    #[serde(default, deserialize_with = "de::string")]
    pub extend_num: String,
    #[serde(default)]
    pub bind_num: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_num_mode: Option<String>,
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
    pub callback_tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_num: Option<String>,
    /// The bind-time unit, even after a modify changed it (a documented quirk of v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unit: Option<TimeUnit>,
    /// The bind-time lifetime, even after a modify changed it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub bind_expired_time: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub callback_expired_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// The v1 query answers one record as top-level fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AxeQueryV1Response {
    #[serde(flatten)]
    pub record: AxeRecord,
}

/// The cursor of the first v2 page.
pub const AXE_FIRST_CURSOR: &str = "0000000000000_0";

/// AXE query v2 selector: one binding, or a page of every binding on an X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxeQueryV2 {
    One(AxeSelector),
    Page {
        virtual_num: String,
        cursor: String,
        limit: Option<u32>,
    },
}

impl AxeQueryV2 {
    pub fn query(&self) -> Query {
        match self {
            AxeQueryV2::One(selector) => selector.query(),
            AxeQueryV2::Page {
                virtual_num,
                cursor,
                limit,
            } => {
                let mut q = vec![
                    ("virtualNum", virtual_num.clone()),
                    ("cursor", cursor.clone()),
                ];
                q.extend(limit.map(|l| ("limit", l.to_string())));
                q
            }
        }
    }
}

/// A v2 page. The list's field name is not documented (binding-api.md §2.3.5); common spellings
/// are accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeQueryV2Response {
    #[serde(default, alias = "bindList", alias = "list", alias = "extendNumList")]
    pub bind_info_list: Vec<AxeRecord>,
    /// Absent or empty on the last page. The docs once spell it `nextCusor`.
    #[serde(default, alias = "nextCusor", skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// AXE binding-count query: one X, or a page over all Xs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxeCountQuery {
    Number(String),
    Page { cursor: String, limit: Option<u32> },
}

impl AxeCountQuery {
    pub fn query(&self) -> Query {
        match self {
            AxeCountQuery::Number(x) => vec![("number", x.clone())],
            AxeCountQuery::Page { cursor, limit } => {
                let mut q = vec![("cursor", cursor.clone())];
                q.extend(limit.map(|l| ("limit", l.to_string())));
                q
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeCountResponse {
    #[serde(default, alias = "numberList")]
    pub virtual_num_list: Vec<AxeCount>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeCount {
    #[serde(alias = "number")]
    pub virtual_num: String,
    #[serde(default, deserialize_with = "de::u64_or_zero", alias = "count")]
    pub bind_count: u64,
}

// ----------------------------------------------------------------------------------------------
// AXYB (§2.4)

/// AXYB step 1: binds A to an X the platform picks in `area_code`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxybAxRequest {
    pub orig_num: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_match_mode: Option<AreaMatch>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    /// Seconds; 0 never expires; the platform's default is 7200.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub yb_duration: Option<u64>,
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
    pub user_data: Option<String>,
}

/// AXYB step 2: binds B to a Y under the AX binding `subscription_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxybYbRequest {
    /// B.
    pub orig_num: String,
    pub subscription_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_match_mode: Option<AreaMatch>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub yb_duration: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxybBindResponse {
    #[serde(deserialize_with = "de::string")]
    pub subscription_id: String,
    /// X for the AX step, Y for the YB step.
    #[serde(default)]
    pub relation_number: String,
}

/// AXYB unbind: the AX with all its YBs, or one YB (by Y, or by B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxybUnbind {
    pub subscription_id: String,
    pub y_num: Option<String>,
    pub b_num: Option<String>,
}

impl AxybUnbind {
    pub fn query(&self) -> Query {
        let mut q = vec![("subscriptionId", self.subscription_id.clone())];
        q.extend(self.y_num.clone().map(|y| ("yNum", y)));
        q.extend(self.b_num.clone().map(|b| ("bNum", b)));
        q
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxybQuery {
    Subscription(String),
    RelationNum(String),
}

impl AxybQuery {
    pub fn query(&self) -> Query {
        match self {
            AxybQuery::Subscription(id) => vec![("subscriptionId", id.clone())],
            AxybQuery::RelationNum(x) => vec![("relationNum", x.clone())],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxybQueryResponse {
    #[serde(default)]
    pub xy_relation_num_list: Vec<AxybRecord>,
}

/// One AX relation, with one of its YB relations when it has any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxybRecord {
    /// The AX step's subscriptionId.
    #[serde(deserialize_with = "de::string")]
    pub bind_id: String,
    #[serde(default)]
    pub num_a: String,
    #[serde(default)]
    pub num_x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_b: Option<String>,
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
    pub subscribe_time: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_direction: Option<u64>,
    /// Documented as a string.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_u64_str",
        deserialize_with = "de::opt_u64"
    )]
    pub duration: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_u64_str",
        deserialize_with = "de::opt_u64"
    )]
    pub yb_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_serialize_with_documented_types() {
        let req = AxbBindRequest {
            caller_num: "+8613800000001".into(),
            callee_num: "+8613800000002".into(),
            relation_num: Some("+8617000000001".into()),
            duration: Some(3600),
            record_flag: Some(true),
            area_match_mode: Some(AreaMatch::Loose),
            ..Default::default()
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "callerNum": "+8613800000001", "calleeNum": "+8613800000002",
                "relationNum": "+8617000000001", "duration": 3600, "recordFlag": "true",
                "areaMatchMode": "1"
            })
        );
    }

    #[test]
    fn responses_parse_tolerantly() {
        let body = r#"{"resultcode":0,"resultdesc":"Success","totalCount":"2","extra":{"x":1},
            "relationNumList":[{"subscriptionId":"s1","relationNum":"+8617000000001",
            "callerNum":"+8613800000001","calleeNum":"+8613800000002","duration":"60",
            "recordFlag":false,"callDirection":"0"}]}"#;
        let env: Envelope = serde_json::from_str(body).unwrap();
        assert_eq!(env.resultcode, "0");
        let resp: AxbQueryResponse = serde_json::from_str(body).unwrap();
        assert_eq!(resp.total_count, 2);
        assert_eq!(resp.relation_num_list[0].duration, Some(60));
        assert_eq!(resp.relation_num_list[0].record_flag, Some(false));
        assert_eq!(resp.relation_num_list[0].call_direction, Some(0));
    }

    #[test]
    fn axe_v1_record_is_flat_and_v2_accepts_spellings() {
        let v1: AxeQueryV1Response = serde_json::from_str(
            r#"{"resultcode":"0","subscriptionId":"s","virtualNum":"+8617000000001","extendNum":12,"bindNum":"+8613800000001","timeUnit":"1"}"#,
        )
        .unwrap();
        assert_eq!(v1.record.extend_num, "12");
        assert_eq!(v1.record.time_unit, Some(TimeUnit::Minutes));
        let v2: AxeQueryV2Response =
            serde_json::from_str(r#"{"resultcode":"0","bindList":[],"nextCusor":"x"}"#).unwrap();
        assert_eq!(v2.next_cursor.as_deref(), Some("x"));
    }
}
