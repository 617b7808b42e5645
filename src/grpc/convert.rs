//! Conversions between the API's messages and the pool's types. Every field of an incoming
//! message is destructured, so a new proto field does not compile until it is handled here.

use prost_types::Timestamp;

use super::page::{self, Filters};
use super::pb;
use crate::lifecycle::{
    AppInfo, AreaStats, BindParams, Binding, BindingId, BindingKey, BindingState, BindingUpdate,
    CallDirection, CallField, CallOptions, ListFilter, NumberState, NumberStatus, NumberView,
    OptionsChange, PoolError, quoted,
};
use crate::platform::{Mode, number};
use crate::upstream::Circuit;

/// Longest single call the platform allows, in minutes.
pub use crate::platform::options::MAX_CALL_MINUTES;

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
            ttl,
            request_id,
            x_number,
            extension,
            user_data,
            call_options,
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
        if !user_data.is_empty() && !number::is_valid_user_data(&user_data) {
            return Err(invalid(
                "user_data",
                "at most 256 characters, without braces or CJK characters",
            ));
        }
        let ttl_seconds = match ttl {
            None => 0,
            Some(ttl) => self::ttl("ttl", ttl)?,
        };
        let call_options = self::call_options(call_options.unwrap_or_default())?;
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
            call_options,
            user_data: opt(user_data),
        })
    }
}

/// A lifetime in whole seconds, more than none.
fn ttl(field: &'static str, ttl: prost_types::Duration) -> Result<u64, PoolError> {
    let prost_types::Duration { seconds, nanos } = ttl;
    if nanos != 0 {
        return Err(invalid(field, "whole seconds only"));
    }
    match u64::try_from(seconds) {
        Ok(0) | Err(_) => Err(invalid(
            field,
            "must be positive; leave it unset for no expiry",
        )),
        Ok(s) => Ok(s),
    }
}

/// The call options a request sets, their shape checked (which the app's mode takes is the
/// pool's to check). Empty strings and UNSPECIFIED are not set.
fn call_options(o: pb::CallOptions) -> Result<CallOptions, PoolError> {
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
    let call_direction = match pb::CallDirection::try_from(call_direction) {
        Ok(pb::CallDirection::Unspecified) => None,
        Ok(pb::CallDirection::Both) => Some(CallDirection::Both),
        Ok(pb::CallDirection::AToBOnly) => Some(CallDirection::AToBOnly),
        Ok(pb::CallDirection::BToAOnly) => Some(CallDirection::BToAOnly),
        Err(_) => {
            return Err(invalid(
                "call_options.call_direction",
                format!("unknown value {call_direction}"),
            ));
        }
    };
    let max_call_minutes = match max_call_minutes {
        None => None,
        Some(m) => match u32::try_from(m) {
            Ok(m) if m <= MAX_CALL_MINUTES => Some(m),
            _ => {
                return Err(invalid(
                    "call_options.max_call_minutes",
                    format!("0 (no limit) to {MAX_CALL_MINUTES}"),
                ));
            }
        },
    };
    Ok(CallOptions {
        call_direction,
        record,
        max_call_minutes,
        record_hint_tone: opt(record_hint_tone),
        last_minute_tone: opt(last_minute_tone),
        caller_hint_tone: opt(caller_hint_tone),
        callee_hint_tone: opt(callee_hint_tone),
        callback_tone: opt(callback_tone),
        private_sms,
    })
}

/// The options a binding of `mode` has in force, as callers see them: only those the mode
/// takes, the platform's defaults filled in (both ways, not recorded, SMS on; no limit is
/// unset).
fn shown_options(o: CallOptions, mode: Mode) -> pb::CallOptions {
    let on = |field: CallField| field.on_bind(mode);
    let CallOptions {
        call_direction,
        record,
        max_call_minutes,
        record_hint_tone,
        last_minute_tone,
        caller_hint_tone,
        callee_hint_tone,
        callback_tone,
        private_sms,
    } = o.for_mode(mode);
    let call_direction = match call_direction.unwrap_or_default() {
        _ if !on(CallField::CallDirection) => pb::CallDirection::Unspecified,
        CallDirection::Both => pb::CallDirection::Both,
        CallDirection::AToBOnly => pb::CallDirection::AToBOnly,
        CallDirection::BToAOnly => pb::CallDirection::BToAOnly,
    };
    pb::CallOptions {
        call_direction: call_direction.into(),
        record: on(CallField::Record).then(|| record.unwrap_or(false)),
        max_call_minutes: max_call_minutes.filter(|m| *m > 0).map(count),
        record_hint_tone: record_hint_tone.unwrap_or_default(),
        last_minute_tone: last_minute_tone.unwrap_or_default(),
        caller_hint_tone: caller_hint_tone.unwrap_or_default(),
        callee_hint_tone: callee_hint_tone.unwrap_or_default(),
        callback_tone: callback_tone.unwrap_or_default(),
        private_sms: on(CallField::PrivateSms).then(|| private_sms.unwrap_or(true)),
    }
}

