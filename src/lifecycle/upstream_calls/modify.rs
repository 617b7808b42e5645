//! UpdateBinding on the platform: the mode's modify with the lifetime and the call options
//! that change.

use crate::platform::Mode;
use crate::platform::options::{CallField, CallOptions};
use crate::platform::wire::*;
use crate::upstream::{AppClient, CallOpts, UpstreamError};

/// `preVoice`, when either hint tone is set.
pub(super) fn pre_voice(o: &CallOptions) -> Option<PreVoice> {
    (o.caller_hint_tone.is_some() || o.callee_hint_tone.is_some()).then(|| PreVoice {
        caller_hint_tone: o.caller_hint_tone.clone(),
        callee_hint_tone: o.callee_hint_tone.clone(),
    })
}

/// What an UpdateBinding asks of the platform.
#[derive(Debug)]
pub struct Modify<'a> {
    pub subscription_id: String,
    /// A new lifetime from now (0: none), if it changes.
    pub ttl_seconds: Option<u64>,
    /// The options in force after the change.
    pub options: &'a CallOptions,
    /// Those of them that change; all are ones the mode's modify takes.
    pub changed: &'a [CallField],
}

impl Modify<'_> {
    fn changes(&self, field: CallField) -> bool {
        self.changed.contains(&field)
    }

    /// The new value of a changed option: unset ones are sent as the platform's default, as
    /// leaving them out would leave the old value.
    fn direction(&self) -> Option<u64> {
        let o = self.options;
        self.changes(CallField::CallDirection)
            .then(|| o.call_direction.unwrap_or_default().wire())
    }

    fn record(&self) -> Option<bool> {
        self.changes(CallField::Record)
            .then(|| self.options.record.unwrap_or(false))
    }

    fn max_duration(&self) -> Option<u64> {
        self.changes(CallField::MaxCallMinutes)
            .then(|| u64::from(self.options.max_call_minutes.unwrap_or(0)))
    }

    /// `""` removes the tone (`lastMinVoice` is String(0-128)).
    fn last_min_voice(&self) -> Option<String> {
        self.changes(CallField::LastMinuteTone)
            .then(|| self.options.last_minute_tone.clone().unwrap_or_default())
    }

    /// Absent on the platform means SMS on.
    fn private_sms(&self) -> Option<bool> {
        self.changes(CallField::PrivateSms)
            .then(|| self.options.private_sms.unwrap_or(true))
    }

    /// Both hint tones in force when either changes (a tone is never removed).
    fn pre_voice(&self) -> Option<PreVoice> {
        let either =
            self.changes(CallField::CallerHintTone) || self.changes(CallField::CalleeHintTone);
        either.then(|| pre_voice(self.options)).flatten()
    }

    fn tone(&self, field: CallField, value: &Option<String>) -> Option<String> {
        self.changes(field).then(|| value.clone()).flatten()
    }
}

/// Changes a binding on the platform: AXB and AXE take a lifetime and options, AX options
/// only (its lifetime is xpool's alone). AXYB has no modify and X mode no platform: nothing is
/// sent for them (nor when nothing the platform keeps changes).
pub async fn modify(
    client: &AppClient,
    mode: Mode,
    m: &Modify<'_>,
    opts: CallOpts,
) -> Result<(), UpstreamError> {
    let client = &client.with_opts(opts);
    let sub = m.subscription_id.clone();
    match mode {
        Mode::Axb => {
            let req = AxbModifyRequest {
                subscription_id: sub,
                call_direction: m.direction(),
                duration: m.ttl_seconds,
                max_duration: m.max_duration(),
                last_min_voice: m.last_min_voice(),
                private_sms: m.private_sms(),
                record_flag: m.record(),
                pre_voice: m.pre_voice(),
                ..Default::default()
            };
            client.axb_modify(&req).await
        }
        Mode::Ax if !m.changed.is_empty() => {
            let req = AxModifyRequest {
                subscription_id: Some(sub),
                // The official demo always sends it (binding-api.md §2.2.3): the value in force.
                private_sms: Some(m.options.private_sms.unwrap_or(true)),
                max_duration: m.max_duration(),
                record_flag: m.record(),
                last_min_voice: m.last_min_voice(),
                ..Default::default()
            };
            client.ax_modify(&req).await
        }
        Mode::Axe => {
            let ttl = m.ttl_seconds;
            let req = AxeModifyRequest {
                subscription_id: Some(sub),
                time_unit: ttl.map(|_| TimeUnit::Minutes),
                bind_expired_time: ttl.map(|s| s / 60),
                record_flag: m.record(),
                record_hint_tone: m.tone(CallField::RecordHintTone, &m.options.record_hint_tone),
                callback_tone: m.tone(CallField::CallbackTone, &m.options.callback_tone),
                ..Default::default()
            };
            client.axe_modify(&req).await
        }
        Mode::Ax | Mode::Axyb | Mode::X => Ok(()),
    }
}
