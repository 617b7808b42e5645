//! The call options in force on a binding: what a Bind asks, completed with the app's
//! defaults; what an UpdateBinding changes. Which mode takes which option is the platform's
//! table ([`CallField::on_bind`], [`CallField::on_modify`]).

use super::error::PoolError;
use crate::platform::Mode;
use crate::platform::options::{CallField, CallOptions};

/// The option's path in the API, for errors: `call_options.<name>`.
pub fn path(field: CallField) -> &'static str {
    match field {
        CallField::CallDirection => "call_options.call_direction",
        CallField::Record => "call_options.record",
        CallField::MaxCallMinutes => "call_options.max_call_minutes",
        CallField::RecordHintTone => "call_options.record_hint_tone",
        CallField::LastMinuteTone => "call_options.last_minute_tone",
        CallField::CallerHintTone => "call_options.caller_hint_tone",
        CallField::CalleeHintTone => "call_options.callee_hint_tone",
        CallField::CallbackTone => "call_options.callback_tone",
        CallField::PrivateSms => "call_options.private_sms",
    }
}

fn invalid((field, why): (CallField, String)) -> PoolError {
    PoolError::invalid(path(field), why)
}

/// INVALID_ARGUMENT naming the first option `mode` does not take or whose value is refused.
pub fn check(requested: &CallOptions, mode: Mode) -> Result<(), PoolError> {
    requested.check(mode).map_err(invalid)
}

/// The options a new binding of `mode` gets: the request's, then the app's `defaults`, only
/// those the mode takes. A last-minute tone plays one minute before the call limit: asked for
/// without a limit it is refused; as a default it applies only under a limit.
pub fn in_force(
    requested: &CallOptions,
    defaults: &CallOptions,
    mode: Mode,
) -> Result<CallOptions, PoolError> {
    check(requested, mode)?;
    let mut options = requested.clone().or(defaults).for_mode(mode);
    drop_idle_default_tone(&mut options, requested);
    options.check_together().map_err(invalid)?;
    Ok(options)
}

/// A last-minute tone the caller did not just ask for is dropped where no limit is in force.
fn drop_idle_default_tone(options: &mut CallOptions, asked: &CallOptions) {
    if asked.last_minute_tone.is_none() && options.max_call_minutes.unwrap_or(0) == 0 {
        options.last_minute_tone = None;
    }
}

/// What an UpdateBinding changes: the options named, and their new values (an option named
/// but not set goes back to the app's default, or to none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionsChange {
    pub fields: Vec<CallField>,
    pub values: CallOptions,
}

