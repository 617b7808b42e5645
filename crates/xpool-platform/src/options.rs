//! The call options a binding carries (binding-api.md §0.5, §2.1–2.5): who may call whom,
//! recording, the longest call, the tones played, SMS. Which mode's bind takes which option, and
//! which its modify can change afterwards, is [`CallField::on_bind`] / [`CallField::on_modify`],
//! the one copy of that table.

use crate::Mode;

/// Longest single call a binding may allow, minutes (`maxDuration`, 0..=1440).
pub const MAX_CALL_MINUTES: u32 = 1_440;

/// Longest tone file name (`recordHintTone`, `lastMinVoice`, `preVoice.*`, `callbackTone`).
pub const MAX_TONE_CHARS: usize = 128;

/// True for a tone file name as the platform takes it: 1 to 128 characters, no control
/// characters and no spaces around it (extra spaces are a documented cause of 1010002). Whether
/// the file is uploaded and approved only the platform knows.
pub fn is_tone_name(name: &str) -> bool {
    (1..=MAX_TONE_CHARS).contains(&name.chars().count())
        && !name.chars().any(char::is_control)
        && name.trim() == name
}

/// Who may call whom through X: the platform's `callDirection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CallDirection {
    /// `0`, the platform's default.
    #[default]
    Both,
    /// `1`: only A calls B (AX: only A calls out through X).
    AToBOnly,
    /// `2`: only B calls A (not documented for AX).
    BToAOnly,
}

impl CallDirection {
    pub const ALL: [CallDirection; 3] = [
        CallDirection::Both,
        CallDirection::AToBOnly,
        CallDirection::BToAOnly,
    ];

    /// The value on the wire.
    pub fn wire(self) -> u64 {
        match self {
            CallDirection::Both => 0,
            CallDirection::AToBOnly => 1,
            CallDirection::BToAOnly => 2,
        }
    }

    pub fn from_wire(value: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.wire() == value)
    }

    /// The name in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Both => "both",
            CallDirection::AToBOnly => "a_to_b_only",
            CallDirection::BToAOnly => "b_to_a_only",
        }
    }
}

impl std::str::FromStr for CallDirection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown call direction {s:?} (expected both, a_to_b_only or b_to_a_only)")
            })
    }
}

/// One call option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallField {
    CallDirection,
    Record,
    MaxCallMinutes,
    RecordHintTone,
    LastMinuteTone,
    CallerHintTone,
    CalleeHintTone,
    CallbackTone,
    PrivateSms,
}

impl CallField {
    pub const ALL: [CallField; 9] = [
        CallField::CallDirection,
        CallField::Record,
        CallField::MaxCallMinutes,
        CallField::RecordHintTone,
        CallField::LastMinuteTone,
        CallField::CallerHintTone,
        CallField::CalleeHintTone,
        CallField::CallbackTone,
        CallField::PrivateSms,
    ];

