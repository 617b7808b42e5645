//! The pool's requests. The gRPC layer checks their shape; [`BindParams::check`] the rules of
//! the app they are for.

use super::binding::{BindingId, BindingState};
use super::error::PoolError;
use super::options::{self, OptionsChange};
use crate::alloc::{Index, Rules};
use crate::platform::options::CallOptions;
use crate::platform::{Mode, number};

/// A request for a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindParams {
    pub app: String,
    pub party_a: String,
    pub party_b: Option<String>,
    pub area_code: Option<String>,
    pub any_area: bool,
    /// 0 = never expires.
    pub ttl_seconds: u64,
    pub request_id: Option<String>,
    pub x_number: Option<String>,
    pub extension: Option<String>,
    /// The options asked for; what is not set takes the app's default.
    pub call_options: CallOptions,
    pub user_data: Option<String>,
}

impl BindParams {
    /// The checks of a Bind that depend on the app (its mode, extension length, numbers, call
    /// option defaults), before anything changes. Returns the call options in force.
    pub(super) fn check(
        &self,
        app: &str,
        rules: &Rules,
        index: &Index,
        call_defaults: &CallOptions,
    ) -> Result<CallOptions, PoolError> {
        let p = self;
        let mode = rules.mode;
        match mode {
            Mode::Axb | Mode::Axyb | Mode::X if p.party_b.is_none() => {
                return Err(PoolError::invalid(
                    "party_b",
                    format!("required in {mode} mode"),
                ));
            }
            Mode::Ax | Mode::Axe if p.party_b.is_some() => {
                return Err(PoolError::invalid(
                    "party_b",
                    format!("not used in {mode} mode"),
                ));
            }
            _ => {}
        }
        if p.extension.is_some() && mode != Mode::Axe {
            return Err(PoolError::invalid(
                "extension",
                format!("only AXE bindings have extensions, this app is {mode}"),
            ));
        }
        if let Some(ext) = &p.extension {
            let digits = usize::from(rules.extension_digits);
            if !number::is_extension(ext, rules.extension_digits) {
                return Err(PoolError::invalid(
                    "extension",
                    format!("must be {digits} digits, not all zeros"),
                ));
            }
            if p.x_number.is_none() {
                return Err(PoolError::invalid(
                    "extension",
                    "a pinned extension needs x_number too",
                ));
            }
        }
        if mode == Mode::Axyb && p.x_number.is_some() {
            return Err(PoolError::invalid(
                "x_number",
                "in AXYB mode the platform chooses X; give area_code",
            ));
        }
        rules
            .check_ttl(p.ttl_seconds)
            .map_err(|why| PoolError::invalid("ttl", why))?;
        if let Some(x) = &p.x_number
            && index.number(x).is_none()
        {
            return Err(PoolError::number_not_in_pool("x_number", app, x));
        }
        options::in_force(&p.call_options, call_defaults, mode)
    }
}

/// What an UpdateBinding changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingUpdate {
    pub id: BindingId,
    /// A new lifetime counted from now (0: none); `None` leaves the lifetime alone.
    pub ttl_seconds: Option<u64>,
    /// The call options to change (none named: none change).
    pub call_options: OptionsChange,
}

/// How a caller names a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingKey {
    Id(BindingId),
    Request { app: String, request_id: String },
}

/// ListBindings filters; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub app: Option<String>,
    /// Matches party A or B.
    pub party: Option<String>,
    pub x_number: Option<String>,
    pub state: Option<BindingState>,
}