/// The options in force after `change` on a binding of `mode` holding `current`, and the
/// options that differ. Refused, naming the option, when the mode does not take it, when its
/// value is refused, when the platform cannot change it after the bind (its modify does not
/// take it, or a tone would have to be removed, which only `lastMinVoice` allows).
pub fn changed(
    current: &CallOptions,
    change: &OptionsChange,
    defaults: &CallOptions,
    mode: Mode,
) -> Result<(CallOptions, Vec<CallField>), PoolError> {
    check(&change.values, mode)?;
    let mut next = current.clone();
    for &field in change.fields.iter().filter(|f| f.on_bind(mode)) {
        if change.values.is_set(field) {
            next.copy_field(field, &change.values);
        } else {
            next.copy_field(field, defaults);
        }
    }
    drop_idle_default_tone(&mut next, &change.values);
    next.check_together().map_err(invalid)?;
    let differ: Vec<CallField> = CallField::ALL
        .into_iter()
        .filter(|f| !next.same(*f, current))
        .collect();
    for &field in &differ {
        if !field.on_modify(mode) {
            let why = format!(
                "{mode} bindings cannot change it after the bind (the platform's modify does \
                 not take {}); unbind and bind again",
                field.wire_name()
            );
            return Err(PoolError::invalid(path(field), why));
        }
        let removed = !next.is_set(field) && current.is_set(field);
        if removed && field.is_tone() && field != CallField::LastMinuteTone && mode != Mode::X {
            let why = "the platform cannot remove a tone once set; name another tone, or \
                       unbind and bind again";
            return Err(PoolError::invalid(path(field), why));
        }
    }
    Ok((next, differ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::options::CallDirection;

    fn field_of(e: PoolError) -> String {
        match e {
            PoolError::InvalidArgument { field, .. } => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn tone(name: &str) -> Option<String> {
        Some(name.into())
    }

    #[test]
    fn a_bind_gets_the_request_then_the_defaults_of_its_mode() {
        let defaults = CallOptions {
            record: Some(true),
            private_sms: Some(false),
            last_minute_tone: tone("last.wav"),
            callback_tone: tone("cb.wav"),
            ..Default::default()
        };
        let asked = CallOptions {
            record: Some(false),
            ..Default::default()
        };
        let axb = in_force(&asked, &defaults, Mode::Axb).unwrap();
        // The default last-minute tone needs a limit, which neither gives.
        let expected = CallOptions {
            record: Some(false),
            private_sms: Some(false),
            ..Default::default()
        };
        assert_eq!(axb, expected);
        let limited = CallOptions {
            max_call_minutes: Some(5),
            ..asked.clone()
        };
        let axb = in_force(&limited, &defaults, Mode::Axb).unwrap();
        assert_eq!(axb.last_minute_tone, tone("last.wav"));
        let axe = in_force(&asked, &defaults, Mode::Axe).unwrap();
        assert_eq!(axe.fields(), [CallField::Record, CallField::CallbackTone]);
        // Asked for without a limit, or in a mode without it: refused, naming it.
        let bare = CallOptions {
            last_minute_tone: tone("last.wav"),
            ..Default::default()
        };
        let e = in_force(&bare, &defaults, Mode::Axb).unwrap_err();
        assert_eq!(field_of(e), "call_options.last_minute_tone");
        let e = in_force(&bare, &defaults, Mode::Axyb).unwrap_err();
        assert_eq!(field_of(e), "call_options.last_minute_tone");
    }

    #[test]
    fn an_update_changes_what_the_mode_can_change() {
        let current = CallOptions {
            call_direction: Some(CallDirection::AToBOnly),
            record_hint_tone: tone("rec.wav"),
            max_call_minutes: Some(10),
            last_minute_tone: tone("last.wav"),
            ..Default::default()
        };
        let defaults = CallOptions {
            private_sms: Some(false),
            ..Default::default()
        };
        let change = |fields: &[CallField], values: CallOptions| OptionsChange {
            fields: fields.to_vec(),
            values,
        };
        // Clearing goes back to the default; the same value is no change.
        let c = change(
            &[CallField::PrivateSms, CallField::CallDirection],
            CallOptions {
                call_direction: Some(CallDirection::AToBOnly),
                private_sms: Some(true),
                ..Default::default()
            },
        );
        let (next, differ) = changed(&current, &c, &defaults, Mode::Axb).unwrap();
        assert_eq!(differ, [CallField::PrivateSms]);
        assert_eq!(next.private_sms, Some(true));
        let back = change(&[CallField::PrivateSms], CallOptions::default());
        let (next, _) = changed(&next, &back, &defaults, Mode::Axb).unwrap();
        assert_eq!(next.private_sms, Some(false));
        // AXB's modify takes no recordHintTone; AX's no direction.
        let hint = change(
            &[CallField::RecordHintTone],
            CallOptions {
                record_hint_tone: tone("other.wav"),
                ..Default::default()
            },
        );
        let e = changed(&current, &hint, &defaults, Mode::Axb).unwrap_err();
        assert_eq!(field_of(e), "call_options.record_hint_tone");
        let both = change(&[CallField::CallDirection], CallOptions::default());
        let e = changed(&current, &both, &defaults, Mode::Ax).unwrap_err();
        assert_eq!(field_of(e), "call_options.call_direction");
        // A tone cannot be removed on the platform, except the last-minute one; lifting the
        // limit takes that one along.
        let on_axe = CallOptions {
            callback_tone: tone("cb.wav"),
            ..Default::default()
        };
        let clear = change(&[CallField::CallbackTone], CallOptions::default());
        let e = changed(&on_axe, &clear, &defaults, Mode::Axe).unwrap_err();
        assert_eq!(field_of(e), "call_options.callback_tone");
        let unlimited = change(&[CallField::MaxCallMinutes], CallOptions::default());
        let (next, differ) = changed(&current, &unlimited, &defaults, Mode::Axb).unwrap();
        assert_eq!(
            differ,
            [CallField::MaxCallMinutes, CallField::LastMinuteTone]
        );
        assert_eq!(next.last_minute_tone, None);
        // An option the mode does not take is refused when set, nothing when cleared.
        let sms = change(
            &[CallField::PrivateSms],
            CallOptions {
                private_sms: Some(true),
                ..Default::default()
            },
        );
        let e = changed(&on_axe, &sms, &defaults, Mode::Axe).unwrap_err();
        assert_eq!(field_of(e), "call_options.private_sms");
        let (_, differ) = changed(&on_axe, &back, &defaults, Mode::Axe).unwrap();
        assert!(differ.is_empty());
    }
}
