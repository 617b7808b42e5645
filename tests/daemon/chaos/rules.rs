//! The rules a round's listings must keep (see `check` for when they are looked at): each
//! takes what the daemon and the platform list and adds what it finds to [`Findings`].
//!
//! Bindings at their deadline leave the two sides at slightly different moments (the platform
//! expires AXB at its own deadline, the daemon a skew grace later; AX is unbound by the daemon):
//! such a difference is `expiring`, not broken.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xpool::grpc::pb;

use super::history::{History, Tracked};
use super::{APPS, AXB_CAP, SKEW_GRACE_MS};
use crate::support::{Slot, slot, slot_conflict, text};

/// How late after its deadline (and skew grace) a binding may still be ACTIVE here.
const EXPIRY_SLACK_MS: i64 = 5_000;

/// Differences found in one look.
#[derive(Debug, Default)]
pub struct Findings {
    /// Broken rules: the test fails at once.
    pub steady: Vec<String>,
    /// Differences an expiry in progress explains (the two sides expire a binding a skew grace
    /// apart): accepted after a round, waited out when settling.
    pub expiring: Vec<String>,
    /// Differences between two listings made a moment apart: looked at again.
    pub racy: Vec<String>,
}

/// Wall-clock ms just before and just after a look's listings.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub before: i64,
    pub after: i64,
}

/// The skew grace the daemon adds to a deadline before expiring a binding of `mode` (AX ones
/// it unbinds itself at the deadline).
pub fn grace(mode: pb::Mode) -> i64 {
    if mode == pb::Mode::Ax {
        0
    } else {
        SKEW_GRACE_MS
    }
}

/// Whether an expiry in progress explains a difference about a binding of `mode` due at
/// `deadline_ms`: it is (nearly) due, and not so long ago that the daemon should be done.
fn expiring(deadline_ms: Option<i64>, mode: pb::Mode, at: Times) -> bool {
    deadline_ms
        .is_some_and(|d| d <= at.after + 1_000 && d + grace(mode) + EXPIRY_SLACK_MS >= at.before)
}