/// A binding id from a request's `field`.
pub fn binding_id(field: &'static str, value: &str) -> Result<BindingId, PoolError> {
    BindingId::parse(value)
        .ok_or_else(|| invalid(field, format!("{} is not a binding id", quoted(value))))
}

/// A binding named by id, or by app + request_id.
fn binding_key(key: Option<BindingRef>, app: String) -> Result<BindingKey, PoolError> {
    match key {
        // A binding id is unique across apps: `app` is not needed.
        Some(BindingRef::Id(id)) => self::binding_id("binding_id", &id).map(BindingKey::Id),
        Some(BindingRef::Request(request_id)) if request_id.is_empty() => {
            Err(invalid("request_id", "must not be empty"))
        }
        Some(BindingRef::Request(_)) if app.is_empty() => {
            Err(invalid("app", "required with request_id"))
        }
        Some(BindingRef::Request(request_id)) => Ok(BindingKey::Request { app, request_id }),
        None => Err(invalid("binding_id", "give binding_id or request_id")),
    }
}

/// The `binding` oneof of Unbind and GetBinding.
enum BindingRef {
    Id(String),
    Request(String),
}

impl TryFrom<pb::UnbindRequest> for BindingKey {
    type Error = PoolError;

    fn try_from(r: pb::UnbindRequest) -> Result<Self, PoolError> {
        use pb::unbind_request::Binding;
        let pb::UnbindRequest { binding, app } = r;
        let key = binding.map(|b| match b {
            Binding::BindingId(id) => BindingRef::Id(id),
            Binding::RequestId(r) => BindingRef::Request(r),
        });
        binding_key(key, app)
    }
}

impl TryFrom<pb::GetBindingRequest> for BindingKey {
    type Error = PoolError;

    fn try_from(r: pb::GetBindingRequest) -> Result<Self, PoolError> {
        use pb::get_binding_request::Binding;
        let pb::GetBindingRequest { binding, app } = r;
        let key = binding.map(|b| match b {
            Binding::BindingId(id) => BindingRef::Id(id),
            Binding::RequestId(r) => BindingRef::Request(r),
        });
        binding_key(key, app)
    }
}

/// An UpdateBinding (AIP-134): without `update_mask`, the fields set in the request change;
/// with it, the fields it names (`ttl`, `call_options`, `call_options.<field>`), an unset one
/// going back to its default (no expiry; the app's default option, else the platform's).
impl TryFrom<pb::UpdateBindingRequest> for BindingUpdate {
    type Error = PoolError;

    fn try_from(r: pb::UpdateBindingRequest) -> Result<Self, PoolError> {
        let pb::UpdateBindingRequest {
            binding_id,
            ttl,
            call_options,
            update_mask,
        } = r;
        let id = self::binding_id("binding_id", &binding_id)?;
        let values = self::call_options(call_options.unwrap_or_default())?;
        let mut ttl_named = false;
        let mut fields = Vec::new();
        match update_mask {
            None => {
                ttl_named = ttl.is_some();
                fields = values.fields();
            }
            Some(mask) => {
                for path in &mask.paths {
                    match path.as_str() {
                        "ttl" => ttl_named = true,
                        "call_options" => fields.extend(CallField::ALL),
                        p => match p
                            .strip_prefix("call_options.")
                            .and_then(CallField::from_name)
                        {
                            Some(field) => fields.push(field),
                            None => {
                                return Err(invalid(
                                    "update_mask",
                                    format!(
                                        "unknown path {}: use ttl, call_options or \
                                         call_options.<field>",
                                        quoted(p)
                                    ),
                                ));
                            }
                        },
                    }
                }
            }
        }
        fields.sort_unstable();
        fields.dedup();
        if !ttl_named && fields.is_empty() {
            return Err(invalid(
                "update_mask",
                "nothing to update: set ttl or call_options, or name them in update_mask",
            ));
        }
        let ttl_seconds = match (ttl_named, ttl) {
            (false, _) => None,
            (true, None) => Some(0),
            (true, Some(ttl)) => Some(self::ttl("ttl", ttl)?),
        };
        // Only the options named change: the values of the others are not looked at.
        let mut named = CallOptions::default();
        for &field in &fields {
            named.copy_field(field, &values);
        }
        Ok(BindingUpdate {
            id,
            ttl_seconds,
            call_options: OptionsChange {
                fields,
                values: named,
            },
        })
    }
}