    /// The option's name in the API and in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            CallField::CallDirection => "call_direction",
            CallField::Record => "record",
            CallField::MaxCallMinutes => "max_call_minutes",
            CallField::RecordHintTone => "record_hint_tone",
            CallField::LastMinuteTone => "last_minute_tone",
            CallField::CallerHintTone => "caller_hint_tone",
            CallField::CalleeHintTone => "callee_hint_tone",
            CallField::CallbackTone => "callback_tone",
            CallField::PrivateSms => "private_sms",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The platform's parameter (the two hint tones are members of `preVoice`).
    pub fn wire_name(self) -> &'static str {
        match self {
            CallField::CallDirection => "callDirection",
            CallField::Record => "recordFlag",
            CallField::MaxCallMinutes => "maxDuration",
            CallField::RecordHintTone => "recordHintTone",
            CallField::LastMinuteTone => "lastMinVoice",
            CallField::CallerHintTone => "callerHintTone",
            CallField::CalleeHintTone => "calleeHintTone",
            CallField::CallbackTone => "callbackTone",
            CallField::PrivateSms => "privateSms",
        }
    }

    /// Whether a binding of `mode` takes this option. For the platform's modes: whether its
    /// bind takes the parameter (§2.1.1 AXB, §2.2.1 AX, §2.3.1 AXE, §2.4.1 AXYB's AX step —
    /// `preVoiceX`/`preVoiceY` are not the AX/AXB `preVoice` and are not offered). For X mode,
    /// whose bindings live only in xpool: what the answer to the platform's `callin` carries
    /// (notifications.md §1.5), plus the direction xpool routes by.
    pub fn on_bind(self, mode: Mode) -> bool {
        use CallField::*;
        match mode {
            Mode::Axb | Mode::Ax => !matches!(self, CallbackTone),
            Mode::Axe => matches!(self, Record | RecordHintTone | CallbackTone),
            Mode::Axyb => matches!(self, CallDirection | Record | RecordHintTone),
            Mode::X => matches!(
                self,
                CallDirection | Record | MaxCallMinutes | RecordHintTone | LastMinuteTone
            ),
        }
    }

    /// Whether a binding's option can change after the bind: the mode's modify takes it
    /// (§2.1.3 AXB, §2.2.3 AX, §2.3.3 AXE; AXYB has no modify); X mode changes only locally.
    pub fn on_modify(self, mode: Mode) -> bool {
        use CallField::*;
        match mode {
            Mode::Axb => !matches!(self, RecordHintTone | CallbackTone),
            Mode::Ax => matches!(self, Record | MaxCallMinutes | LastMinuteTone | PrivateSms),
            // callbackTone: "probably" changeable (§2.3.3), as the wire type has it.
            Mode::Axe => matches!(self, Record | RecordHintTone | CallbackTone),
            Mode::Axyb => false,
            Mode::X => self.on_bind(Mode::X),
        }
    }

    /// Whether the option names a tone file.
    pub fn is_tone(self) -> bool {
        use CallField::*;
        matches!(
            self,
            RecordHintTone | LastMinuteTone | CallerHintTone | CalleeHintTone | CallbackTone
        )
    }

    /// The option a platform refusal is about, when `resultdesc` names its parameter (1010002
    /// `Invalid request. <parameter>`).
    pub fn named_in(resultdesc: &str) -> Option<Self> {
        let param = resultdesc.rsplit(['.', ' ']).next()?;
        Self::ALL.into_iter().find(|f| f.wire_name() == param)
    }
}

/// The call options of a binding; `None` is not set (the app's default, then the platform's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    pub call_direction: Option<CallDirection>,
    pub record: Option<bool>,
    /// Minutes; 0 is no limit.
    pub max_call_minutes: Option<u32>,
    pub record_hint_tone: Option<String>,
    /// Needs a `max_call_minutes` above 0.
    pub last_minute_tone: Option<String>,
    pub caller_hint_tone: Option<String>,
    pub callee_hint_tone: Option<String>,
    pub callback_tone: Option<String>,
    pub private_sms: Option<bool>,
}

impl CallOptions {
    /// Whether `field` is set.
    pub fn is_set(&self, field: CallField) -> bool {
        use CallField::*;
        match field {
            CallDirection => self.call_direction.is_some(),
            Record => self.record.is_some(),
            MaxCallMinutes => self.max_call_minutes.is_some(),
            RecordHintTone => self.record_hint_tone.is_some(),
            LastMinuteTone => self.last_minute_tone.is_some(),
            CallerHintTone => self.caller_hint_tone.is_some(),
            CalleeHintTone => self.callee_hint_tone.is_some(),
            CallbackTone => self.callback_tone.is_some(),
            PrivateSms => self.private_sms.is_some(),
        }
    }

    /// The fields that are set, in [`CallField::ALL`] order.
    pub fn fields(&self) -> Vec<CallField> {
        CallField::ALL
            .into_iter()
            .filter(|f| self.is_set(*f))
            .collect()
    }

