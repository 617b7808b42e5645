//! AXE mode (binding-api.md §2.3, §4.4): many As per X, each reached through its own extension.

mod paging;

use std::collections::{BTreeMap, HashMap};

use axum::http::Method;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::params::Params;
use super::reply::{Fail, Outcome, done, ok};
use super::state::{
    BindingView, Ctx, ExpiryIndex, ExpiryKey, expiry, new_subscription_id, rfc3339,
};
use xpool_platform::number::is_extension;
use xpool_platform::wire::{AxeBindResponse, AxeQueryV1Response, AxeRecord, TimeUnit};
use xpool_platform::{Mode, codes};

/// Longest accepted lifetime (100 years), so expiry instants stay representable.
const MAX_LIFETIME_SECONDS: u64 = 100 * 365 * 86_400;
const DEFAULT_LIMIT: u64 = 50;

/// Which AXE endpoint a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AxeEndpoint {
    V1,
    V2,
    Count,
}

/// Every live AXE binding of one app.
#[derive(Debug)]
pub(crate) struct AxeState {
    /// The app's extension length.
    digits: u8,
    bindings: HashMap<String, Binding>,
    per_x: HashMap<String, XSlot>,
    expiry: ExpiryIndex<String>,
    seq: u64,
}

/// The bindings on one X.
#[derive(Debug, Default)]
struct XSlot {
    /// Extension ⇒ subscriptionId.
    by_ext: BTreeMap<u32, String>,
    /// A ⇒ subscriptionId (each A at most once per X).
    by_a: HashMap<String, String>,
    /// (creation ms, sequence) ⇒ subscriptionId: the v2 cursor order.
    order: BTreeMap<(u64, u64), String>,
}

#[derive(Debug, Clone)]
struct Binding {
    id: String,
    x: String,
    a: String,
    ext: u32,
    display_num_mode: Option<String>,
    record_flag: bool,
    record_hint_tone: Option<String>,
    callback_tone: Option<String>,
    callback_num: Option<String>,
    /// Bind-time unit and lifetime, which the v1 query keeps showing after modifies.
    bind_unit: TimeUnit,
    bind_expired_time: u64,
    /// The lifetime currently in force.
    unit: TimeUnit,
    expired_time: u64,
    callback_expired_time: Option<u64>,
    user_data: Option<String>,
    created_ms: u64,
    expires_at: Option<OffsetDateTime>,
    expiry_key: Option<ExpiryKey>,
    seq: u64,
}

/// The fields bind and modify share, validated.
struct Settings {
    display_num_mode: Option<String>,
    record_flag: Option<bool>,
    record_hint_tone: Option<String>,
    callback_tone: Option<String>,
    callback_num: Option<String>,
    unit: Option<TimeUnit>,
    expired_time: Option<u64>,
    callback_expired_time: Option<u64>,
    user_data: Option<String>,
}

impl Settings {
    fn read(ctx: Ctx<'_>, p: &Params) -> Result<Self, Fail> {
        let display_num_mode = p.one_of("displayNumMode", &["0", "1"])?;
        let record_flag = p.bool("recordFlag")?;
        let record_hint_tone = ctx.opt_tone(p, "recordHintTone")?;
        let callback_tone = ctx.opt_tone(p, "callbackTone")?;
        let callback_num = p.number("callbackNum")?;
        if callback_tone.is_some() && callback_num.is_some() {
            return Err(Fail::invalid("callbackNum"));
        }
        let unit = match p.one_of("timeUnit", &["0", "1"])?.as_deref() {
            Some("1") => Some(TimeUnit::Minutes),
            Some(_) => Some(TimeUnit::Hours),
            None => None,
        };
        let settings = Settings {
            display_num_mode,
            record_flag,
            record_hint_tone,
            callback_tone,
            callback_num,
            unit,
            expired_time: p.u64("bindExpiredTime")?,
            callback_expired_time: p.u64("callbackExpiredTime")?,
            user_data: p.user_data()?,
        };
        ctx.check_record_flag(record_flag)?;
        Ok(settings)
    }
}

/// Lifetime in seconds of `time` × `unit`, checking `bindExpiredTime ≥ callbackExpiredTime`.
fn lifetime(unit: TimeUnit, time: u64, callback: Option<u64>) -> Result<u64, Fail> {
    if time > 0 && callback.is_some_and(|c| time < c) {
        return Err(Fail::invalid("bindExpiredTime"));
    }
    time.checked_mul(unit.seconds())
        .filter(|s| *s <= MAX_LIFETIME_SECONDS)
        .ok_or_else(|| Fail::invalid("bindExpiredTime"))
}

