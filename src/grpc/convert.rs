//! Conversions between the API's messages and the pool's types. Every field of an incoming
//! message is destructured, so a new proto field does not compile until it is handled here.

use prost_types::Timestamp;

use super::pb;
use crate::platform::{Mode, number};
use crate::pool::{BindParams, BindingKey, PoolError, quoted};
use crate::store::{BindingId, BindingRecord, BindingState, NumberState};

/// Longest lifetime of a binding: the platform's 90 days.
pub const MAX_TTL_SECONDS: u64 = 7_776_000;
/// Longest single call the platform allows, in minutes.
pub const MAX_CALL_MINUTES: u32 = 1_440;

fn invalid(field: &'static str, message: impl Into<String>) -> PoolError {
    PoolError::invalid(field, message)
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn party(field: &'static str, value: &str) -> Result<(), PoolError> {
    if number::is_global(value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{} is not an E.164 number (+, country code, 8–15 digits in all)",
                quoted(value)
            ),
        ))
    }
}

impl TryFrom<pb::BindRequest> for BindParams {
    type Error = PoolError;

    fn try_from(r: pb::BindRequest) -> Result<Self, PoolError> {
        let pb::BindRequest {
            app,
            party_a,
            party_b,
            area_code,
            any_area,
            ttl_seconds,
            request_id,
            x_number,
            extension,
            call_direction,
            record,
            max_call_minutes,
            user_data,
        } = r;
        if app.is_empty() {
            return Err(invalid("app", "required"));
        }
        if party_a.is_empty() {
            return Err(invalid("party_a", "required"));
        }
        party("party_a", &party_a)?;
        if !party_b.is_empty() {
            party("party_b", &party_b)?;
            if party_b == party_a {
                return Err(invalid("party_b", "must differ from party_a"));
            }
        }
        if !area_code.is_empty() && !number::is_area_code(&area_code) {
            return Err(invalid(
                "area_code",
                format!("{} is not an area code (2–6 digits)", quoted(&area_code)),
            ));
        }
        if ttl_seconds > MAX_TTL_SECONDS {
            return Err(invalid(
                "ttl_seconds",
                format!("at most {MAX_TTL_SECONDS} (90 days)"),
            ));
        }
        if request_id.len() > 128 || !request_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "request_id",
                "at most 128 printable ASCII characters",
            ));
        }
        if !x_number.is_empty() {
            party("x_number", &x_number)?;
        }
        if !extension.is_empty()
            && (extension.len() > 4 || !extension.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("extension", "1 to 4 digits"));
        }
        let call_direction = match pb::CallDirection::try_from(call_direction) {
            Ok(pb::CallDirection::Unspecified | pb::CallDirection::Both) => 0,
            Ok(pb::CallDirection::AToBOnly) => 1,
            Ok(pb::CallDirection::BToAOnly) => 2,
            Err(_) => {
                return Err(invalid(
                    "call_direction",
                    format!("unknown value {call_direction}"),
                ));
            }
        };
        if max_call_minutes > MAX_CALL_MINUTES {
            return Err(invalid(
                "max_call_minutes",
                format!("at most {MAX_CALL_MINUTES}"),
            ));
        }
        if !user_data.is_empty() && !number::is_valid_user_data(&user_data) {
            return Err(invalid(
                "user_data",
                "at most 256 characters, without braces or CJK characters",
            ));
        }
        Ok(BindParams {
            app,
            party_a,
            party_b: opt(party_b),
            area_code: opt(area_code),
            any_area,
            ttl_seconds,
            request_id: opt(request_id),
            x_number: opt(x_number),
            extension: opt(extension),
            call_direction,
            record,
            max_call_minutes,
            user_data: opt(user_data),
        })
    }
}

/// A binding named by id, or by app + request_id.
pub fn binding_key(
    binding_id: &str,
    request_id: String,
    app: String,
) -> Result<BindingKey, PoolError> {
    match (binding_id.is_empty(), request_id.is_empty()) {
        (false, true) => BindingId::parse(binding_id)
            .map(BindingKey::Id)
            .ok_or_else(|| {
                invalid(
                    "binding_id",
                    format!("{} is not a binding id", quoted(binding_id)),
                )
            }),
        (true, false) if app.is_empty() => Err(invalid("app", "required with request_id")),
        (true, false) => Ok(BindingKey::Request { app, request_id }),
        (false, false) => Err(invalid(
            "binding_id",
            "give binding_id or request_id, not both",
        )),
        (true, true) => Err(invalid("binding_id", "give binding_id or request_id")),
    }
}

pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn mode(m: Mode) -> pb::Mode {
    match m {
        Mode::Ax => pb::Mode::Ax,
        Mode::Axb => pb::Mode::Axb,
        Mode::Axe => pb::Mode::Axe,
        Mode::Axyb => pb::Mode::Axyb,
        Mode::X => pb::Mode::X,
    }
}

pub fn state(s: BindingState) -> pb::BindingState {
    match s {
        BindingState::Pending => pb::BindingState::Pending,
        BindingState::Active => pb::BindingState::Active,
        BindingState::Releasing => pb::BindingState::Releasing,
        BindingState::Released => pb::BindingState::Released,
        BindingState::Expired => pb::BindingState::Expired,
    }
}

pub fn state_filter(value: i32) -> Result<Option<BindingState>, PoolError> {
    Ok(match pb::BindingState::try_from(value) {
        Ok(pb::BindingState::Unspecified) => None,
        Ok(pb::BindingState::Pending) => Some(BindingState::Pending),
        Ok(pb::BindingState::Active) => Some(BindingState::Active),
        Ok(pb::BindingState::Releasing) => Some(BindingState::Releasing),
        Ok(pb::BindingState::Released) => Some(BindingState::Released),
        Ok(pb::BindingState::Expired) => Some(BindingState::Expired),
        Err(_) => return Err(invalid("state", format!("unknown value {value}"))),
    })
}

pub fn number_state(s: NumberState) -> pb::NumberState {
    match s {
        NumberState::Active => pb::NumberState::Active,
        NumberState::Draining => pb::NumberState::Draining,
        NumberState::Frozen => pb::NumberState::Frozen,
        NumberState::Removed => pb::NumberState::Removed,
    }
}

impl From<BindingRecord> for pb::Binding {
    fn from(b: BindingRecord) -> pb::Binding {
        let call_direction = match b.call_direction {
            1 => pb::CallDirection::AToBOnly,
            2 => pb::CallDirection::BToAOnly,
            _ => pb::CallDirection::Both,
        };
        pb::Binding {
            binding_id: b.id.to_string(),
            app: b.app,
            mode: mode(b.mode).into(),
            state: state(b.state).into(),
            x_number: b.x,
            extension: b.extension.unwrap_or_default(),
            y_number: b.y.unwrap_or_default(),
            party_a: b.party_a,
            party_b: b.party_b.unwrap_or_default(),
            area_code: b.area_code,
            subscription_id: b.subscription_id.unwrap_or_default(),
            created_at: Some(timestamp(b.created_at_ms)),
            expires_at: b.expires_at_ms.map(timestamp),
            user_data: b.user_data.unwrap_or_default(),
            reason: b.reason,
            request_id: b.request_id.unwrap_or_default(),
            call_direction: call_direction.into(),
            record: b.record,
            max_call_minutes: b.max_call_minutes,
            updated_at: Some(timestamp(b.updated_at_ms)),
        }
    }
}
