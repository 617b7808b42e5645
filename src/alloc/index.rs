//! One app's in-memory allocation index, rebuilt from the store at start-up.
//!
//! Picking never scans the pool: each area keeps its eligible numbers in a set ordered by the
//! mode's preference (least-loaded first; for AX the longest-free first), and a second set holds
//! numbers that are only cooling down, ordered by when they come back. A pick skips at most the
//! numbers the parties already hold.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::ext::{Availability, ExtChoice, ExtSpace};
use super::parties::{Holder, PartyXs};
use super::rules::Rules;
use super::{Number, NumberState, NumberStatus, Occupant};
use crate::platform::Mode;

type Hasher = foldhash::fast::RandomState;

/// At most this many Xs per A in AX and AXYB (platform rule 1011003).
pub const MAX_XS_PER_A: usize = 5;

/// One number as the index sees it.
#[derive(Debug, Clone)]
pub struct Num {
    pub area: String,
    pub state: NumberState,
    /// Live bindings (slots held) on this number as X.
    pub load: u32,
    /// AX: reusable from (ms) after its last release. AXE: see `ext`.
    pub cool_until_ms: i64,
    /// AXE only. Boxed: an empty space is some 150 bytes, which every number of the other
    /// modes would carry.
    pub ext: Option<Box<ExtSpace>>,
    /// AXYB: live relations using this number as Y.
    pub y_load: u32,
    /// The platform contradicted the index about it: out of rotation until reconciled.
    pub suspect: bool,
    /// What the platform's status pushes last said of it: out of rotation unless normal.
    pub status: NumberStatus,
    /// Key under which the number sits in its area's `eligible` set, if it does.
    eligible_key: Option<i64>,
    /// Key under which it sits in its area's `cooling` set, if it does.
    cooling_key: Option<i64>,
}

#[derive(Debug, Default)]
struct Area {
    eligible: BTreeSet<(i64, String)>,
    cooling: BTreeSet<(i64, String)>,
}

/// A slot the index chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub x: String,
    pub area: String,
    pub extension: Option<String>,
    /// How the extension was chosen (AXE).
    pub ext_choice: Option<ExtChoice>,
}

impl Pick {
    /// The slot a binding of `party_a` (and `party_b`) holds once it takes this pick, the
    /// binding not named (tests and benches: only X-mode call routing uses the name).
    pub fn occupant<'a>(&'a self, party_a: &'a str, party_b: Option<&'a str>) -> Occupant<'a> {
        Occupant {
            x: &self.x,
            extension: self.extension.as_deref(),
            y: None,
            party_a,
            party_b,
            binding: super::parties::NO_HOLDER,
        }
    }
}

/// Why a pick found nothing in the areas it was allowed to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoPick {
    /// No eligible number in the areas tried.
    Exhausted { tried: Vec<String> },
    /// A party already holds the maximum number of Xs (AX, AXYB).
    PartyLimit(String),
    /// The pinned number or extension cannot take this binding.
    Pinned(String),
    /// The pinned number is not the app's.
    Unknown,
}

/// The allocation index of one app.
#[derive(Debug)]
pub struct Index {
    rules: Rules,
    /// foldhash rather than SipHash: at start-up every live binding looks its X up here.
    numbers: HashMap<String, Num, Hasher>,
    areas: BTreeMap<String, Area>,
    /// The Xs each party holds (as A or B; AXE and AX: as A).
    party_xs: PartyXs,
    /// While restoring at start-up: the Xs whose place in their area is still to be settled,
    /// once each at the end instead of once per binding (`begin_bulk` / `end_bulk`).
    deferred: Option<HashSet<String, Hasher>>,
}

impl Index {
    pub fn new(rules: Rules) -> Self {
        // X mode routes calls by the binding each party holds its X by.
        let party_xs = match rules.mode {
            Mode::X => PartyXs::with_holders(),
            _ => PartyXs::default(),
        };
        Index {
            rules,
            numbers: HashMap::default(),
            areas: BTreeMap::new(),
            party_xs,
            deferred: None,
        }
    }

    pub fn number(&self, x: &str) -> Option<&Num> {
        self.numbers.get(x)
    }

    pub fn numbers(&self) -> impl Iterator<Item = (&String, &Num)> {
        self.numbers.iter()
    }