/// A binding named by `subscriptionId`, or by `virtualNum` + `extendNum`.
enum Selector {
    Id(String),
    Slot(String, u32),
}

impl AxeState {
    pub fn new(digits: u8) -> Self {
        AxeState {
            digits,
            bindings: HashMap::new(),
            per_x: HashMap::new(),
            expiry: ExpiryIndex::default(),
            seq: 0,
        }
    }

    /// Answers one AXE request.
    pub fn handle(
        &mut self,
        ctx: Ctx<'_>,
        ep: AxeEndpoint,
        method: &Method,
        p: &Params,
    ) -> Outcome {
        match (ep, method) {
            (AxeEndpoint::V1, &Method::POST) => self.bind(ctx, p),
            (AxeEndpoint::V1, &Method::PUT) => self.modify(ctx, p),
            (AxeEndpoint::V1, &Method::DELETE) => {
                let id = self.find(selector(ctx, p)?)?;
                self.remove(&id);
                done()
            }
            (AxeEndpoint::V1, _) => {
                let id = self.find(selector(ctx, p)?)?;
                let record = self.record(ctx, &id)?;
                ok(&AxeQueryV1Response { record })
            }
            (AxeEndpoint::V2, _) => self.query_v2(ctx, p),
            (AxeEndpoint::Count, _) => self.count(ctx, p),
        }
    }

    fn bind(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let a = p.req_number("bindNum")?;
        let x = p.number("virtualNum")?;
        let area = p.area_code()?;
        let loose = p.loose_area_match()?;
        let digits = ctx.app.extension_digits;
        let wanted = match &x {
            Some(_) => parse_extension(p, digits)?,
            None => None,
        };
        let s = Settings::read(ctx, p)?;
        let unit = s.unit.unwrap_or_default();
        let time = s.expired_time.unwrap_or(0);
        let seconds = lifetime(unit, time, s.callback_expired_time)?;

        let cap = capacity(ctx);
        let (x, ext) = match x {
            Some(x) => {
                ctx.owned_number(&x, codes::NUMBER_NOT_APPLIED)?;
                let slot = self.per_x.get(&x);
                if slot.is_some_and(|s| s.by_a.contains_key(&a)) {
                    return Err(Fail::new(codes::NUMBER_ALREADY_BOUND));
                }
                let ext = match slot {
                    _ if slot.is_some_and(|s| s.by_ext.len() >= cap) => None,
                    Some(s) => match wanted {
                        Some(e) => (!s.by_ext.contains_key(&e)).then_some(e),
                        None => s.lowest_free(digits),
                    },
                    None => wanted.or(Some(1)),
                };
                (x, ext.ok_or_else(|| Fail::new(codes::NO_IDLE_EXTENSION))?)
            }
            None => {
                let free = |x: &str| {
                    self.per_x
                        .get(x)
                        .is_none_or(|s| s.by_ext.len() < cap && !s.by_a.contains_key(&a))
                };
                let loose = loose || area.is_none();
                let x = ctx
                    .numbers
                    .pick(area.as_deref(), loose, free)
                    .ok_or_else(|| Fail::new(codes::INSUFFICIENT_NUMBERS))?;
                let ext = match self.per_x.get(&x) {
                    Some(s) => s.lowest_free(digits),
                    None => Some(1),
                };
                (x, ext.ok_or_else(|| Fail::new(codes::NO_IDLE_EXTENSION))?)
            }
        };
        self.seq += 1;
        let binding = Binding {
            id: new_subscription_id(),
            x,
            a,
            ext,
            display_num_mode: s.display_num_mode,
            record_flag: s.record_flag.unwrap_or(false),
            record_hint_tone: s.record_hint_tone,
            callback_tone: s.callback_tone,
            callback_num: s.callback_num,
            bind_unit: unit,
            bind_expired_time: time,
            unit,
            expired_time: time,
            callback_expired_time: s.callback_expired_time,
            user_data: s.user_data,
            created_ms: unix_ms(ctx.now),
            expires_at: expiry(ctx.now, seconds),
            expiry_key: None,
            seq: self.seq,
        };
        let answer = AxeBindResponse {
            subscription_id: binding.id.clone(),
            virtual_num: binding.x.clone(),
            extend_num: format_extension(binding.ext, digits),
        };
        self.insert(binding);
        ok(&answer)
    }

