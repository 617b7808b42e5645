//! CDR notifications (notifications.md §2): `{"eventType":"fee","feeLst":[FeeInfo, …]}`.

use serde::{Deserialize, Serialize};

use super::EventType;
use crate::de;

/// Most CDRs in one push (§2.1).
pub const MAX_FEES_PER_PUSH: usize = 50;

/// `serviceType` values (§2.2).
pub mod service_type {
    pub const AX: &str = "003";
    /// AXB, and X mode (told apart by `notifyMode`).
    pub const AXB: &str = "004";
    pub const X: &str = "004";
    pub const AXE: &str = "005";
    pub const AXYB: &str = "007";
}

/// One CDR push: 1 to [`MAX_FEES_PER_PUSH`] records, each to be processed on its own (§2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeNotification {
    #[serde(default = "fee")]
    pub event_type: EventType,
    #[serde(default)]
    pub fee_lst: Vec<FeeInfo>,
}

fn fee() -> EventType {
    EventType::Fee
}

impl FeeNotification {
    pub fn new(fee_lst: Vec<FeeInfo>) -> Self {
        FeeNotification {
            event_type: EventType::Fee,
            fee_lst,
        }
    }
}

/// One call's CDR (§2.2). Integer-coded fields are written as JSON numbers and read from
/// numbers or numeric strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeInfo {
    /// Call direction: AXB `0` B called A, `1` A called B; AX `0` someone called A, `1` A called out; `2` abnormal (no binding).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub direction: Option<u64>,
    /// The customer's Huawei Cloud account id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub sp_id: Option<String>,
    /// The app's app_key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub app_key: Option<String>,
    /// Unique record id of the call: the dedupe key for CDRs (§6).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub icid: Option<String>,
    /// The privacy number (X, or Y in AXYB) the call used.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub bind_num: Option<String>,
    /// The same value as in the call's events.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub session_id: Option<String>,
    /// The binding; empty when the call matched none, absent in X mode.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub subscription_id: Option<String>,
    /// Caller of the first leg (who dialed X).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub caller_num: Option<String>,
    /// Callee of the first leg (normally X).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub callee_num: Option<String>,
    /// Caller ID shown on the forwarded leg.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub fwd_display_num: Option<String>,
    /// Where the call was forwarded (the real callee).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub fwd_dst_num: Option<String>,
    /// Start of the first leg (times: `yyyy-MM-dd HH:mm:ss` UTC).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub call_in_time: Option<String>,
    /// Forwarding started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub fwd_start_time: Option<String>,
    /// Forwarded party ringing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub fwd_alerting_time: Option<String>,
    /// Forwarded party answered; absent: never connected.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub fwd_answer_time: Option<String>,
    /// Call ended.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub call_end_time: Option<String>,
    /// Q.850 cause why forwarding failed (0: not applicable), §2.5.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub fwd_unasw_rsn: Option<u64>,
    /// When the call failed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub fail_time: Option<String>,
    /// Tear-down point (0: normal hang-up after connect), §2.4.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub ul_fail_reason: Option<u64>,
    /// SIP status of the failure (0: not applicable).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub sip_status_code: Option<u64>,
    /// Q.850 cause of an outbound-leg failure.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_out_unasw_rsn: Option<u64>,
    /// `1`: the call was recorded.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub record_flag: Option<u64>,
    /// Recording start.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub record_start_time: Option<String>,
    /// Recording file name (`fileName` of the download API, §5.1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub record_object_name: Option<String>,
    /// Recording bucket.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub record_bucket_name: Option<String>,
    /// Recording domain (`recordDomain` of the download API, §5.1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub record_domain: Option<String>,
    /// [`service_type`]: `003` AX, `004` AXB or X, `005` AXE, `007` AXYB.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub service_type: Option<String>,
    /// Host that produced the CDR.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub host_name: Option<String>,
    /// X mode: the Block answer's `userData`; other modes only if support enabled it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub user_data: Option<String>,
    /// X mode only, always `Block` (tells X from AXB, both `004`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub notify_mode: Option<String>,
    /// AXE: the extension. Read from `extendNum` or `extendNumber` (UNCERTAIN name).
    #[serde(
        default,
        alias = "extendNumber",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub extend_num: Option<String>,
    /// City code of X (only if support enabled it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub area_code: Option<String>,
    /// Talk seconds (only if support enabled it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_duration: Option<u64>,
    /// Who hung up: 1 caller, 2 callee (only if support enabled it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_u64"
    )]
    pub call_rel_direction: Option<u64>,
}

impl FeeInfo {
    /// Connected iff the forwarded party answered (§2.2, derived values).
    pub fn connected(&self) -> bool {
        self.fwd_answer_time.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_example_round_trips_with_its_types() {
        // notifications.md §2.3, trimmed.
        let body = json!({"eventType":"fee","feeLst":[{"direction":1,"spId":"acme_sp",
            "appKey":"Ab12","icid":"7f3e.2","bindNum":"+8617000000009","sessionId":"s1",
            "subscriptionId":"8d1f","callerNum":"+8613900000001","calleeNum":"+8617000000009",
            "fwdDisplayNum":"+8617000000009","fwdDstNum":"+8613700000002",
            "callInTime":"2024-03-01 02:14:55","fwdAnswerTime":"2024-03-01 02:15:07",
            "callEndTime":"2024-03-01 02:17:40","fwdUnaswRsn":0,"ulFailReason":0,
            "sipStatusCode":0,"callOutUnaswRsn":0,"recordFlag":1,"serviceType":"004",
            "hostName":"callenabler245.huaweicaas.com"}]});
        let fees: FeeNotification = serde_json::from_value(body.clone()).unwrap();
        assert!(fees.fee_lst[0].connected());
        assert_eq!(fees.fee_lst[0].record_flag, Some(1));
        assert_eq!(serde_json::to_value(&fees).unwrap(), body);
    }

    #[test]
    fn numbers_as_strings_and_the_other_extension_name_are_read() {
        let fees: FeeNotification = serde_json::from_value(json!({"feeLst":[
            {"direction":"2","ulFailReason":"8014","extendNumber":"0012","serviceType":5}]}))
        .unwrap();
        assert_eq!(fees.event_type, EventType::Fee);
        let fee = &fees.fee_lst[0];
        assert_eq!((fee.direction, fee.ul_fail_reason), (Some(2), Some(8014)));
        assert_eq!(fee.extend_num.as_deref(), Some("0012"));
        assert_eq!(fee.service_type.as_deref(), Some("5"));
        assert!(!fee.connected());
    }
}
