//! Shared simulator state: the apps with their numbers and bindings, the binding clock and the
//! expiry index every mode uses.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::Method;
use rand::seq::IndexedRandom as _;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use super::call::Traffic;
use super::config::{SimAppConfig, SimConfig, SimNumber};
use super::faults::{FaultState, Stats};
use super::guard::IpGuard;
use super::nonces::Nonces;
use super::params::Params;
use super::push::Pushes;
use super::reply::{Fail, Outcome};
use super::{ax, axb, axe, axyb};
use xpool_platform::{Mode, codes};

/// Locks a mutex, ignoring poisoning (no simulator lock guards a broken invariant on panic).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the request handlers share.
#[derive(Debug)]
pub(crate) struct Sim {
    pub config: SimConfig,
    pub apps: HashMap<String, Arc<App>>,
    pub clock: Clock,
    pub guard: IpGuard,
    /// Nonces of still-valid tokens, for refusing replays.
    pub nonces: Nonces,
    /// Every push made or due (notifications.md).
    pub pushes: Pushes,
    /// What calls and SMS leave behind: AXE callback records, number status, sequences.
    pub traffic: Mutex<Traffic>,
    /// Cancelled when `serve`'s shutdown completes; releases requests whose answer is "lost".
    pub cancel: CancellationToken,
}

impl Sim {
    pub fn new(config: SimConfig, cancel: CancellationToken) -> Self {
        let apps = config
            .apps
            .iter()
            .map(|app| (app.app_key.clone(), Arc::new(App::new(app.clone()))))
            .collect();
        Sim {
            guard: IpGuard::new(&config.auth),
            nonces: Nonces::new(config.auth.max_clock_skew_seconds),
            apps,
            clock: Clock::default(),
            pushes: Pushes::new(config.push.clone()),
            traffic: Mutex::new(Traffic::default()),
            cancel,
            config,
        }
    }
}

/// One platform app: its settings, bindings, faults and statistics, each behind its own lock.
#[derive(Debug)]
pub(crate) struct App {
    pub config: SimAppConfig,
    pub state: Mutex<AppState>,
    pub faults: Mutex<FaultState>,
    pub stats: Mutex<Stats>,
}

impl App {
    fn new(config: SimAppConfig) -> Self {
        let state = AppState::new(&config);
        App {
            config,
            state: Mutex::new(state),
            faults: Mutex::new(FaultState::default()),
            stats: Mutex::new(Stats::default()),
        }
    }
}

/// The binding clock: real UTC now plus an offset moved forward by `/sim/clock`.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_seconds: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        let real = OffsetDateTime::now_utc();
        let offset = self.offset_seconds.load(Ordering::Relaxed);
        real.checked_add(time::Duration::seconds(offset))
            .unwrap_or(real)
    }

    /// Moves the clock forward; `None` (and no change) when the result would leave the
    /// representable range (beyond year 9999).
    pub fn advance(&self, seconds: u64) -> Option<OffsetDateTime> {
        let seconds = i64::try_from(seconds).ok()?;
        let offset = self
            .offset_seconds
            .load(Ordering::Relaxed)
            .checked_add(seconds)?;
        let later = OffsetDateTime::now_utc().checked_add(time::Duration::seconds(offset))?;
        self.offset_seconds.fetch_add(seconds, Ordering::Relaxed);
        Some(later)
    }
}

/// Formats a binding-clock instant for the controls.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// An app's numbers and its mode's bindings.
#[derive(Debug)]
pub(crate) struct AppState {
    pub numbers: NumberPool,
    pub bindings: Bindings,
}

impl AppState {
    pub fn new(config: &SimAppConfig) -> Self {
        let mut numbers = NumberPool::default();
        for number in &config.numbers {
            numbers.insert(number);
        }
        let bindings = match config.mode {
            Mode::Ax => Bindings::Ax(ax::AxState::default()),
            Mode::Axb => Bindings::Axb(axb::AxbState::default()),
            Mode::Axe => Bindings::Axe(axe::AxeState::new(config.extension_digits)),
            Mode::Axyb => Bindings::Axyb(axyb::AxybState::default()),
            Mode::X => Bindings::X,
        };
        AppState { numbers, bindings }
    }

    /// Removes every binding expired at `now`; expired bindings behave exactly as unbound.
    pub fn purge(&mut self, now: OffsetDateTime) {
        match &mut self.bindings {
            Bindings::Ax(_) | Bindings::X => {}
            Bindings::Axb(s) => s.purge(now),
            Bindings::Axe(s) => s.purge(now),
            Bindings::Axyb(s) => s.purge(now),
        }
    }

    /// Takes a number away from the app, dropping the bindings that use it.
    pub fn remove_number(&mut self, number: &str) {
        if !self.numbers.remove(number) {
            return;
        }
        match &mut self.bindings {
            Bindings::X => {}
            Bindings::Ax(s) => s.drop_number(number),
            Bindings::Axb(s) => s.drop_number(number),
            Bindings::Axe(s) => s.drop_number(number),
            Bindings::Axyb(s) => s.drop_number(number),
        }
    }

