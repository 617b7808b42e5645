//! The call options of AX and AXB bindings (binding-api.md §2.1.1, §2.2.1): direction,
//! recording, the longest call, tones, SMS; read from a bind or modify request, checked as the
//! platform checks them, kept, and shown back.

use serde::Serialize;
use serde_json::{Map, Value};

use super::limits::MAX_CALL_MINUTES;
use super::params::Params;
use super::reply::Fail;
use super::state::Ctx;
use xpool_platform::wire::PreVoice;

/// What an AX or AXB binding keeps of its call options and `userData`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallTerms {
    pub call_direction: u64,
    pub record_flag: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    /// Longest call, minutes (0: no limit).
    pub max_duration: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    /// Absent: SMS allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_sms: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<PreVoice>,
    #[serde(skip)]
    pub user_data: Option<String>,
}

/// The parameters of one request; absent ones leave a binding's value as it is.
#[derive(Debug, Default)]
pub(crate) struct TermsUpdate {
    pub call_direction: Option<u64>,
    pub record_flag: Option<bool>,
    pub record_hint_tone: Option<String>,
    pub max_duration: Option<u64>,
    /// `Some("")` removes the tone (`lastMinVoice` is String(0-128)).
    pub last_min_voice: Option<String>,
    pub private_sms: Option<bool>,
    pub pre_voice: Option<PreVoice>,
    pub user_data: Option<String>,
}

/// Which parameters a request may carry: a bind takes them all; a modify only what the mode's
/// modify documents (others are ignored, as unknown fields are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Takes {
    Bind,
    /// AXB modify (§2.1.3): all but `recordHintTone`.
    AxbModify,
    /// AX modify (§2.2.3): `privateSms`, `maxDuration`, `recordFlag`, `lastMinVoice`.
    AxModify,
}

impl TermsUpdate {
    /// Reads and checks the parameters `takes` allows.
    pub fn read(ctx: Ctx<'_>, p: &Params, takes: Takes) -> Result<Self, Fail> {
        let all = takes == Takes::Bind;
        let axb = takes != Takes::AxModify;
        let record_flag = p.bool("recordFlag")?;
        ctx.check_record_flag(record_flag)?;
        let last_min_voice = match p.text("lastMinVoice", 128)? {
            Some(tone) => Some(ctx.tone("lastMinVoice", tone)?),
            None if !all && p.is_empty_string("lastMinVoice") => Some(String::new()),
            None => None,
        };
        Ok(TermsUpdate {
            call_direction: if axb {
                p.u64_in("callDirection", 0..=2)?
            } else {
                None
            },
            record_flag,
            record_hint_tone: if all {
                ctx.opt_tone(p, "recordHintTone")?
            } else {
                None
            },
            max_duration: p.u64_in("maxDuration", 0..=MAX_CALL_MINUTES)?,
            last_min_voice,
            private_sms: p.bool("privateSms")?,
            pre_voice: if axb {
                pre_voice(ctx, p, "preVoice")?
            } else {
                None
            },
            user_data: p.user_data()?,
        })
    }
}

impl CallTerms {
    /// A new binding's terms.
    pub fn new(u: TermsUpdate) -> Result<Self, Fail> {
        let mut terms = CallTerms::default();
        terms.apply(u)?;
        Ok(terms)
    }

    /// Applies the parameters a request gave; refused, and nothing changed, when a last-minute
    /// tone would be left without a call limit (it plays one minute before `maxDuration`).
    pub fn apply(&mut self, u: TermsUpdate) -> Result<(), Fail> {
        let mut next = self.clone();
        set(&mut next.call_direction, u.call_direction);
        set(&mut next.record_flag, u.record_flag);
        set(&mut next.max_duration, u.max_duration);
        if u.record_hint_tone.is_some() {
            next.record_hint_tone = u.record_hint_tone;
        }
        if let Some(tone) = u.last_min_voice {
            next.last_min_voice = (!tone.is_empty()).then_some(tone);
        }
        if u.private_sms.is_some() {
            next.private_sms = u.private_sms;
        }
        if let Some(pv) = u.pre_voice {
            let mut merged = next.pre_voice.take().unwrap_or_default();
            if pv.caller_hint_tone.is_some() {
                merged.caller_hint_tone = pv.caller_hint_tone;
            }
            if pv.callee_hint_tone.is_some() {
                merged.callee_hint_tone = pv.callee_hint_tone;
            }
            next.pre_voice = Some(merged);
        }
        if u.user_data.is_some() {
            next.user_data = u.user_data;
        }
        if next.last_min_voice.is_some() && next.max_duration == 0 {
            return Err(Fail::invalid("lastMinVoice"));
        }
        *self = next;
        Ok(())
    }

    /// The options as `/sim/bindings` shows them, by their wire names.
    pub fn view(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

fn set<T>(value: &mut T, new: Option<T>) {
    if let Some(new) = new {
        *value = new;
    }
}

/// A `preVoice`-like object: its hint tones, each a known tone.
pub(crate) fn pre_voice(ctx: Ctx<'_>, p: &Params, name: &str) -> Result<Option<PreVoice>, Fail> {
    let Some(object) = p.object(name)? else {
        return Ok(None);
    };
    let member = |key: &str| -> Result<Option<String>, Fail> {
        let at = format!("{name}.{key}");
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(tone)) if tone.chars().count() <= 128 && !tone.is_empty() => {
                ctx.tone(&at, tone.clone()).map(Some)
            }
            Some(_) => Err(Fail::invalid(&at)),
        }
    };
    Ok(Some(PreVoice {
        caller_hint_tone: member("callerHintTone")?,
        callee_hint_tone: member("calleeHintTone")?,
    }))
}