    /// Adds a number or updates its area and state.
    pub fn upsert_number(&mut self, record: &Number<'_>, now_ms: i64) {
        let rules = &self.rules;
        let num = self
            .numbers
            .entry(record.number.to_owned())
            .or_insert_with(|| Num {
                area: record.area_code.to_owned(),
                state: record.state,
                load: 0,
                cool_until_ms: 0,
                ext: (rules.mode == Mode::Axe)
                    .then(|| ExtSpace::new(rules.extension_digits, rules.max_extensions_per_x))
                    .map(Box::new),
                y_load: 0,
                suspect: record.suspect,
                status: record.status,
                eligible_key: None,
                cooling_key: None,
            });
        let old_area = num.area.clone();
        Self::unlist(&mut self.areas, record.number, num, &old_area);
        record.area_code.clone_into(&mut num.area);
        num.state = record.state;
        num.suspect = record.suspect;
        num.status = record.status;
        self.refresh(record.number, now_ms);
    }

    /// Forgets a number entirely (it holds no live binding).
    pub fn remove_number(&mut self, x: &str) {
        if let Some(mut num) = self.numbers.remove(x) {
            let area = num.area.clone();
            Self::unlist(&mut self.areas, x, &mut num, &area);
        }
    }

    /// Takes the slot of a binding that holds one (a new reservation, or a record re-read at
    /// start-up).
    pub fn occupy(&mut self, b: &Occupant<'_>, now_ms: i64) {
        if let Some(y) = b.y
            && let Some(num) = self.numbers.get_mut(y)
        {
            num.y_load += 1;
        }
        if b.x.is_empty() {
            return;
        }
        for p in parties(b, self.rules.mode) {
            self.party_xs.insert(p, b.x, b.binding);
        }
        if let Some(num) = self.numbers.get_mut(b.x) {
            num.load += 1;
            if let (Some(space), Some(e)) = (num.ext.as_mut(), b.extension)
                && let Ok(e) = e.parse()
            {
                space.occupy(e);
            }
        }
        self.refresh(b.x, now_ms);
    }

    /// Gives a binding's slot back. With `released_ms`, the slot cools down from then (AX
    /// numbers, AXE extensions); without, it was never used and is free at once.
    pub fn vacate(&mut self, b: &Occupant<'_>, released_ms: Option<i64>, now_ms: i64) {
        if let Some(num) = b.y.and_then(|y| self.numbers.get_mut(y)) {
            num.y_load = num.y_load.saturating_sub(1);
        }
        if b.x.is_empty() {
            return;
        }
        for p in parties(b, self.rules.mode) {
            self.party_xs.remove(p, b.x, b.binding);
        }
        let until = released_ms.map_or(0, |t| t.saturating_add(self.rules.cool_down_ms));
        if let Some(num) = self.numbers.get_mut(b.x) {
            num.load = num.load.saturating_sub(1);
            match (&mut num.ext, b.extension.and_then(|e| e.parse().ok())) {
                (Some(space), Some(e)) => space.release(e, until),
                _ if self.rules.mode == Mode::Ax => {
                    num.cool_until_ms = num.cool_until_ms.max(until)
                }
                _ => {}
            }
        }
        self.refresh(b.x, now_ms);
    }

    /// Records the cool-down of a binding released before a restart.
    pub fn cool(&mut self, b: &Occupant<'_>, released_ms: i64, now_ms: i64) {
        let until = released_ms.saturating_add(self.rules.cool_down_ms);
        if until <= now_ms {
            return;
        }
        let Some(num) = self.numbers.get_mut(b.x) else {
            return;
        };
        match (&mut num.ext, b.extension.and_then(|e| e.parse().ok())) {
            (Some(space), Some(e)) => space.cool(e, until),
            _ if self.rules.mode == Mode::Ax => num.cool_until_ms = num.cool_until_ms.max(until),
            _ => {}
        }
        self.refresh(b.x, now_ms);
    }

    /// Parties holding one X (a size to [`Index::reserve`] at the next start-up).
    pub fn single_parties(&self) -> usize {
        self.party_xs.singles()
    }

    /// Makes room for `single_parties` parties holding one X.
    pub fn reserve(&mut self, single_parties: usize) {
        self.party_xs.reserve(single_parties);
    }

    /// Xs that `party` holds.
    pub fn xs_of(&self, party: &str) -> usize {
        self.party_xs.count(party)
    }

    /// X mode: the binding by which `party` holds `x`, which a call from `party` to `x` goes
    /// by (`None` in other modes).
    pub fn route(&self, party: &str, x: &str) -> Option<Holder> {
        self.party_xs.holder(party, x)
    }

    fn holds(&self, party: &str, x: &str) -> bool {
        self.party_xs.holds(party, x)
    }