    fn modify(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let sel = selector(ctx, p)?;
        let s = Settings::read(ctx, p)?;
        let id = self.find(sel)?;
        let Some(current) = self.bindings.get(&id) else {
            return Err(Fail::new(codes::RECORD_NOT_EXIST));
        };
        let mut b = current.clone();
        let unit = s.unit.unwrap_or(b.unit);
        let time = s.expired_time.unwrap_or(b.expired_time);
        let callback = s.callback_expired_time.or(b.callback_expired_time);
        let seconds = lifetime(unit, time, callback)?;
        if s.unit.is_some() || s.expired_time.is_some() {
            (b.unit, b.expired_time) = (unit, time);
            b.expires_at = expiry(ctx.now, seconds);
        }
        b.callback_expired_time = callback;
        if s.display_num_mode.is_some() {
            b.display_num_mode = s.display_num_mode;
        }
        if let Some(flag) = s.record_flag {
            b.record_flag = flag;
        }
        if s.record_hint_tone.is_some() {
            b.record_hint_tone = s.record_hint_tone;
        }
        if s.callback_tone.is_some() {
            (b.callback_tone, b.callback_num) = (s.callback_tone, None);
        }
        if s.callback_num.is_some() {
            (b.callback_num, b.callback_tone) = (s.callback_num, None);
        }
        if s.user_data.is_some() {
            b.user_data = s.user_data;
        }
        self.remove(&id);
        self.insert(b);
        done()
    }

    fn find(&self, sel: Selector) -> Result<String, Fail> {
        let id = match sel {
            Selector::Id(id) => self.bindings.contains_key(&id).then_some(id),
            Selector::Slot(x, ext) => self.per_x.get(&x).and_then(|s| s.by_ext.get(&ext)).cloned(),
        };
        id.ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))
    }

    fn record(&self, ctx: Ctx<'_>, id: &str) -> Result<AxeRecord, Fail> {
        let b = self
            .bindings
            .get(id)
            .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
        Ok(AxeRecord {
            subscription_id: b.id.clone(),
            virtual_num: b.x.clone(),
            extend_num: format_extension(b.ext, ctx.app.extension_digits),
            bind_num: b.a.clone(),
            display_num_mode: b.display_num_mode.clone(),
            record_flag: Some(b.record_flag),
            record_hint_tone: b.record_hint_tone.clone(),
            callback_tone: b.callback_tone.clone(),
            callback_num: b.callback_num.clone(),
            time_unit: Some(b.bind_unit),
            bind_expired_time: Some(b.bind_expired_time),
            callback_expired_time: b.callback_expired_time,
            user_data: b.user_data.clone(),
        })
    }

    fn insert(&mut self, mut b: Binding) {
        b.expiry_key = b.expires_at.map(|at| self.expiry.insert(at, b.id.clone()));
        let slot = self.per_x.entry(b.x.clone()).or_default();
        slot.by_ext.insert(b.ext, b.id.clone());
        slot.by_a.insert(b.a.clone(), b.id.clone());
        slot.order.insert((b.created_ms, b.seq), b.id.clone());
        self.bindings.insert(b.id.clone(), b);
    }

    fn remove(&mut self, id: &str) -> Option<Binding> {
        let b = self.bindings.remove(id)?;
        self.expiry.remove(b.expiry_key);
        if let Some(slot) = self.per_x.get_mut(&b.x) {
            slot.by_ext.remove(&b.ext);
            slot.by_a.remove(&b.a);
            slot.order.remove(&(b.created_ms, b.seq));
            if slot.by_ext.is_empty() {
                self.per_x.remove(&b.x);
            }
        }
        Some(b)
    }

    pub fn purge(&mut self, now: OffsetDateTime) {
        for id in self.expiry.pop_due(now) {
            self.remove(&id);
        }
    }

    pub fn drop_number(&mut self, x: &str) {
        if let Some(slot) = self.per_x.remove(x) {
            for id in slot.by_ext.values() {
                if let Some(b) = self.bindings.remove(id) {
                    self.expiry.remove(b.expiry_key);
                }
            }
        }
    }

    pub fn list(&self) -> Vec<BindingView> {
        self.bindings
            .values()
            .map(|b| BindingView {
                extension: Some(format_extension(b.ext, self.digits)),
                expires_at: b.expires_at.map(rfc3339),
                options: b.options(),
                ..BindingView::new(Mode::Axe, &b.id, &b.x, &b.a, b.seq)
            })
            .collect()
    }
}