    /// Every live binding, in creation order.
    pub fn list(&self) -> Vec<BindingView> {
        let mut views = match &self.bindings {
            Bindings::X => Vec::new(),
            Bindings::Ax(s) => s.list(),
            Bindings::Axb(s) => s.list(),
            Bindings::Axe(s) => s.list(),
            Bindings::Axyb(s) => s.list(),
        };
        views.sort_by_key(|v| v.order);
        views
    }
}

/// The binding tables of the app's mode.
#[derive(Debug)]
pub(crate) enum Bindings {
    Ax(ax::AxState),
    Axb(axb::AxbState),
    Axe(axe::AxeState),
    Axyb(axyb::AxybState),
    /// X-mode apps store no bindings.
    X,
}

/// One live binding as `/sim/bindings` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BindingView {
    pub subscription_id: String,
    pub mode: Mode,
    pub x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// AX: the temporary callee last set (§2.2.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callee: Option<TempCallee>,
    /// RFC 3339 on the binding clock, or null for never.
    pub expires_at: Option<String>,
    /// The call options the binding keeps, by their wire names (`recordFlag`, `maxDuration`,
    /// `preVoice`, …): what reached the platform.
    pub options: Map<String, Value>,
    #[serde(skip)]
    pub order: u64,
}

impl BindingView {
    /// The view of binding `id` of `a` on `x`: no B, Y, extension, callee or expiry.
    pub fn new(mode: Mode, id: &str, x: &str, a: &str, order: u64) -> Self {
        BindingView {
            subscription_id: id.to_owned(),
            mode,
            x: x.to_owned(),
            a: Some(a.to_owned()),
            b: None,
            y: None,
            extension: None,
            callee: None,
            expires_at: None,
            options: Map::new(),
            order,
        }
    }
}

/// An AX binding's temporary callee and when it lapses (RFC 3339, binding clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TempCallee {
    pub number: String,
    pub until: Option<String>,
}

/// Owned numbers, indexed by area for the platform's choice of X.
#[derive(Debug, Default)]
pub(crate) struct NumberPool {
    numbers: BTreeMap<String, NumberInfo>,
    by_area: HashMap<String, BTreeSet<String>>,
}

/// What the app knows of one of its numbers.
#[derive(Debug, Clone)]
pub(crate) struct NumberInfo {
    pub area_code: String,
    pub blacklisted: bool,
}

impl NumberPool {
    pub fn get(&self, number: &str) -> Option<&NumberInfo> {
        self.numbers.get(number)
    }

    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// All numbers in a stable (sorted) order.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.numbers.keys().map(String::as_str)
    }

    /// Adds or replaces a number.
    pub fn insert(&mut self, number: &SimNumber) {
        self.remove(&number.number);
        self.numbers.insert(
            number.number.clone(),
            NumberInfo {
                area_code: number.area_code.clone(),
                blacklisted: number.blacklisted,
            },
        );
        self.by_area
            .entry(number.area_code.clone())
            .or_default()
            .insert(number.number.clone());
    }

    /// Removes a number; false when the app did not own it.
    pub fn remove(&mut self, number: &str) -> bool {
        let Some(info) = self.numbers.remove(number) else {
            return false;
        };
        if let Some(set) = self.by_area.get_mut(&info.area_code) {
            set.remove(number);
        }
        true
    }

    /// Non-blacklisted numbers passing `eligible`: in `area` if given; when none there and
    /// `loose`, or when no area is given, from all numbers.
    pub fn candidates(
        &self,
        area: Option<&str>,
        loose: bool,
        eligible: impl Fn(&str) -> bool,
    ) -> Vec<&str> {
        let usable = |n: &&str| self.numbers.get(*n).is_some_and(|i| !i.blacklisted) && eligible(n);
        if let Some(area) = area {
            let local: Vec<&str> = self
                .by_area
                .get(area)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .filter(usable)
                .collect();
            if !local.is_empty() || !loose {
                return local;
            }
        }
        self.all().filter(usable).collect()
    }

    /// A random eligible number (see [`NumberPool::candidates`]).
    pub fn pick(
        &self,
        area: Option<&str>,
        loose: bool,
        eligible: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let candidates = self.candidates(area, loose, eligible);
        candidates.choose(&mut rand::rng()).map(|n| (*n).to_owned())
    }
}

/// Bindings ordered by expiry instant, so purging pops only what is due.
#[derive(Debug)]
pub(crate) struct ExpiryIndex<T> {
    due: BTreeMap<ExpiryKey, T>,
    seq: u64,
}

/// A binding's place in an [`ExpiryIndex`].
pub(crate) type ExpiryKey = (OffsetDateTime, u64);