    /// Chooses a slot for parties `a` (and `b`) in the first of `areas` that has one, skipping
    /// the numbers in `exclude`.
    pub fn pick(
        &mut self,
        areas: &[String],
        a: &str,
        b: Option<&str>,
        exclude: &HashSet<String>,
        now_ms: i64,
    ) -> Result<(Pick, usize), NoPick> {
        if matches!(self.rules.mode, Mode::Ax | Mode::Axyb) && self.xs_of(a) >= MAX_XS_PER_A {
            return Err(NoPick::PartyLimit(a.to_owned()));
        }
        for (i, area) in areas.iter().enumerate() {
            self.promote(area, now_ms);
            let found = self.first_fit(area, a, b, exclude);
            if let Some(pick) = found.and_then(|x| self.slot_on(&x, now_ms)) {
                return Ok((pick, i));
            }
        }
        Err(NoPick::Exhausted {
            tried: areas.to_vec(),
        })
    }

    fn first_fit(
        &self,
        area: &str,
        a: &str,
        b: Option<&str>,
        exclude: &HashSet<String>,
    ) -> Option<String> {
        let area = self.areas.get(area)?;
        // Each party is looked up once, not once per candidate X.
        let held_a = self.party_xs.held(a);
        let held_b = b.map(|b| self.party_xs.held(b));
        area.eligible
            .iter()
            .map(|(_, x)| x)
            .find(|x| {
                !exclude.contains(*x)
                    && !held_a.contains(x)
                    && held_b.as_ref().is_none_or(|held| !held.contains(x))
            })
            .cloned()
    }

    /// The slot a new binding would take on `x` (which must be eligible).
    fn slot_on(&self, x: &str, now_ms: i64) -> Option<Pick> {
        let num = self.numbers.get(x)?;
        let (extension, ext_choice) = match &num.ext {
            Some(space) => {
                let (e, how) = space.choose(now_ms)?;
                (Some(space.format(e)), Some(how))
            }
            None => (None, None),
        };
        Some(Pick {
            x: x.to_owned(),
            area: num.area.clone(),
            extension,
            ext_choice,
        })
    }

    /// Checks a pinned number (and extension) for parties `a`, `b`.
    pub fn pinned(
        &mut self,
        x: &str,
        ext: Option<&str>,
        a: &str,
        b: Option<&str>,
        now_ms: i64,
    ) -> Result<Pick, NoPick> {
        let busy = |why: &str| Err(NoPick::Pinned(format!("x_number {x} {why}")));
        let Some(num) = self.numbers.get(x) else {
            return Err(NoPick::Unknown);
        };
        if num.state != NumberState::Active {
            return busy(&format!("is {:?}", num.state).to_lowercase());
        }
        if !num.status.takes_bindings() {
            return busy(&format!(
                "is held by the platform (status {})",
                num.status.as_str().to_lowercase()
            ));
        }
        if self.holds(a, x) || b.is_some_and(|b| self.holds(b, x)) {
            return busy("already carries one of the parties");
        }
        if matches!(self.rules.mode, Mode::Ax | Mode::Axyb) && self.xs_of(a) >= MAX_XS_PER_A {
            return Err(NoPick::PartyLimit(a.to_owned()));
        }
        let area = num.area.clone();
        match self.rules.mode {
            Mode::Axb | Mode::X if num.load >= self.rules.max_bindings_per_x => busy("is full"),
            Mode::Ax if num.load > 0 => busy("is bound"),
            Mode::Ax if num.cool_until_ms > now_ms => busy("is cooling down"),
            Mode::Axe => {
                let Some(space) = num.ext.as_ref() else {
                    return busy("has no extension space");
                };
                let (e, how) = match ext {
                    Some(text) => match space.parse(text) {
                        Some(e) if space.is_free(e, now_ms) => (e, ExtChoice::Reused),
                        Some(_) => {
                            return busy(&format!("extension {text} is taken or cooling down"));
                        }
                        None => return busy(&format!("has no extension {text}")),
                    },
                    None => match space.choose(now_ms) {
                        Some(c) => c,
                        None => return busy("has no free extension"),
                    },
                };
                Ok(Pick {
                    x: x.into(),
                    area,
                    extension: Some(space.format(e)),
                    ext_choice: Some(how),
                })
            }
            _ => Ok(Pick {
                x: x.into(),
                area,
                extension: None,
                ext_choice: None,
            }),
        }
    }

    /// Eligible numbers per area now (after promoting cooled ones).
    pub fn eligible_in(&mut self, area: &str, now_ms: i64) -> usize {
        self.promote(area, now_ms);
        self.areas.get(area).map_or(0, |a| a.eligible.len())
    }

    /// Whether the app has any number in `area`, in whatever state (only a failed pick asks,
    /// so a scan is fine).
    pub fn has_area(&self, area: &str) -> bool {
        self.numbers.values().any(|n| n.area == area)
    }

    pub fn area_names(&self) -> Vec<String> {
        self.areas.keys().cloned().collect()
    }