impl Binding {
    /// The call options as `/sim/bindings` shows them, by their wire names.
    fn options(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("recordFlag".into(), Value::Bool(self.record_flag));
        for (name, value) in [
            ("recordHintTone", &self.record_hint_tone),
            ("callbackTone", &self.callback_tone),
            ("callbackNum", &self.callback_num),
        ] {
            if let Some(v) = value {
                map.insert(name.into(), Value::String(v.clone()));
            }
        }
        map
    }
}

impl XSlot {
    /// The lowest extension not in use, within the space of `digits` digits.
    fn lowest_free(&self, digits: u8) -> Option<u32> {
        let mut candidate = 1;
        for ext in self.by_ext.keys() {
            if *ext != candidate {
                break;
            }
            candidate += 1;
        }
        (candidate <= space(digits)).then_some(candidate)
    }
}

/// The extension space of `digits` digits: 1 ..= 10^digits − 1.
fn space(digits: u8) -> u32 {
    10u32.pow(u32::from(digits)) - 1
}

/// How many extensions one X may carry.
fn capacity(ctx: Ctx<'_>) -> usize {
    let space = space(ctx.app.extension_digits);
    let cap = ctx.app.max_extensions_per_x.map_or(space, |m| m.min(space));
    usize::try_from(cap).unwrap_or(usize::MAX)
}

fn format_extension(ext: u32, digits: u8) -> String {
    format!("{ext:0width$}", width = usize::from(digits))
}

fn parse_extension(p: &Params, digits: u8) -> Result<Option<u32>, Fail> {
    match p.str("extendNum")? {
        None => Ok(None),
        Some(e) if is_extension(&e, digits) => {
            e.parse().map(Some).map_err(|_| Fail::invalid("extendNum"))
        }
        Some(_) => Err(Fail::invalid("extendNum")),
    }
}

fn selector(ctx: Ctx<'_>, p: &Params) -> Result<Selector, Fail> {
    if let Some(id) = p.str("subscriptionId")? {
        return Ok(Selector::Id(id));
    }
    let x = p.number("virtualNum")?;
    let ext = parse_extension(p, ctx.app.extension_digits)?;
    match (x, ext) {
        (Some(x), Some(e)) => Ok(Selector::Slot(x, e)),
        (Some(_), None) => Err(Fail::invalid("extendNum")),
        (None, Some(_)) => Err(Fail::invalid("virtualNum")),
        (None, None) => Err(Fail::invalid("subscriptionId")),
    }
}

fn unix_ms(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// What a call needs (notifications.md §1): the binding of A on X, or of X + extension.
impl AxeState {
    pub(crate) fn call_view_of_a(&self, x: &str, a: &str) -> Option<crate::call::AxeView> {
        let id = self.per_x.get(x)?.by_a.get(a)?;
        self.call_view(id)
    }

    pub(crate) fn call_view_of_extension(
        &self,
        x: &str,
        ext: &str,
    ) -> Option<crate::call::AxeView> {
        if !is_extension(ext, self.digits) {
            return None;
        }
        let id = self.per_x.get(x)?.by_ext.get(&ext.parse().ok()?)?;
        self.call_view(id)
    }

    fn call_view(&self, id: &str) -> Option<crate::call::AxeView> {
        let b = self.bindings.get(id)?;
        let callback_seconds = b
            .callback_expired_time
            .filter(|t| *t > 0)
            .map(|t| t.saturating_mul(b.unit.seconds()));
        Some(crate::call::AxeView {
            bound: crate::call::Bound {
                id: Some(b.id.clone()),
                user_data: b.user_data.clone(),
                record_flag: b.record_flag,
                max_minutes: 0,
            },
            a: b.a.clone(),
            callback_num: b.callback_num.clone(),
            callback_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_extension_fills_gaps_within_the_space() {
        let mut slot = XSlot::default();
        assert_eq!(slot.lowest_free(1), Some(1));
        for ext in [1, 2, 4] {
            slot.by_ext.insert(ext, String::new());
        }
        assert_eq!(slot.lowest_free(1), Some(3));
        for ext in 3..=9 {
            slot.by_ext.insert(ext, String::new());
        }
        assert_eq!(slot.lowest_free(1), None);
        assert_eq!(slot.lowest_free(2), Some(10));
        assert_eq!(format_extension(1, 4), "0001");
        assert_eq!(space(4), 9999);
    }
}