impl<T> Default for ExpiryIndex<T> {
    fn default() -> Self {
        ExpiryIndex {
            due: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<T> ExpiryIndex<T> {
    pub fn insert(&mut self, at: OffsetDateTime, item: T) -> ExpiryKey {
        self.seq += 1;
        let key = (at, self.seq);
        self.due.insert(key, item);
        key
    }

    pub fn remove(&mut self, key: Option<ExpiryKey>) {
        if let Some(key) = key {
            self.due.remove(&key);
        }
    }

    /// Removes and returns every item due at or before `now`.
    pub fn pop_due(&mut self, now: OffsetDateTime) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        out
    }
}

/// `now + seconds`, or `None` for 0 (never expires) and for out-of-range instants.
pub(crate) fn expiry(now: OffsetDateTime, seconds: u64) -> Option<OffsetDateTime> {
    if seconds == 0 {
        return None;
    }
    let seconds = i64::try_from(seconds).ok()?;
    now.checked_add(time::Duration::seconds(seconds))
}

/// A fresh subscriptionId.
pub(crate) fn new_subscription_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A mode whose one endpoint maps POST, PUT, DELETE and anything else to bind, modify, unbind
/// and query.
pub(crate) trait Crud {
    fn bind(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome;
    fn modify(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome;
    fn unbind(&mut self, p: &Params) -> Outcome;
    fn query(&self, p: &Params) -> Outcome;

    /// Answers one request to the mode's endpoint.
    fn handle(&mut self, ctx: Ctx<'_>, method: &Method, p: &Params) -> Outcome {
        match *method {
            Method::POST => self.bind(ctx, p),
            Method::PUT => self.modify(ctx, p),
            Method::DELETE => self.unbind(p),
            _ => self.query(p),
        }
    }
}

/// What a mode's handler may read besides its own tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub app: &'a SimAppConfig,
    pub numbers: &'a NumberPool,
    /// The binding clock at the start of the request.
    pub now: OffsetDateTime,
}

impl Ctx<'_> {
    /// `recordFlag=true` needs an app with recording enabled (1012012).
    pub fn check_record_flag(&self, flag: Option<bool>) -> Result<(), Fail> {
        if flag == Some(true) && !self.app.recording_enabled {
            return Err(Fail::new(codes::RECORDING_NOT_OPEN));
        }
        Ok(())
    }

    /// A tone file name parameter: with the app's allow-list set, a name on it (an unknown
    /// file is `1010002` naming the parameter, binding-api.md §0.5).
    pub fn tone(&self, param: &str, name: String) -> Result<String, Fail> {
        match &self.app.tones {
            Some(known) if !known.contains(&name) => Err(Fail::invalid(param)),
            _ => Ok(name),
        }
    }

    /// An optional tone parameter of 1 to 128 characters (see [`Ctx::tone`]).
    pub fn opt_tone(&self, p: &Params, param: &str) -> Result<Option<String>, Fail> {
        p.text(param, 128)?
            .map(|name| self.tone(param, name))
            .transpose()
    }

    /// A number the caller named as X: owned (else `not_owned`) and not blacklisted.
    pub fn owned_number(&self, number: &str, not_owned: &'static str) -> Result<(), Fail> {
        match self.numbers.get(number) {
            None => Err(Fail::new(not_owned)),
            Some(info) if info.blacklisted => Err(Fail::new(codes::NUMBER_BLACKLISTED)),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_expiry_index_pops_only_what_is_due() {
        let mut index = ExpiryIndex::default();
        let t0 = datetime!(2024-01-01 00:00 UTC);
        let a = index.insert(t0 + time::Duration::seconds(10), "a");
        index.insert(t0 + time::Duration::seconds(20), "b");
        index.insert(t0 + time::Duration::seconds(10), "c");
        assert!(index.pop_due(t0).is_empty());
        index.remove(Some(a));
        assert_eq!(index.pop_due(t0 + time::Duration::seconds(15)), vec!["c"]);
        assert_eq!(index.pop_due(t0 + time::Duration::seconds(20)), vec!["b"]);
        assert_eq!(expiry(t0, 0), None);
        assert_eq!(expiry(t0, u64::MAX), None);
    }

    #[test]
    fn candidates_respect_area_match_and_blacklist() {
        let mut pool = NumberPool::default();
        let add = |pool: &mut NumberPool, n: &str, area: &str, blacklisted| {
            pool.insert(&SimNumber {
                number: n.into(),
                area_code: area.into(),
                blacklisted,
            })
        };
        add(&mut pool, "+8617000000001", "010", false);
        add(&mut pool, "+8617000000002", "010", true);
        add(&mut pool, "+8617000000003", "021", false);
        assert_eq!(
            pool.candidates(Some("010"), false, |_| true),
            ["+8617000000001"]
        );
        assert!(pool.candidates(Some("0755"), false, |_| true).is_empty());
        assert_eq!(pool.candidates(Some("0755"), true, |_| true).len(), 2);
        assert_eq!(pool.candidates(None, false, |_| true).len(), 2);
        add(&mut pool, "+8617000000001", "021", false);
        assert!(pool.candidates(Some("010"), false, |_| true).is_empty());
    }
}