    /// Moves numbers whose cool-down has ended back into their area's eligible set.
    fn promote(&mut self, area: &str, now_ms: i64) {
        let due: Vec<String> = match self.areas.get(area) {
            Some(a) => a
                .cooling
                .iter()
                .take_while(|(t, _)| *t <= now_ms)
                .map(|(_, x)| x.clone())
                .collect(),
            None => return,
        };
        for x in due {
            self.refresh(&x, now_ms);
        }
    }

    /// Re-files a number in its area's sets after any change.
    /// From now until `end_bulk`, changes leave numbers' places in their areas unsettled.
    pub fn begin_bulk(&mut self) {
        self.deferred.get_or_insert_default();
    }

    /// Settles the place of every number changed since `begin_bulk`.
    pub fn end_bulk(&mut self, now_ms: i64) {
        for x in self.deferred.take().unwrap_or_default() {
            self.refresh(&x, now_ms);
        }
    }

    fn refresh(&mut self, x: &str, now_ms: i64) {
        if let Some(deferred) = &mut self.deferred {
            if !deferred.contains(x) {
                deferred.insert(x.to_owned());
            }
            return;
        }
        let Some(num) = self.numbers.get_mut(x) else {
            return;
        };
        let area_name = num.area.clone();
        Self::unlist(&mut self.areas, x, num, &area_name);
        let area = self.areas.entry(area_name).or_default();
        if num.state != NumberState::Active || num.suspect || !num.status.takes_bindings() {
            return;
        }
        let rules = &self.rules;
        let placement = match rules.mode {
            Mode::Axb | Mode::X => (num.load < rules.max_bindings_per_x)
                .then_some(Place::Eligible(i64::from(num.load))),
            Mode::Ax if num.load > 0 => None,
            Mode::Ax if num.cool_until_ms > now_ms => Some(Place::Cooling(num.cool_until_ms)),
            // Longest-free first, so a released number rests as long as possible.
            Mode::Ax => Some(Place::Eligible(num.cool_until_ms)),
            Mode::Axe => match num.ext.as_ref().map(|s| s.availability(now_ms)) {
                Some(Availability::Now) => Some(Place::Eligible(i64::from(num.load))),
                Some(Availability::At(t)) => Some(Place::Cooling(t)),
                _ => None,
            },
            Mode::Axyb => (num.load == 0).then_some(Place::Eligible(i64::from(num.y_load))),
        };
        match placement {
            Some(Place::Eligible(k)) => {
                area.eligible.insert((k, x.to_owned()));
                num.eligible_key = Some(k);
            }
            Some(Place::Cooling(t)) => {
                area.cooling.insert((t, x.to_owned()));
                num.cooling_key = Some(t);
            }
            None => {}
        }
    }

    fn unlist(areas: &mut BTreeMap<String, Area>, x: &str, num: &mut Num, area: &str) {
        let Some(a) = areas.get_mut(area) else { return };
        if let Some(k) = num.eligible_key.take() {
            a.eligible.remove(&(k, x.to_owned()));
        }
        if let Some(k) = num.cooling_key.take() {
            a.cooling.remove(&(k, x.to_owned()));
        }
    }
}

#[cfg(test)]
impl Index {
    /// Everything the index holds, in an order that does not depend on how it was built (to
    /// compare two indexes).
    pub fn digest(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let numbers: BTreeMap<_, _> = self.numbers.iter().collect();
        for (x, n) in numbers {
            let ext = n.ext.as_ref().map(|e| e.digest());
            let _ = writeln!(
                out,
                "{x}: area {} {:?} load {} cool_until {} y_load {} suspect {} {:?} eligible {:?} \
                 cooling {:?} ext {ext:?}",
                n.area,
                n.state,
                n.load,
                n.cool_until_ms,
                n.y_load,
                n.suspect,
                n.status,
                n.eligible_key,
                n.cooling_key,
            );
        }
        for (name, area) in &self.areas {
            let _ = writeln!(out, "area {name}: {:?} {:?}", area.eligible, area.cooling);
        }
        let _ = writeln!(out, "parties: {}", self.party_xs.digest());
        let _ = writeln!(out, "deferred: {:?}", self.deferred);
        out
    }
}

enum Place {
    Eligible(i64),
    Cooling(i64),
}

/// The parties whose presence on X the mode restricts.
fn parties<'a>(b: &Occupant<'a>, mode: Mode) -> Vec<&'a str> {
    match mode {
        Mode::Axb | Mode::X => [Some(b.party_a), b.party_b].into_iter().flatten().collect(),
        Mode::Ax | Mode::Axe | Mode::Axyb => vec![b.party_a],
    }
}
