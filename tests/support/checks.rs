//! Checks that compare the daemon with the platform, and small tools for concurrent tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use super::daemon::Daemon;
use super::grpc::list_numbers;
use super::sim::Sim;

/// A test must not hang CI: every phase run through [`within`] ends within this limit.
pub const PHASE: Duration = Duration::from_secs(30);

/// What identifies a live binding on both sides: (subscription, x, a, b, y, extension).
pub type Slot = (String, String, String, String, String, String);

/// The [`Slot`] of a daemon binding.
pub fn slot(b: &pb::Binding) -> Slot {
    (
        b.subscription_id.clone(),
        b.x_number.clone(),
        b.party_a.clone(),
        b.party_b.clone(),
        b.y_number.clone(),
        b.extension.clone(),
    )
}

/// The [`Slot`]s of the simulator's live bindings of `app_key`.
pub async fn sim_slots(sim: &Sim, app_key: &str) -> BTreeSet<Slot> {
    sim.bindings(app_key)
        .await
        .iter()
        .map(|b| {
            (
                text(b, "subscriptionId"),
                text(b, "x"),
                text(b, "a"),
                text(b, "b"),
                text(b, "y"),
                text(b, "extension"),
            )
        })
        .collect()
}

/// How a test of one app ends: [`assert_local_equals_sim`], then a clean stop.
pub async fn stop_in_step(d: Daemon, app: &str, app_key: &str) {
    assert_local_equals_sim(&d, app, app_key).await;
    d.stop().await;
}

/// Local ACTIVE bindings of `app` and the simulator's live bindings of `app_key` are the same
/// set of slots, and nothing is left PENDING.
pub async fn assert_local_equals_sim(d: &Daemon, app: &str, app_key: &str) {
    let local: BTreeSet<Slot> = d
        .list(app, pb::BindingState::Active)
        .await
        .iter()
        .map(slot)
        .collect();
    let remote = sim_slots(&d.sim, app_key).await;
    assert_eq!(
        local, remote,
        "local ACTIVE bindings of {app} differ from the platform's"
    );
    let pending = d.list(app, pb::BindingState::Pending).await;
    assert!(
        pending.is_empty(),
        "unresolved PENDING bindings: {pending:?}"
    );
}

/// The daemon and the platform agree on `app`: every binding of `acked` is live upstream, the
/// ACTIVE sets are equal and the pool's counts match.
pub async fn assert_in_step(d: &Daemon, app: &str, app_key: &str, acked: &[pb::Binding]) {
    assert_acknowledged_live(d, app_key, acked).await;
    assert_local_equals_sim(d, app, app_key).await;
    assert_counts_match(d, app, app_key).await;
}

/// [`assert_local_equals_sim`] for every app of the daemon's setup that has a platform side.
pub async fn assert_all_local_equals_sim(d: &Daemon) {
    for app in &d.setup.apps {
        if let Some(key) = &app.key {
            assert_local_equals_sim(d, &app.name, key).await;
        }
    }
}

/// Awaits `f` for at most [`PHASE`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PHASE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PHASE:?}"))
}

/// A few connections, shared by many concurrent calls (clones multiplex on them).
pub async fn clients(d: &Daemon, n: usize) -> Vec<BindingServiceClient<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(d.bindings().await);
    }
    out
}

