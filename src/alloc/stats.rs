//! What the index knows about an app's numbers, for the admin API: one view per number, counts
//! per area.

use std::collections::{BinaryHeap, HashMap};

use super::index::Num;
use super::{Index, NumberState, NumberStatus};

/// Per-area counts of an app's pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AreaStats {
    pub area_code: String,
    pub total: u32,
    /// Numbers carrying at least one live binding.
    pub bound: u32,
    /// Numbers a Bind could get now.
    pub free: u32,
    pub cooling_down: u32,
    pub draining: u32,
    /// Numbers the platform holds out of rotation (status paused, unavailable or
    /// binding-frozen).
    pub held_by_platform: u32,
    /// AXE: extensions free now across the area's active numbers.
    pub free_extensions: u64,
}

/// One number with its live state, for ListNumbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberView {
    pub number: String,
    pub area_code: String,
    pub state: NumberState,
    /// What the platform's status pushes last said of it.
    pub status: NumberStatus,
    pub bindings: u32,
    pub free_extensions: u64,
    pub cooling: u64,
}

impl Index {
    /// Number `x` as ListNumbers shows it.
    pub fn number_view(&self, x: &str, now_ms: i64) -> Option<NumberView> {
        self.number(x).map(|n| view(x, n, now_ms))
    }

    /// One page of the numbers (of `area`, when given) in number order: the first `limit`
    /// after `after`, and whether more follow. Keeps only the page while it scans, never the
    /// whole list.
    pub fn number_page(
        &self,
        area: Option<&str>,
        after: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> (Vec<NumberView>, bool) {
        // The `limit + 1` smallest numbers past `after`, the largest on top.
        let mut page: BinaryHeap<&String> = BinaryHeap::with_capacity(limit + 1);
        for (x, n) in self.numbers() {
            if area.is_some_and(|a| n.area != a) || after.is_some_and(|a| x.as_str() <= a) {
                continue;
            }
            if page.len() <= limit {
                page.push(x);
            } else if page.peek().is_some_and(|top| x < *top) {
                page.pop();
                page.push(x);
            }
        }
        let more = page.len() > limit;
        let views = page
            .into_sorted_vec()
            .into_iter()
            .take(limit)
            .filter_map(|x| self.number_view(x, now_ms))
            .collect();
        (views, more)
    }

    /// Counts per area, sorted by area code.
    pub fn area_stats(&mut self, now_ms: i64) -> Vec<AreaStats> {
        let eligible: HashMap<String, usize> = self
            .area_names()
            .into_iter()
            .map(|a| {
                let n = self.eligible_in(&a, now_ms);
                (a, n)
            })
            .collect();
        let mut areas: HashMap<String, AreaStats> = HashMap::new();
        for (_, n) in self.numbers() {
            let s = areas.entry(n.area.clone()).or_insert_with(|| AreaStats {
                area_code: n.area.clone(),
                ..Default::default()
            });
            s.total += 1;
            s.bound += u32::from(n.load > 0);
            s.draining += u32::from(n.state == NumberState::Draining);
            s.held_by_platform += u32::from(!n.status.takes_bindings());
            let cooling = match &n.ext {
                Some(space) => space.cooling_count(now_ms) > 0 && space.free_now(now_ms) == 0,
                None => n.cool_until_ms > now_ms && n.load == 0,
            };
            s.cooling_down += u32::from(cooling && n.state == NumberState::Active);
            if n.state == NumberState::Active {
                s.free_extensions += n.ext.as_ref().map_or(0, |e| e.free_now(now_ms));
            }
        }
        for (area, s) in areas.iter_mut() {
            s.free = eligible.get(area).copied().unwrap_or(0) as u32;
        }
        let mut out: Vec<_> = areas.into_values().collect();
        out.sort_by(|a, b| a.area_code.cmp(&b.area_code));
        out
    }
}

fn view(x: &str, n: &Num, now_ms: i64) -> NumberView {
    NumberView {
        number: x.to_owned(),
        area_code: n.area.clone(),
        state: n.state,
        status: n.status,
        bindings: n.load,
        free_extensions: n.ext.as_ref().map_or(0, |s| s.free_now(now_ms)),
        cooling: match &n.ext {
            Some(s) => s.cooling_count(now_ms),
            None => u64::from(n.cool_until_ms > now_ms),
        },
    }
}
