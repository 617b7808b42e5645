//! The API's messages as proto3 JSON, built by hand from their fields (the binary carries no
//! reflection): keys are the proto field names in lowerCamelCase, as grpcurl prints them; enums
//! by name (`BINDING_STATE_ACTIVE`), `int64` as strings, timestamps in RFC 3339 (UTC).
//! Unlike grpcurl, every field is there, so scripts can rely on the keys: empty strings, zeros
//! and `false` as such, unset messages and unset `optional` fields as `null`.
//!
//! Every message is destructured field by field, so a field added to the proto does not
//! compile until it is printed here.

use prost_types::Timestamp;
use serde_json::{Value, json};
use xpool::grpc::pb;

/// A timestamp as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as protobuf's JSON
/// mapping writes it; `null` when unset (or out of range).
pub fn timestamp(t: &Option<Timestamp>) -> Value {
    t.as_ref()
        .and_then(rfc3339)
        .map_or(Value::Null, Value::String)
}

/// `2026-05-01T08:00:00Z`, `2026-05-01T08:00:00.250Z`.
pub fn rfc3339(t: &Timestamp) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    let fraction = match nanos {
        0 => String::new(),
        n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
        n if n % 1_000 == 0 => format!(".{:06}", n / 1_000),
        n => format!(".{n:09}"),
    };
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

/// An `int64` as proto3 JSON writes it: a string.
fn int64(n: i64) -> Value {
    Value::String(n.to_string())
}

/// An enum value by name, or its number when this build does not know it (as protobuf does).
fn enumeration(value: i32, name: Option<&'static str>) -> Value {
    name.map_or(Value::from(value), Value::from)
}

pub fn mode(m: i32) -> Value {
    enumeration(m, pb::Mode::try_from(m).ok().map(|m| m.as_str_name()))
}

pub fn binding_state(s: i32) -> Value {
    let name = pb::BindingState::try_from(s).ok().map(|s| s.as_str_name());
    enumeration(s, name)
}

pub fn number_state(s: i32) -> Value {
    let name = pb::NumberState::try_from(s).ok().map(|s| s.as_str_name());
    enumeration(s, name)
}

pub fn number_status(s: i32) -> Value {
    let name = pb::NumberStatus::try_from(s).ok().map(|s| s.as_str_name());
    enumeration(s, name)
}

pub fn watch_kind(k: i32) -> Value {
    let name = pb::WatchKind::try_from(k).ok().map(|k| k.as_str_name());
    enumeration(k, name)
}

pub fn binding(b: &pb::Binding) -> Value {
    let pb::Binding {
        binding_id,
        app,
        mode: m,
        state,
        x_number,
        extension,
        y_number,
        party_a,
        party_b,
        area_code,
        subscription_id,
        request_id,
        user_data,
        call_options: options,
        selection_reason,
        create_time,
        update_time,
        expire_time,
        release_time,
    } = b;
    json!({
        "bindingId": binding_id,
        "app": app,
        "mode": mode(*m),
        "state": binding_state(*state),
        "xNumber": x_number,
        "extension": extension,
        "yNumber": y_number,
        "partyA": party_a,
        "partyB": party_b,
        "areaCode": area_code,
        "subscriptionId": subscription_id,
        "requestId": request_id,
        "userData": user_data,
        "callOptions": options.as_ref().map_or(Value::Null, call_options),
        "selectionReason": selection_reason,
        "createTime": timestamp(create_time),
        "updateTime": timestamp(update_time),
        "expireTime": timestamp(expire_time),
        "releaseTime": timestamp(release_time),
    })
}

pub fn call_options(o: &pb::CallOptions) -> Value {
    let pb::CallOptions {
        call_direction,
        record,
        max_call_minutes,
        record_hint_tone,
        last_minute_tone,
        caller_hint_tone,
        callee_hint_tone,
        callback_tone,
        private_sms,
    } = o;
    let direction = pb::CallDirection::try_from(*call_direction)
        .ok()
        .map(|d| d.as_str_name());
    json!({
        "callDirection": enumeration(*call_direction, direction),
        "record": record,
        "maxCallMinutes": max_call_minutes,
        "recordHintTone": record_hint_tone,
        "lastMinuteTone": last_minute_tone,
        "callerHintTone": caller_hint_tone,
        "calleeHintTone": callee_hint_tone,
        "callbackTone": callback_tone,
        "privateSms": private_sms,
    })
}

pub fn number_info(n: &pb::NumberInfo) -> Value {
    let pb::NumberInfo {
        number,
        area_code,
        state,
        binding_count,
        free_extension_count,
        cooling_count,
        status,
    } = n;
    json!({
        "number": number,
        "areaCode": area_code,
        "state": number_state(*state),
        "bindingCount": binding_count,
        "freeExtensionCount": int64(*free_extension_count),
        "coolingCount": int64(*cooling_count),
        "status": number_status(*status),
    })
}

pub fn number_infos(numbers: &[pb::NumberInfo]) -> Value {
    Value::Array(numbers.iter().map(number_info).collect())
}