    /// `field` takes `from`'s value (set or not).
    pub fn copy_field(&mut self, field: CallField, from: &CallOptions) {
        use CallField::*;
        match field {
            CallDirection => self.call_direction = from.call_direction,
            Record => self.record = from.record,
            MaxCallMinutes => self.max_call_minutes = from.max_call_minutes,
            RecordHintTone => self.record_hint_tone.clone_from(&from.record_hint_tone),
            LastMinuteTone => self.last_minute_tone.clone_from(&from.last_minute_tone),
            CallerHintTone => self.caller_hint_tone.clone_from(&from.caller_hint_tone),
            CalleeHintTone => self.callee_hint_tone.clone_from(&from.callee_hint_tone),
            CallbackTone => self.callback_tone.clone_from(&from.callback_tone),
            PrivateSms => self.private_sms = from.private_sms,
        }
    }

    /// Whether `field` has the same value here and in `other`.
    pub fn same(&self, field: CallField, other: &CallOptions) -> bool {
        let mut probe = self.clone();
        probe.copy_field(field, other);
        probe == *self
    }

    /// Each field unset here takes `defaults`' value.
    pub fn or(mut self, defaults: &CallOptions) -> CallOptions {
        for field in CallField::ALL {
            if !self.is_set(field) {
                self.copy_field(field, defaults);
            }
        }
        self
    }

    /// Only the fields a binding of `mode` takes.
    pub fn for_mode(self, mode: Mode) -> CallOptions {
        let mut kept = CallOptions::default();
        for field in CallField::ALL.into_iter().filter(|f| f.on_bind(mode)) {
            kept.copy_field(field, &self);
        }
        kept
    }

    /// Checks every field set: `mode` takes it and its value is one the platform accepts. The
    /// error names the field and says why.
    pub fn check(&self, mode: Mode) -> Result<(), (CallField, String)> {
        for field in self.fields() {
            if !field.on_bind(mode) {
                return Err((field, format!("{mode} bindings do not take it")));
            }
        }
        if self.call_direction == Some(CallDirection::BToAOnly) && mode == Mode::Ax {
            let why = "AX bindings take both or a_to_b_only (only A calls out through X)";
            return Err((CallField::CallDirection, why.into()));
        }
        if let Some(m) = self.max_call_minutes
            && m > MAX_CALL_MINUTES
        {
            let why = format!("{m} is not 0 (no limit) to {MAX_CALL_MINUTES} minutes");
            return Err((CallField::MaxCallMinutes, why));
        }
        for (field, tone) in self.tones() {
            if !is_tone_name(tone) {
                let why = format!(
                    "a tone file name is 1 to {MAX_TONE_CHARS} characters, without control \
                     characters or surrounding spaces"
                );
                return Err((field, why));
            }
        }
        Ok(())
    }

    /// The rule between fields: a last-minute tone needs a call limit.
    pub fn check_together(&self) -> Result<(), (CallField, String)> {
        if self.last_minute_tone.is_some() && self.max_call_minutes.unwrap_or(0) == 0 {
            let why = "plays one minute before max_call_minutes ends: set max_call_minutes too";
            return Err((CallField::LastMinuteTone, why.into()));
        }
        Ok(())
    }

