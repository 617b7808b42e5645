//! `[apps.call_defaults]`: the call options a Bind of the app gets where it sets none, each
//! checked against the app's mode (binding-api.md §2: which mode takes which option).

use serde::{Deserialize, Deserializer};
use toml::Table;

use super::source::{self, Problems};
use crate::platform::Mode;
use crate::platform::options::{CallDirection, CallOptions};

/// The table as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCallDefaults {
    #[serde(deserialize_with = "de_direction")]
    call_direction: Option<CallDirection>,
    record: Option<bool>,
    max_call_minutes: Option<u32>,
    record_hint_tone: Option<String>,
    last_minute_tone: Option<String>,
    caller_hint_tone: Option<String>,
    callee_hint_tone: Option<String>,
    callback_tone: Option<String>,
    private_sms: Option<bool>,
}

/// The defaults of the app at `path` in `mode`; each key the mode does not take, or whose value
/// the platform would refuse, is a problem naming it (`apps[rides].call_defaults.callback_tone`).
pub(super) fn resolve(
    table: Option<&Table>,
    mode: Mode,
    path: &str,
    problems: &mut Problems,
) -> CallOptions {
    let at = format!("{path}.call_defaults");
    let Some(raw) = table.and_then(|t| source::section::<RawCallDefaults>(t, &at, problems)) else {
        return CallOptions::default();
    };
    let options = CallOptions {
        call_direction: raw.call_direction,
        record: raw.record,
        max_call_minutes: raw.max_call_minutes,
        record_hint_tone: raw.record_hint_tone,
        last_minute_tone: raw.last_minute_tone,
        caller_hint_tone: raw.caller_hint_tone,
        callee_hint_tone: raw.callee_hint_tone,
        callback_tone: raw.callback_tone,
        private_sms: raw.private_sms,
    };
    // One field at a time, so that every bad key is named.
    let mut clean = true;
    for field in options.fields() {
        let mut alone = CallOptions::default();
        alone.copy_field(field, &options);
        if let Err((field, why)) = alone.check(mode) {
            problems.push(format!("{at}.{}", field.name()), why);
            clean = false;
        }
    }
    if clean {
        options
    } else {
        CallOptions::default()
    }
}

fn de_direction<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CallDirection>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}