/// A binding's deadline, wall-clock ms.
pub fn deadline_ms(b: &pb::Binding) -> Option<i64> {
    b.expire_time
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

pub fn holds_slot(b: &pb::Binding) -> bool {
    matches!(
        b.state(),
        pb::BindingState::Pending | pb::BindingState::Active | pb::BindingState::Releasing
    )
}

/// (1) Every tracked binding is there, in a state its history allows; ACTIVE ones not yet
/// tracked (resolved after a lost answer, adopted by reconcile) are tracked from now on, and
/// one adopted by reconcile is allowed only if `late_commits` explains it.
pub fn acknowledged(
    hist: &mut History,
    app: usize,
    all: &[pb::Binding],
    at: Times,
    late_commits: bool,
    found: &mut Findings,
) {
    let by_id: HashMap<&str, &pb::Binding> =
        all.iter().map(|b| (b.binding_id.as_str(), b)).collect();
    for t in hist.bindings.values_mut().filter(|t| t.app == app) {
        let id = t.binding.binding_id.clone();
        match by_id.get(id.as_str()) {
            None => found.steady.push(format!(
                "acknowledged binding {id} is gone: {:?}",
                t.binding
            )),
            Some(now) => judge(t, now, at, found),
        }
    }
    for b in all.iter().filter(|b| b.state() == pb::BindingState::Active) {
        if hist.bindings.contains_key(&b.binding_id) {
            continue;
        }
        // Adopted by a reconcile: the platform had a binding the daemon had lost track of,
        // which only a request landing after its caller gave up explains.
        if b.selection_reason.starts_with("adopted") && !late_commits {
            found.steady.push(format!(
                "a binding the daemon had lost track of, adopted: {b:?}"
            ));
        }
        hist.counts.adopted += 1;
        hist.bindings
            .insert(b.binding_id.clone(), Tracked::new(app, b.clone()));
    }
}

/// The state of tracked binding `t` as it is `now`.
fn judge(t: &mut Tracked, now: &pb::Binding, at: Times, found: &mut Findings) {
    use pb::BindingState as S;
    let id = &t.binding.binding_id;
    let state = now.state();
    let mode = t.binding.mode();
    let due = |by: i64| t.deadline_ms.is_some_and(|d| d + grace(mode) <= by);
    // An Unbind the resolver finishes after the deadline ends the binding EXPIRED, graceless.
    let expired_in_time = due(at.after + 100)
        || (t.unbind_sent && t.deadline_ms.is_some_and(|d| d <= at.after + 100));
    let problem = match state {
        S::Pending | S::Unspecified => Some(format!("acknowledged binding {id} is {state:?}")),
        S::Active if t.ended.is_some() => Some(format!("{id} ended {:?}, ACTIVE again", t.ended)),
        S::Active if slot(now) != slot(&t.binding) => Some(format!(
            "{id} moved from {:?} to {:?}",
            slot(&t.binding),
            slot(now)
        )),
        S::Active if due(at.before - EXPIRY_SLACK_MS) => {
            Some(format!("{id} is ACTIVE long past its deadline: {now:?}"))
        }
        S::Active => None,
        S::Releasing if t.unbind_sent || t.deadline_ms.is_some_and(|d| d <= at.after) => None,
        S::Releasing => Some(format!("{id} is RELEASING, never unbound nor due")),
        S::Released if t.unbind_sent && t.ended != Some(S::Expired) => None,
        S::Released => Some(format!(
            "{id} is RELEASED, never unbound (or after it had expired): {now:?}"
        )),
        S::Expired if t.ended != Some(S::Released) && expired_in_time => None,
        S::Expired => Some(format!(
            "{id} EXPIRED before its deadline (plus skew grace) or after its release: {now:?}"
        )),
    };
    match problem {
        Some(p) => found.steady.push(p),
        None if matches!(state, S::Released | S::Expired) => t.ended = Some(state),
        // An Unbind that failed before it began: the binding is live, and may be unbound again.
        None if state == S::Active => t.unbind_sent = false,
        None => {}
    }
}

/// (2) No slot held twice, and the index counts what the records hold.
pub fn held(app: usize, all: &[pb::Binding], numbers: &[pb::NumberInfo], found: &mut Findings) {
    let mode = APPS[app].mode;
    let holders: Vec<&pb::Binding> = all
        .iter()
        .filter(|b| holds_slot(b) && !b.x_number.is_empty())
        .collect();
    // AXYB: the platform picks X and Y, and may give again what a binding in doubt here held
    // (its unbind went through, the answer was lost): only ACTIVE ones must not collide.
    let exclusive: Vec<&pb::Binding> = holders
        .iter()
        .copied()
        .filter(|b| mode != pb::Mode::Axyb || b.state() == pb::BindingState::Active)
        .collect();
    for (i, b) in exclusive.iter().enumerate() {
        if let Some(p) = slot_conflict(mode, AXB_CAP, b, &exclusive[..i]) {
            found
                .steady
                .push(format!("two bindings hold one slot: {p}"));
        }
    }
    let mut per_x: BTreeMap<&str, i32> = BTreeMap::new();
    for b in &holders {
        *per_x.entry(b.x_number.as_str()).or_default() += 1;
    }
    for n in numbers {
        let held = per_x.get(n.number.as_str()).copied().unwrap_or(0);
        if n.binding_count != held {
            // Listed a moment after the bindings: an expiry or resolution may fall in between,
            // but a difference that lasts is the index's.
            found.racy.push(format!(
                "ListNumbers says {} holds {}, the records {held}: {n:?}",
                n.number, n.binding_count
            ));
        }
    }
}

/// (4) No request id with two bindings: one record per request id here, and on the platform
/// at most one live binding of its party A.
pub fn requests(
    hist: &History,
    app: usize,
    all: &[pb::Binding],
    remote: &[serde_json::Value],
    found: &mut Findings,
) {
    let mut by_rid: BTreeMap<&str, Vec<&pb::Binding>> = BTreeMap::new();
    for b in all.iter().filter(|b| !b.request_id.is_empty()) {
        by_rid.entry(b.request_id.as_str()).or_default().push(b);
    }
    let mut upstream: BTreeMap<String, usize> = BTreeMap::new();
    for p in remote {
        *upstream.entry(text(p, "a")).or_default() += 1;
    }
    for (rid, r) in hist.requests.iter().filter(|(_, r)| r.app == app) {
        let records = by_rid.get(rid.as_str()).map_or(&[][..], Vec::as_slice);
        if records.len() > 1 {
            found.steady.push(format!(
                "request {rid} has {} bindings: {records:?}",
                records.len()
            ));
        }
        if let (Some(acked), Some(b)) = (&r.acked, records.first())
            && b.binding_id != *acked
        {
            found.steady.push(format!(
                "request {rid} was answered {acked}, now holds {b:?}"
            ));
        }
        if r.acked.is_some() && records.is_empty() {
            found
                .steady
                .push(format!("request {rid} (answered {:?}) is gone", r.acked));
        }
        let a = &r.req.party_a;
        let here: Vec<&pb::Binding> = all
            .iter()
            .filter(|b| holds_slot(b) && b.party_a == *a)
            .collect();
        let live_upstream = upstream.get(a).copied().unwrap_or(0);
        if here.len() > 1 || live_upstream > 1 {
            let there: Vec<&serde_json::Value> =
                remote.iter().filter(|p| text(p, "a") == *a).collect();
            let problem = format!(
                "request {rid} (party A {a} of its own) has {} live bindings here and \
                 {live_upstream} on the platform:\nhere {here:#?}\nthere {there:#?}",
                here.len()
            );
            found.steady.push(problem);
        }
    }
}

/// (3) Local state equals the platform's.
pub fn in_step(
    app: usize,
    all: &[pb::Binding],
    remote: &[serde_json::Value],
    at: Times,
    found: &mut Findings,
) {
    use pb::BindingState as S;
    let mode = APPS[app].mode;
    let explained = |b: &pb::Binding| expiring(deadline_ms(b), mode, at);
    let upstream: BTreeSet<Slot> = remote.iter().map(sim_slot).collect();
    for b in all.iter().filter(|b| b.state() == S::Active) {
        if !upstream.contains(&slot(b)) {
            let what = format!("ACTIVE here, not on the platform: {b:?}");
            if explained(b) {
                found.expiring.push(what);
            } else {
                found.steady.push(what);
            }
        }
    }
    // A platform binding is a local one by subscription and, for AXYB (whose AX relation may
    // carry several YB relations, each a binding), by Y too.
    let by_sub: HashMap<(&str, &str), &pb::Binding> = all
        .iter()
        .filter(|b| !b.subscription_id.is_empty())
        .map(|b| ((b.subscription_id.as_str(), b.y_number.as_str()), b))
        .collect();
    for p in remote {
        let s = sim_slot(p);
        let Some(b) = by_sub.get(&(s.0.as_str(), s.4.as_str())) else {
            let pending = all.iter().any(|b| {
                b.state() == S::Pending
                    && b.party_a == s.2
                    && b.party_b == s.3
                    && (b.x_number.is_empty() || b.x_number == s.1)
            });
            if !pending {
                found
                    .steady
                    .push(format!("on the platform only (after a reconcile): {p}"));
            }
            continue;
        };
        match b.state() {
            S::Active if slot(b) == s => {}
            S::Releasing => {}
            // The platform's deadline counts from its own bind time, a little later.
            S::Expired if mode != pb::Mode::Ax && explained(b) => found
                .expiring
                .push(format!("EXPIRED here, still live upstream: {b:?}")),
            _ => found.steady.push(format!(
                "live on the platform as {p}, here {:?}: {b:?}",
                b.state()
            )),
        }
    }
}

/// The [`Slot`] of a simulator binding.
fn sim_slot(p: &serde_json::Value) -> Slot {
    (
        text(p, "subscriptionId"),
        text(p, "x"),
        text(p, "a"),
        text(p, "b"),
        text(p, "y"),
        text(p, "extension"),
    )
}
