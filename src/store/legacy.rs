//! Record layouts written by earlier builds, kept so that stores written then still open; each
//! converts into today's record (`codec::Stored::from_older` reads them). Never change one:
//! its fields and their order are what is on disk.

use serde::{Deserialize, Serialize};

use super::records::{
    BindingId, BindingRecord, BindingState, CallOptionsRecord, NumberRecord, NumberState,
    PlatformStatus,
};
use crate::platform::Mode;

/// A binding as version 1 stored it: three call options as plain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BindingRecordV1 {
    pub id: BindingId,
    pub app: String,
    pub mode: Mode,
    pub state: BindingState,
    pub x: String,
    pub extension: Option<String>,
    pub y: Option<String>,
    pub party_a: String,
    pub party_b: Option<String>,
    pub area_code: String,
    pub subscription_id: Option<String>,
    pub request_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub released_at_ms: Option<i64>,
    pub ttl_seconds: u64,
    /// 0 both ways (also "not set"), 1 only A calls B, 2 only B calls A.
    pub call_direction: u8,
    /// Sent to the platform only when true.
    pub record: bool,
    /// 0: no limit (not sent).
    pub max_call_minutes: u32,
    pub user_data: Option<String>,
    pub reason: String,
}

/// Version 1 sent the direction always (0 for "not set" too), recording and the call limit only
/// when on: their "off" values are what the platform does unasked, so they become "not set".
impl From<BindingRecordV1> for BindingRecord {
    fn from(r: BindingRecordV1) -> Self {
        BindingRecord {
            id: r.id,
            app: r.app,
            mode: r.mode,
            state: r.state,
            x: r.x,
            extension: r.extension,
            y: r.y,
            party_a: r.party_a,
            party_b: r.party_b,
            area_code: r.area_code,
            subscription_id: r.subscription_id,
            request_id: r.request_id,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            expires_at_ms: r.expires_at_ms,
            released_at_ms: r.released_at_ms,
            ttl_seconds: r.ttl_seconds,
            call_options: CallOptionsRecord {
                call_direction: (r.call_direction != 0).then_some(r.call_direction),
                record: r.record.then_some(true),
                max_call_minutes: (r.max_call_minutes != 0).then_some(r.max_call_minutes),
                ..CallOptionsRecord::default()
            },
            user_data: r.user_data,
            reason: r.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::{decode, encode_as};

    fn v1() -> BindingRecordV1 {
        BindingRecordV1 {
            id: BindingId([7; 16]),
            app: "ride".into(),
            mode: Mode::Axb,
            state: BindingState::Active,
            x: "+8613800000000".into(),
            extension: None,
            y: None,
            party_a: "+8613900000001".into(),
            party_b: Some("+8613900000002".into()),
            area_code: "0755".into(),
            subscription_id: Some("sub-1".into()),
            request_id: Some("req-1".into()),
            created_at_ms: 1,
            updated_at_ms: 2,
            expires_at_ms: Some(3),
            released_at_ms: None,
            ttl_seconds: 60,
            call_direction: 1,
            record: true,
            max_call_minutes: 30,
            user_data: Some("order-7".into()),
            reason: "least used".into(),
        }
    }

    /// [`v1`] as a version-1 build wrote it: version byte, then bincode.
    const V1_BYTES: &str = "0107070707070707070707070707070707047269646501010e2b3836313338303030303030303000000e2b38363133393030303030303031010e2b38363133393030303030303032043037353501057375622d3101057265712d3102040106003c01011e01076f726465722d370a6c656173742075736564";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_version_1_layout_is_pinned() {
        assert_eq!(hex(&encode_as(1, &v1())), V1_BYTES);
    }

    #[test]
    fn a_version_1_record_on_disk_decodes_with_its_call_options() {
        let rec: BindingRecord = decode("bindings", b"k", &unhex(V1_BYTES)).unwrap();
        let expected_options = CallOptionsRecord {
            call_direction: Some(1),
            record: Some(true),
            max_call_minutes: Some(30),
            ..Default::default()
        };
        assert_eq!(rec.call_options, expected_options);
        assert_eq!(
            (rec.id, rec.state, rec.x.as_str(), rec.ttl_seconds),
            (
                BindingId([7; 16]),
                BindingState::Active,
                "+8613800000000",
                60
            )
        );
        assert_eq!(rec.user_data.as_deref(), Some("order-7"));
        assert_eq!(rec.reason, "least used");
        // The defaults of version 1 become "not set".
        let plain = BindingRecordV1 {
            call_direction: 0,
            record: false,
            max_call_minutes: 0,
            ..v1()
        };
        let rec: BindingRecord = decode("bindings", b"k", &encode_as(1, &plain)).unwrap();
        assert_eq!(rec.call_options, CallOptionsRecord::default());
        // Written again, it is version 2.
        assert_eq!(crate::store::codec::encode(&rec)[0], 2);
    }
}

/// A number as version 1 stored it: without the platform's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NumberRecordV1 {
    pub app: String,
    pub number: String,
    pub area_code: String,
    pub state: NumberState,
    pub needs_reconcile: bool,
    pub updated_at_ms: i64,
}

/// Version 1 knew no status pushes: the platform had said nothing, so the status is normal.
impl From<NumberRecordV1> for NumberRecord {
    fn from(r: NumberRecordV1) -> Self {
        NumberRecord {
            app: r.app,
            number: r.number,
            area_code: r.area_code,
            state: r.state,
            needs_reconcile: r.needs_reconcile,
            updated_at_ms: r.updated_at_ms,
            platform_status: PlatformStatus::Normal,
            status_cause: None,
        }
    }
}