/// One page of a ListBindings.
#[derive(Debug)]
pub struct BindingPage {
    pub filter: ListFilter,
    pub after: Option<BindingId>,
    pub limit: usize,
    /// Makes the next page's token.
    pub filters: Filters,
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
        let filters = Filters::new(
            "ListBindings",
            &[&app, &party, &x_number, &state.to_string()],
        );
        let filter = ListFilter {
            app: opt(app),
            party: opt(party),
            x_number: opt(x_number),
            state: state_filter(state)?,
        };
        let after = match filters.position(&page_token)? {
            None => None,
            Some(position) => Some(
                BindingId::parse(&position)
                    .ok_or_else(|| invalid("page_token", "not a page token of this call"))?,
            ),
        };
        let limit = page::page_size(page_size)?;
        Ok(BindingPage {
            filter,
            after,
            limit,
            filters,
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

/// One page of a ListNumbers: numbers after `after` (all when `None`), sorted.
#[derive(Debug)]
pub struct NumberPage {
    pub app: String,
    pub area_code: Option<String>,
    pub after: Option<String>,
    pub limit: usize,
    /// Makes the next page's token.
    pub filters: Filters,
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
        let filters = Filters::new("ListNumbers", &[&app, &area_code]);
        let after = filters.position(&page_token)?;
        let limit = page::page_size(page_size)?;
        Ok(NumberPage {
            app,
            area_code: opt(area_code),
            after,
            limit,
            filters,
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

/// A number's status on the platform, as ListNumbers and Watch show it.
pub fn number_status(s: NumberStatus) -> pb::NumberStatus {
    match s {
        NumberStatus::Normal => pb::NumberStatus::Normal,
        NumberStatus::Paused => pb::NumberStatus::Paused,
        NumberStatus::Unavailable => pb::NumberStatus::Unavailable,
        NumberStatus::BindingFrozen => pb::NumberStatus::BindingFrozen,
    }
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
            released_at_ms,
            ttl_seconds: _,
            call_options,
            user_data,
            reason,
        } = b;
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
            request_id: request_id.unwrap_or_default(),
            user_data: user_data.unwrap_or_default(),
            call_options: Some(shown_options(call_options, m)),
            selection_reason: reason,
            create_time: Some(timestamp(created_at_ms)),
            update_time: Some(timestamp(updated_at_ms)),
            expire_time: expires_at_ms.map(timestamp),
            release_time: released_at_ms.map(timestamp),
        }
    }
}

/// A count for a message, which has no unsigned integers (AIP-141).
fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A large count for a message.
fn count64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<NumberView> for pb::NumberInfo {
    fn from(n: NumberView) -> pb::NumberInfo {
        let NumberView {
            number,
            area_code,
            state,
            status,
            bindings,
            free_extensions,
            cooling,
        } = n;
        pb::NumberInfo {
            number,
            area_code,
            state: number_state(state).into(),
            binding_count: count(bindings),
            free_extension_count: count64(free_extensions),
            cooling_count: count64(cooling),
            status: number_status(status).into(),
        }
    }
}

impl From<AreaStats> for pb::AreaStats {
    fn from(a: AreaStats) -> pb::AreaStats {
        let AreaStats {
            area_code,
            total,
            bound,
            free,
            cooling_down,
            draining,
            held_by_platform,
            free_extensions,
        } = a;
        pb::AreaStats {
            area_code,
            total: count(total),
            bound: count(bound),
            free: count(free),
            cooling_down: count(cooling_down),
            draining: count(draining),
            free_extensions: count64(free_extensions),
            held_by_platform: count(held_by_platform),
        }
    }
}

impl From<AppInfo> for pb::App {
    fn from(a: AppInfo) -> pb::App {
        let AppInfo {
            name,
            mode: m,
            numbers,
            draining,
            platform,
        } = a;
        let (platform_url, rate_per_second, burst, circuit) = match platform {
            None => (String::new(), 0, 0, pb::CircuitState::Unspecified),
            Some(p) => (
                p.base_url,
                count(p.rate_per_second),
                count(p.burst),
                match p.circuit {
                    Some(Circuit::Closed) => pb::CircuitState::Closed,
                    Some(Circuit::Open) => pb::CircuitState::Open,
                    Some(Circuit::HalfOpen) => pb::CircuitState::HalfOpen,
                    None => pb::CircuitState::Unspecified,
                },
            ),
        };
        pb::App {
            name,
            mode: mode(m).into(),
            number_count: count(numbers),
            draining_count: count(draining),
            rate_per_second,
            burst,
            circuit_state: circuit.into(),
            platform_url,
        }
    }
}