/// Why `new` cannot coexist with the live bindings `others` of the same app, if it cannot: the
/// same X (AX; AXYB unless both are YB relations under one AX), X and extension or A twice on an
/// X (AXE), a party twice on an X or more than `axb_cap` bindings on it (AXB).
pub fn slot_conflict(
    mode: pb::Mode,
    axb_cap: usize,
    new: &pb::Binding,
    others: &[&pb::Binding],
) -> Option<String> {
    let same_x: Vec<&&pb::Binding> = others
        .iter()
        .filter(|b| b.x_number == new.x_number)
        .collect();
    let parties = |b: &pb::Binding| -> Vec<String> {
        [b.party_a.clone(), b.party_b.clone()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect()
    };
    match mode {
        pb::Mode::Ax => same_x
            .first()
            .map(|b| format!("X {} of {new:?} is held by {b:?}", new.x_number)),
        // One AX relation (A through X) may carry several YB relations, each a binding.
        pb::Mode::Axyb => same_x
            .iter()
            .find(|b| {
                b.subscription_id.is_empty()
                    || b.subscription_id != new.subscription_id
                    || b.party_b == new.party_b
                    || b.y_number == new.y_number
            })
            .map(|b| format!("X {} of {new:?} is held by {b:?}", new.x_number)),
        pb::Mode::Axe => same_x
            .iter()
            .find(|b| b.extension == new.extension || b.party_a == new.party_a)
            .map(|b| {
                format!(
                    "{} ext {} for {} collides with {b:?}",
                    new.x_number, new.extension, new.party_a
                )
            }),
        pb::Mode::Axb => {
            if same_x.len() >= axb_cap {
                return Some(format!(
                    "X {} already holds {} live bindings: {same_x:?}",
                    new.x_number,
                    same_x.len()
                ));
            }
            let mine = parties(new);
            same_x
                .iter()
                .find(|b| parties(b).iter().any(|p| mine.contains(p)))
                .map(|b| format!("{new:?} shares a party on X with {b:?}"))
        }
        _ => None,
    }
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    /// Two different parties out of `n`.
    pub fn pair(&mut self, n: u32) -> (u32, u32) {
        let a = self.below(n);
        let b = (a + 1 + self.below(n - 1)) % n;
        (a, b)
    }
}

/// The string field `k` of a simulator binding ("" if absent).
pub fn text(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Every acknowledged binding that was not released since is live on the simulator under its
/// subscription id, with the same X and parties.
pub async fn assert_acknowledged_live(d: &Daemon, app_key: &str, acked: &[pb::Binding]) {
    let live: BTreeMap<String, serde_json::Value> = d
        .sim
        .bindings(app_key)
        .await
        .into_iter()
        .map(|b| (text(&b, "subscriptionId"), b))
        .collect();
    for b in acked {
        let on_sim = live
            .get(&b.subscription_id)
            .unwrap_or_else(|| panic!("acknowledged binding not on the platform: {b:?}"));
        assert_eq!(text(on_sim, "x"), b.x_number, "{b:?} vs {on_sim}");
        assert_eq!(text(on_sim, "a"), b.party_a, "{b:?} vs {on_sim}");
        assert_eq!(text(on_sim, "b"), b.party_b, "{b:?} vs {on_sim}");
        assert_eq!(text(on_sim, "extension"), b.extension, "{b:?} vs {on_sim}");
    }
}

/// The fields `F` of every live binding, on the platform (`app_key`) and in the daemon's ACTIVE
/// list (`app`), for rules that must hold on both sides. Fields: x, a, b, extension.
async fn both_sides<const F: usize>(
    d: &Daemon,
    app: &str,
    app_key: &str,
    fields: [&str; F],
) -> [(&'static str, Vec<[String; F]>); 2] {
    let local_field = |b: &pb::Binding, k: &str| match k {
        "x" => b.x_number.clone(),
        "a" => b.party_a.clone(),
        "b" => b.party_b.clone(),
        "extension" => b.extension.clone(),
        _ => panic!("no field {k}"),
    };
    let remote = d.sim.bindings(app_key).await;
    let local = d.list(app, pb::BindingState::Active).await;
    [
        (
            "platform",
            remote.iter().map(|b| fields.map(|k| text(b, k))).collect(),
        ),
        (
            "daemon",
            local
                .iter()
                .map(|b| fields.map(|k| local_field(b, k)))
                .collect(),
        ),
    ]
}

/// AXB: on each X every party appears at most once (either role) and at most `cap` bindings,
/// on the platform and in the daemon's ACTIVE list.
pub async fn assert_axb_rules(d: &Daemon, app: &str, app_key: &str, cap: usize) {
    for (side, all) in both_sides(d, app, app_key, ["x", "a", "b"]).await {
        let mut parties: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for [x, a, b] in &all {
            assert_ne!(a, b, "{side}: A = B on {x}");
            let on_x = parties.entry(x).or_default();
            assert!(on_x.insert(a), "{side}: party {a} twice on {x}");
            assert!(on_x.insert(b), "{side}: party {b} twice on {x}");
            *count.entry(x).or_default() += 1;
        }
        for (x, n) in count {
            assert!(n <= cap, "{side}: {n} bindings on {x}, cap {cap}");
        }
    }
}

/// AX: one A per X, at most five Xs per A (platform and daemon).
pub async fn assert_ax_rules(d: &Daemon, app: &str, app_key: &str) {
    for (side, all) in both_sides(d, app, app_key, ["x", "a"]).await {
        let mut xs = BTreeSet::new();
        let mut per_a: BTreeMap<&str, usize> = BTreeMap::new();
        for [x, a] in &all {
            assert!(xs.insert(x), "{side}: X {x} bound twice");
            *per_a.entry(a).or_default() += 1;
        }
        for (a, n) in per_a {
            assert!(n <= 5, "{side}: A {a} holds {n} Xs");
        }
    }
}

/// AXE: extensions unique per X, one A at most once per X (platform and daemon).
pub async fn assert_axe_rules(d: &Daemon, app: &str, app_key: &str) {
    for (side, all) in both_sides(d, app, app_key, ["x", "extension", "a"]).await {
        let mut slots = BTreeSet::new();
        let mut parties = BTreeSet::new();
        for [x, e, a] in &all {
            assert_eq!(e.len(), 1, "{side}: extension {e:?} on {x}");
            assert!(slots.insert((x, e)), "{side}: {x} ext {e} bound twice");
            assert!(parties.insert((x, a)), "{side}: A {a} twice on {x}");
        }
    }
}

/// The daemon's per-number loads (ListNumbers) and per-area bound counts (GetPoolStats) agree
/// with the platform's live bindings, and nothing is left PENDING or RELEASING.
pub async fn assert_counts_match(d: &Daemon, app: &str, app_key: &str) {
    let mut by_x: BTreeMap<String, i32> = BTreeMap::new();
    for b in d.sim.bindings(app_key).await {
        *by_x.entry(text(&b, "x")).or_default() += 1;
    }
    let numbers = list_numbers(&mut d.pool().await, app).await;
    let mut bound_per_area: BTreeMap<String, i32> = BTreeMap::new();
    for n in &numbers {
        let live = by_x.get(&n.number).copied().unwrap_or(0);
        assert_eq!(
            n.binding_count, live,
            "{app}: ListNumbers says {} holds {} bindings, the platform has {live}",
            n.number, n.binding_count
        );
        *bound_per_area.entry(n.area_code.clone()).or_default() += i32::from(live > 0);
    }
    let listed: BTreeSet<&String> = numbers.iter().map(|n| &n.number).collect();
    for x in by_x.keys() {
        assert!(listed.contains(x), "{app}: live binding on unknown X {x}");
    }
    let stats = d.pool_stats(app).await;
    for a in &stats.areas {
        let expected = bound_per_area.get(&a.area_code).copied().unwrap_or(0);
        assert_eq!(
            a.bound, expected,
            "{app}: GetPoolStats says {} Xs bound in {}, the platform {expected}",
            a.bound, a.area_code
        );
        assert!(a.free <= a.total - a.draining, "{a:?}");
    }
    for state in [pb::BindingState::Pending, pb::BindingState::Releasing] {
        let open = d.list(app, state).await;
        assert!(open.is_empty(), "{app}: left {state:?}: {open:?}");
    }
}

/// Waits for the background resolver to close every PENDING and RELEASING binding of `app`.
pub async fn settle_in_background(d: &Daemon, app: &str) {
    let started = Instant::now();
    loop {
        let open = d.list(app, pb::BindingState::Pending).await.len()
            + d.list(app, pb::BindingState::Releasing).await.len();
        if open == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{open} bindings of {app} still open after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