pub fn pool_stats(s: &pb::GetPoolStatsResponse) -> Value {
    let pb::GetPoolStatsResponse { app, areas } = s;
    json!({
        "app": app,
        "areas": areas.iter().map(area_stats).collect::<Vec<_>>(),
    })
}

pub fn area_stats(a: &pb::AreaStats) -> Value {
    let pb::AreaStats {
        area_code,
        total,
        bound,
        free,
        cooling_down,
        draining,
        free_extensions,
        held_by_platform,
    } = a;
    json!({
        "areaCode": area_code,
        "total": total,
        "bound": bound,
        "free": free,
        "coolingDown": cooling_down,
        "draining": draining,
        "freeExtensions": int64(*free_extensions),
        "heldByPlatform": held_by_platform,
    })
}

pub fn watch_event(e: &pb::WatchEvent) -> Value {
    use pb::watch_event::Payload;
    let pb::WatchEvent {
        resume_token,
        kind,
        app,
        event_time,
        payload,
    } = e;
    let mut out = json!({
        "resumeToken": resume_token,
        "kind": watch_kind(*kind),
        "app": app,
        "eventTime": timestamp(event_time),
    });
    let (key, value) = match payload {
        Some(Payload::Binding(b)) => ("binding", binding(b)),
        Some(Payload::NumberStatus(s)) => ("numberStatus", number_status_change(s)),
        Some(Payload::CallEvent(c)) => ("callEvent", call_event(c)),
        Some(Payload::Message(m)) => ("message", sms_message(m)),
        None => return out,
    };
    out[key] = value;
    out
}

fn number_status_change(s: &pb::NumberStatusChange) -> Value {
    let pb::NumberStatusChange {
        number,
        status,
        cause,
    } = s;
    json!({ "number": number, "status": number_status(*status), "cause": cause })
}

fn call_event(c: &pb::CallEvent) -> Value {
    let pb::CallEvent {
        call_id,
        app,
        session_id,
        event_type,
        event_type_name,
        event_time,
        caller,
        called,
        state_code,
        state_text,
        subscription_id,
        user_data,
        binding_id,
        receive_time,
    } = c;
    let type_name = pb::CallEventType::try_from(*event_type)
        .ok()
        .map(|t| t.as_str_name());
    json!({
        "callId": call_id,
        "app": app,
        "sessionId": session_id,
        "eventType": enumeration(*event_type, type_name),
        "eventTypeName": event_type_name,
        "eventTime": timestamp(event_time),
        "caller": caller,
        "called": called,
        "stateCode": state_code,
        "stateText": state_text,
        "subscriptionId": subscription_id,
        "userData": user_data,
        "bindingId": binding_id,
        "receiveTime": timestamp(receive_time),
    })
}

fn sms_message(m: &pb::SmsMessage) -> Value {
    let pb::SmsMessage {
        message_id,
        app,
        sms_identifier,
        notification_mode,
        calling,
        called,
        x_number,
        binding_id,
        subscription_id,
        send_time,
        segments,
        content,
        receive_time,
    } = m;
    json!({
        "messageId": message_id,
        "app": app,
        "smsIdentifier": sms_identifier,
        "notificationMode": notification_mode,
        "calling": calling,
        "called": called,
        "xNumber": x_number,
        "bindingId": binding_id,
        "subscriptionId": subscription_id,
        "sendTime": timestamp(send_time),
        "segments": segments,
        "content": content,
        "receiveTime": timestamp(receive_time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_protobuf_writes_them() {
        let at = |seconds, nanos| rfc3339(&Timestamp { seconds, nanos });
        assert_eq!(at(0, 0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            at(1_767_225_600, 250_000_000).as_deref(),
            Some("2026-01-01T00:00:00.250Z")
        );
        assert_eq!(
            at(1_767_225_600, 1_500).as_deref(),
            Some("2026-01-01T00:00:00.000001500Z")
        );
        assert_eq!(at(0, -1), None);
        assert_eq!(timestamp(&None), Value::Null);
    }

    #[test]
    fn a_binding_has_every_key_enums_by_name_and_unset_times_as_null() {
        let b = pb::Binding {
            binding_id: "b-1".into(),
            state: pb::BindingState::Active.into(),
            mode: 99,
            create_time: Some(Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = binding(&b);
        assert_eq!(v["bindingId"], "b-1");
        assert_eq!(v["state"], "BINDING_STATE_ACTIVE");
        assert_eq!(v["mode"], 99, "an unknown enum value as its number");
        assert_eq!(v["createTime"], "1970-01-01T00:00:00Z");
        assert_eq!(v["expireTime"], Value::Null);
        assert_eq!(v["callOptions"], Value::Null);
        assert_eq!(v["extension"], "");
        assert_eq!(v.as_object().map(|o| o.len()), Some(19));
    }

    #[test]
    fn int64_counts_are_strings() {
        let n = pb::NumberInfo {
            free_extension_count: 42,
            binding_count: 3,
            ..Default::default()
        };
        let v = number_info(&n);
        assert_eq!(v["freeExtensionCount"], "42");
        assert_eq!(v["bindingCount"], 3);
    }
}