    /// The tones that are set.
    pub fn tones(&self) -> impl Iterator<Item = (CallField, &str)> {
        [
            (CallField::RecordHintTone, &self.record_hint_tone),
            (CallField::LastMinuteTone, &self.last_minute_tone),
            (CallField::CallerHintTone, &self.caller_hint_tone),
            (CallField::CalleeHintTone, &self.callee_hint_tone),
            (CallField::CallbackTone, &self.callback_tone),
        ]
        .into_iter()
        .filter_map(|(field, tone)| tone.as_deref().map(|t| (field, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_table_follows_the_binding_api() {
        use CallField::*;
        let bind = |mode: Mode| -> Vec<CallField> {
            CallField::ALL
                .into_iter()
                .filter(|f| f.on_bind(mode))
                .collect()
        };
        // AXE has no SMS and no maxDuration; callbackTone is AXE only.
        assert_eq!(bind(Mode::Axe), [Record, RecordHintTone, CallbackTone]);
        assert_eq!(bind(Mode::Axyb), [CallDirection, Record, RecordHintTone]);
        assert_eq!(bind(Mode::Axb).len(), 8);
        assert_eq!(bind(Mode::Ax), bind(Mode::Axb));
        assert!(!PrivateSms.on_bind(Mode::X) && !CallbackTone.on_bind(Mode::X));
        // Modify: AXB cannot change recordHintTone, AX not its direction or preVoice.
        assert!(!RecordHintTone.on_modify(Mode::Axb) && PrivateSms.on_modify(Mode::Axb));
        assert!(!CallDirection.on_modify(Mode::Ax) && !CallerHintTone.on_modify(Mode::Ax));
        assert!(RecordHintTone.on_modify(Mode::Axe));
        assert!(CallField::ALL.iter().all(|f| !f.on_modify(Mode::Axyb)));
        for mode in Mode::ALL {
            for field in CallField::ALL {
                assert!(
                    !field.on_modify(mode) || field.on_bind(mode),
                    "{mode} {field:?}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip_and_refusals_name_the_option() {
        for field in CallField::ALL {
            assert_eq!(CallField::from_name(field.name()), Some(field));
        }
        assert_eq!(
            CallField::named_in("Invalid request. lastMinVoice"),
            Some(CallField::LastMinuteTone)
        );
        assert_eq!(
            CallField::named_in("Invalid request. preVoice.calleeHintTone"),
            Some(CallField::CalleeHintTone)
        );
        assert_eq!(CallField::named_in("Invalid request. callerNum"), None);
        assert_eq!("A_TO_B_ONLY".parse(), Ok(CallDirection::AToBOnly));
        assert_eq!(CallDirection::from_wire(2), Some(CallDirection::BToAOnly));
        assert_eq!(CallDirection::from_wire(3), None);
    }

    #[test]
    fn checks_name_the_field() {
        let axe = CallOptions {
            max_call_minutes: Some(5),
            ..Default::default()
        };
        assert_eq!(
            axe.check(Mode::Axe).unwrap_err().0,
            CallField::MaxCallMinutes
        );
        assert!(axe.check(Mode::Axb).is_ok());
        let long = CallOptions {
            max_call_minutes: Some(1_441),
            ..Default::default()
        };
        assert_eq!(
            long.check(Mode::Axb).unwrap_err().0,
            CallField::MaxCallMinutes
        );
        let b_to_a = CallOptions {
            call_direction: Some(CallDirection::BToAOnly),
            ..Default::default()
        };
        assert!(b_to_a.check(Mode::Ax).is_err() && b_to_a.check(Mode::Axb).is_ok());
        for bad in ["", " a.wav", "a\n.wav", &"t".repeat(129)] {
            let o = CallOptions {
                callback_tone: Some(bad.into()),
                ..Default::default()
            };
            assert_eq!(
                o.check(Mode::Axe).unwrap_err().0,
                CallField::CallbackTone,
                "{bad:?}"
            );
        }
        let tone = CallOptions {
            last_minute_tone: Some("one-minute.wav".into()),
            ..Default::default()
        };
        assert!(tone.check(Mode::Axb).is_ok());
        assert_eq!(
            tone.check_together().unwrap_err().0,
            CallField::LastMinuteTone
        );
        let limited = CallOptions {
            max_call_minutes: Some(10),
            ..tone
        };
        assert!(limited.check_together().is_ok());
    }

    #[test]
    fn defaults_fill_what_is_unset_and_modes_keep_theirs() {
        let request = CallOptions {
            record: Some(false),
            ..Default::default()
        };
        let defaults = CallOptions {
            record: Some(true),
            private_sms: Some(false),
            callback_tone: Some("cb.wav".into()),
            ..Default::default()
        };
        let merged = request.clone().or(&defaults);
        assert_eq!(merged.record, Some(false));
        assert_eq!(merged.private_sms, Some(false));
        let axe = merged.clone().for_mode(Mode::Axe);
        assert_eq!(axe.fields(), [CallField::Record, CallField::CallbackTone]);
        assert!(merged.same(CallField::Record, &request));
        assert!(!merged.same(CallField::PrivateSms, &request));
    }
}
