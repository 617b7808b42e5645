//! Conversions between the API's messages and the pool's types. Every field of an incoming
//! message is destructured, so a new proto field does not compile until it is handled here.

use prost_types::Timestamp;

use super::pb;
use crate::lifecycle::{
    AreaStats, BindParams, Binding, BindingId, BindingKey, BindingState, ListFilter, NumberState,
    NumberView, PoolError, quoted,
};
use crate::platform::{Mode, number};

/// Longest single call the platform allows, in minutes.
pub const MAX_CALL_MINUTES: u32 = 1_440;

fn invalid(field: &'static str, message: impl Into<String>) -> PoolError {
    PoolError::invalid(field, message)
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// INVALID_ARGUMENT `field: required` when `value` is empty.
pub fn required(field: &'static str, value: &str) -> Result<(), PoolError> {
    if value.is_empty() {
        Err(invalid(field, "required"))
    } else {
        Ok(())
    }
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
        required("app", &app)?;
        required("party_a", &party_a)?;
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

/// A binding id from a request's `field`.
pub fn binding_id(field: &'static str, value: &str) -> Result<BindingId, PoolError> {
    BindingId::parse(value)
        .ok_or_else(|| invalid(field, format!("{} is not a binding id", quoted(value))))
}

/// The page size of a List call: 0 asks for the default of 100, at most 1000.
pub fn page_size(page_size: u32) -> Result<usize, PoolError> {
    match page_size {
        0 => Ok(100),
        n if n > 1000 => Err(invalid("page_size", "at most 1000")),
        n => Ok(n as usize),
    }
}

/// A binding named by id, or by app + request_id.
pub fn binding_key(
    binding_id: &str,
    request_id: String,
    app: String,
) -> Result<BindingKey, PoolError> {
    match (binding_id.is_empty(), request_id.is_empty()) {
        (false, true) => self::binding_id("binding_id", binding_id).map(BindingKey::Id),
        (true, false) if app.is_empty() => Err(invalid("app", "required with request_id")),
        (true, false) => Ok(BindingKey::Request { app, request_id }),
        (false, false) => Err(invalid(
            "binding_id",
            "give binding_id or request_id, not both",
        )),
        (true, true) => Err(invalid("binding_id", "give binding_id or request_id")),
    }
}

impl TryFrom<pb::UnbindRequest> for BindingKey {
    type Error = PoolError;

    fn try_from(r: pb::UnbindRequest) -> Result<Self, PoolError> {
        let pb::UnbindRequest {
            binding_id,
            request_id,
            app,
        } = r;
        binding_key(&binding_id, request_id, app)
    }
}

impl TryFrom<pb::GetBindingRequest> for BindingKey {
    type Error = PoolError;

    fn try_from(r: pb::GetBindingRequest) -> Result<Self, PoolError> {
        let pb::GetBindingRequest {
            binding_id,
            request_id,
            app,
        } = r;
        binding_key(&binding_id, request_id, app)
    }
}

/// What an UpdateBinding asks for.
#[derive(Debug)]
pub struct TtlUpdate {
    pub id: BindingId,
    pub ttl_seconds: u64,
}

impl TryFrom<pb::UpdateBindingRequest> for TtlUpdate {
    type Error = PoolError;

    fn try_from(r: pb::UpdateBindingRequest) -> Result<Self, PoolError> {
        let pb::UpdateBindingRequest {
            binding_id,
            ttl_seconds,
        } = r;
        let id = self::binding_id("binding_id", &binding_id)?;
        Ok(TtlUpdate { id, ttl_seconds })
    }
}

/// One page of a ListBindings.
#[derive(Debug)]
pub struct BindingPage {
    pub filter: ListFilter,
    pub after: Option<BindingId>,
    pub limit: usize,
}

impl TryFrom<pb::ListBindingsRequest> for BindingPage {
    type Error = PoolError;

    fn try_from(r: pb::ListBindingsRequest) -> Result<Self, PoolError> {
        let pb::ListBindingsRequest {
            app,
            party,
            x_number,
            state,
            page_size,
            page_token,
        } = r;
        let filter = ListFilter {
            app: opt(app),
            party: opt(party),
            x_number: opt(x_number),
            state: state_filter(state)?,
        };
        let after = match page_token.as_str() {
            "" => None,
            token => Some(
                binding_id("page_token", token)
                    .map_err(|_| invalid("page_token", "not a token from ListBindings"))?,
            ),
        };
        let limit = self::page_size(page_size)?;
        Ok(BindingPage {
            filter,
            after,
            limit,
        })
    }
}

/// What an AddNumbers adds: (number, area code) pairs.
#[derive(Debug)]
pub struct NewNumbers {
    pub app: String,
    pub numbers: Vec<(String, String)>,
}

impl TryFrom<pb::AddNumbersRequest> for NewNumbers {
    type Error = PoolError;

    fn try_from(r: pb::AddNumbersRequest) -> Result<Self, PoolError> {
        let pb::AddNumbersRequest { app, numbers } = r;
        required("app", &app)?;
        if numbers.is_empty() {
            return Err(invalid("numbers", "required"));
        }
        let numbers = numbers
            .into_iter()
            .map(|pb::NumberSpec { number, area_code }| (number, area_code))
            .collect();
        Ok(NewNumbers { app, numbers })
    }
}

/// One page of a ListNumbers: numbers after `after` (all when empty), sorted.
#[derive(Debug)]
pub struct NumberPage {
    pub app: String,
    pub area_code: Option<String>,
    pub after: String,
    pub limit: usize,
}

impl TryFrom<pb::ListNumbersRequest> for NumberPage {
    type Error = PoolError;

    fn try_from(r: pb::ListNumbersRequest) -> Result<Self, PoolError> {
        let pb::ListNumbersRequest {
            app,
            area_code,
            page_size,
            page_token,
        } = r;
        required("app", &app)?;
        // A token is the last number of the previous page.
        if !page_token.is_empty() && !number::is_global(&page_token) {
            return Err(invalid("page_token", "not a token from ListNumbers"));
        }
        let limit = self::page_size(page_size)?;
        Ok(NumberPage {
            app,
            area_code: opt(area_code),
            after: page_token,
            limit,
        })
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

impl From<Binding> for pb::Binding {
    fn from(b: Binding) -> pb::Binding {
        let Binding {
            id,
            app,
            mode: m,
            state: s,
            x,
            extension,
            y,
            party_a,
            party_b,
            area_code,
            subscription_id,
            request_id,
            created_at_ms,
            updated_at_ms,
            expires_at_ms,
            released_at_ms: _,
            ttl_seconds: _,
            call_direction,
            record,
            max_call_minutes,
            user_data,
            reason,
        } = b;
        let call_direction = match call_direction {
            1 => pb::CallDirection::AToBOnly,
            2 => pb::CallDirection::BToAOnly,
            _ => pb::CallDirection::Both,
        };
        pb::Binding {
            binding_id: id.to_string(),
            app,
            mode: mode(m).into(),
            state: state(s).into(),
            x_number: x,
            extension: extension.unwrap_or_default(),
            y_number: y.unwrap_or_default(),
            party_a,
            party_b: party_b.unwrap_or_default(),
            area_code,
            subscription_id: subscription_id.unwrap_or_default(),
            created_at: Some(timestamp(created_at_ms)),
            expires_at: expires_at_ms.map(timestamp),
            user_data: user_data.unwrap_or_default(),
            reason,
            request_id: request_id.unwrap_or_default(),
            call_direction: call_direction.into(),
            record,
            max_call_minutes,
            updated_at: Some(timestamp(updated_at_ms)),
        }
    }
}

impl From<&NumberView> for pb::NumberInfo {
    fn from(n: &NumberView) -> pb::NumberInfo {
        pb::NumberInfo {
            number: n.number.clone(),
            area_code: n.area_code.clone(),
            state: number_state(n.state).into(),
            bindings: n.bindings,
            free_extensions: n.free_extensions.min(u64::from(u32::MAX)) as u32,
            cooling: n.cooling.min(u64::from(u32::MAX)) as u32,
        }
    }
}

impl From<AreaStats> for pb::AreaStats {
    fn from(a: AreaStats) -> pb::AreaStats {
        pb::AreaStats {
            area_code: a.area_code,
            total: a.total,
            bound: a.bound,
            free: a.free,
            cooling_down: a.cooling_down,
            draining: a.draining,
            free_extensions: a.free_extensions,
        }
    }
}
