//! The extension space of one AXE number: which extensions are in use, cooling down, or free.
//!
//! Memory is proportional to the extensions ever touched, not to the space: extensions at or above
//! `next_fresh` have never been handed out; the ones below it are either in use or waiting in
//! `cooling`, ordered by the time they may be reused (oldest release first).

use std::collections::{BTreeSet, HashMap};

/// Extensions of one X.
#[derive(Debug, Clone)]
pub struct ExtSpace {
    /// Highest extension number (10^digits − 1, or the configured cap).
    max: u16,
    digits: u8,
    /// Every extension >= this one is untouched.
    next_fresh: u16,
    in_use: std::collections::HashSet<u16>,
    /// (reusable from, ms; extension), oldest first.
    cooling: BTreeSet<(i64, u16)>,
    cooling_until: HashMap<u16, i64>,
}

/// How an extension was chosen, for the binding's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtChoice {
    Fresh,
    Reused,
}

impl ExtSpace {
    pub fn new(digits: u8, cap: Option<u32>) -> Self {
        let space = 10u32.pow(u32::from(digits)) - 1;
        let max = cap.map_or(space, |c| c.min(space)).min(u32::from(u16::MAX)) as u16;
        ExtSpace {
            max,
            digits,
            next_fresh: 1,
            in_use: Default::default(),
            cooling: BTreeSet::new(),
            cooling_until: HashMap::new(),
        }
    }

    pub fn format(&self, ext: u16) -> String {
        format!("{ext:0width$}", width = usize::from(self.digits))
    }

    /// Parses an extension of exactly the configured length within the space.
    pub fn parse(&self, text: &str) -> Option<u16> {
        if text.len() != usize::from(self.digits) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().filter(|e| (1..=self.max).contains(e))
    }

    /// Extensions that could be handed out at `now_ms`.
    pub fn free_now(&self, now_ms: i64) -> u64 {
        let fresh = u64::from(self.max.saturating_sub(self.next_fresh.saturating_sub(1)));
        let due = self
            .cooling
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .count() as u64;
        fresh + due
    }

    pub fn cooling_count(&self, now_ms: i64) -> u64 {
        self.cooling.iter().filter(|(t, _)| *t > now_ms).count() as u64
    }

    /// Whether some extension is free now; if not, when the first cooling one frees up.
    pub fn availability(&self, now_ms: i64) -> Availability {
        if self.next_fresh <= self.max {
            return Availability::Now;
        }
        match self.cooling.first() {
            Some((t, _)) if *t <= now_ms => Availability::Now,
            Some((t, _)) => Availability::At(*t),
            None => Availability::Never,
        }
    }

    /// The extension a new binding should get: never-used first, then the oldest cooled down.
    pub fn choose(&self, now_ms: i64) -> Option<(u16, ExtChoice)> {
        if self.next_fresh <= self.max {
            return Some((self.next_fresh, ExtChoice::Fresh));
        }
        match self.cooling.first() {
            Some(&(t, e)) if t <= now_ms => Some((e, ExtChoice::Reused)),
            _ => None,
        }
    }

    /// Whether `ext` may be handed out now.
    pub fn is_free(&self, ext: u16, now_ms: i64) -> bool {
        if self.in_use.contains(&ext) || ext == 0 || ext > self.max {
            return false;
        }
        match self.cooling_until.get(&ext) {
            Some(t) => *t <= now_ms,
            None => true,
        }
    }

    /// Marks `ext` in use (it may come from any state: fresh, cooling, or re-read at start-up).
    pub fn occupy(&mut self, ext: u16) {
        if let Some(t) = self.cooling_until.remove(&ext) {
            self.cooling.remove(&(t, ext));
        }
        self.expose_below(ext);
        self.in_use.insert(ext);
    }

    /// Returns `ext`, reusable from `reusable_at_ms`.
    pub fn release(&mut self, ext: u16, reusable_at_ms: i64) {
        self.in_use.remove(&ext);
        self.cool(ext, reusable_at_ms);
    }

    /// Records a released extension found at start-up (no longer in use).
    pub fn cool(&mut self, ext: u16, reusable_at_ms: i64) {
        if self.in_use.contains(&ext) || ext == 0 || ext > self.max {
            return;
        }
        self.expose_below(ext);
        if let Some(old) = self.cooling_until.insert(ext, reusable_at_ms) {
            self.cooling.remove(&(old, ext));
        }
        self.cooling.insert((reusable_at_ms, ext));
    }

    /// Moves the fresh watermark above `ext`; skipped extensions become free at once.
    fn expose_below(&mut self, ext: u16) {
        while self.next_fresh <= ext {
            let skipped = self.next_fresh;
            self.next_fresh += 1;
            if skipped != ext {
                self.cooling_until.insert(skipped, 0);
                self.cooling.insert((0, skipped));
            }
        }
    }
}

#[cfg(test)]
impl ExtSpace {
    /// Its state, in an order that does not depend on how it was built.
    pub fn digest(&self) -> String {
        let mut in_use: Vec<_> = self.in_use.iter().collect();
        in_use.sort();
        let until: std::collections::BTreeMap<_, _> = self.cooling_until.iter().collect();
        format!(
            "max {} next_fresh {} in_use {in_use:?} cooling {:?} until {until:?}",
            self.max, self.next_fresh, self.cooling
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Now,
    At(i64),
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_extensions_first_then_the_oldest_cooled_down() {
        let mut s = ExtSpace::new(1, None);
        for e in 1..=9 {
            assert_eq!(s.choose(0), Some((e, ExtChoice::Fresh)));
            s.occupy(e);
        }
        assert_eq!(s.choose(0), None);
        assert_eq!(s.availability(0), Availability::Never);
        s.release(5, 100);
        s.release(2, 50);
        assert_eq!(s.availability(0), Availability::At(50));
        assert_eq!(s.choose(49), None);
        assert_eq!(s.choose(50), Some((2, ExtChoice::Reused)));
        assert_eq!(s.free_now(100), 2);
        assert!(!s.is_free(5, 99) && s.is_free(5, 100));
    }

    #[test]
    fn gaps_below_an_occupied_extension_stay_free() {
        let mut s = ExtSpace::new(2, Some(20));
        s.occupy(7);
        assert_eq!(s.free_now(0), 19);
        assert!(s.is_free(3, 0));
        assert_eq!(s.choose(0), Some((8, ExtChoice::Fresh)));
        s.occupy(3);
        assert!(!s.is_free(3, 0));
        assert_eq!(s.format(3), "03");
        assert_eq!(s.parse("03"), Some(3));
        assert_eq!(s.parse("3"), None);
        assert_eq!(s.parse("21"), None, "above the cap");
        assert_eq!(s.parse("00"), None);
    }
}
