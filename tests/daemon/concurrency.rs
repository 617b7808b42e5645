//! Many concurrent Binds and Unbinds over small pools with heavily overlapping parties: every
//! acknowledged binding exists on the simulator, no allocation rule is broken, no slot is freed
//! twice, and the daemon's state (bindings, number loads, pool stats) equals the platform's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use crate::common::*;

/// Small pools: AXB with 6 Xs of at most 10 bindings, AX with 8 Xs, AXE with 3 Xs of 1-digit
/// extensions.
const SIM: &str = r#"
[[apps]]
app_key = "k-axb"
app_secret = "s-axb"
mode = "AXB"
max_bindings_per_x = 10
numbers = [
  { number = "+8617000000001", area_code = "010" },
  { number = "+8617000000002", area_code = "010" },
  { number = "+8617000000003", area_code = "010" },
  { number = "+8617000000004", area_code = "021" },
  { number = "+8617000000005", area_code = "021" },
  { number = "+8617000000006", area_code = "021" },
]

[[apps]]
app_key = "k-ax"
app_secret = "s-ax"
mode = "AX"
numbers = [
  { number = "+8617100000001", area_code = "010" },
  { number = "+8617100000002", area_code = "010" },
  { number = "+8617100000003", area_code = "010" },
  { number = "+8617100000004", area_code = "010" },
  { number = "+8617100000005", area_code = "021" },
  { number = "+8617100000006", area_code = "021" },
  { number = "+8617100000007", area_code = "021" },
  { number = "+8617100000008", area_code = "021" },
]

[[apps]]
app_key = "k-axe"
app_secret = "s-axe"
mode = "AXE"
extension_digits = 1
numbers = [
  { number = "+8617200000001", area_code = "010" },
  { number = "+8617200000002", area_code = "010" },
  { number = "+8617200000003", area_code = "021" },
]
"#;

const DAEMON: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_delay_seconds = 0
shutdown_grace_seconds = 5

[store]
path = "{STORE}"

[[apps]]
name = "rides"
mode = "AXB"
base_url = "{SIM}"
app_key = "k-axb"
app_secret = "s-axb"
rate_per_second = 10000
timeout_ms = 2000
max_bindings_per_x = 10
numbers = [
  { number = "+8617000000001", area_code = "010" },
  { number = "+8617000000002", area_code = "010" },
  { number = "+8617000000003", area_code = "010" },
  { number = "+8617000000004", area_code = "021" },
  { number = "+8617000000005", area_code = "021" },
  { number = "+8617000000006", area_code = "021" },
]

[[apps]]
name = "drivers"
mode = "AX"
base_url = "{SIM}"
app_key = "k-ax"
app_secret = "s-ax"
rate_per_second = 10000
timeout_ms = 2000
cool_down_seconds = 60
numbers = [
  { number = "+8617100000001", area_code = "010" },
  { number = "+8617100000002", area_code = "010" },
  { number = "+8617100000003", area_code = "010" },
  { number = "+8617100000004", area_code = "010" },
  { number = "+8617100000005", area_code = "021" },
  { number = "+8617100000006", area_code = "021" },
  { number = "+8617100000007", area_code = "021" },
  { number = "+8617100000008", area_code = "021" },
]

[[apps]]
name = "stores"
mode = "AXE"
base_url = "{SIM}"
app_key = "k-axe"
app_secret = "s-axe"
rate_per_second = 10000
timeout_ms = 2000
extension_digits = 1
cool_down_seconds = 60
numbers = [
  { number = "+8617200000001", area_code = "010" },
  { number = "+8617200000002", area_code = "010" },
  { number = "+8617200000003", area_code = "021" },
]
"#;

const AXB_CAP: usize = 10;

/// A test must not hang CI: every phase runs under this limit.
const PHASE: Duration = Duration::from_secs(30);

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    /// Two different parties out of `n`.
    pub(crate) fn pair(&mut self, n: u32) -> (u32, u32) {
        let a = self.below(n);
        let b = (a + 1 + self.below(n - 1)) % n;
        (a, b)
    }
}

/// A few connections, shared by many concurrent calls (clones multiplex on them).
pub(crate) async fn clients(d: &Daemon, n: usize) -> Vec<BindingServiceClient<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(d.bindings().await);
    }
    out
}

pub(crate) async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PHASE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PHASE:?}"))
}

/// Runs the binds concurrently; returns the acknowledged bindings and the error codes seen.
async fn bind_all(
    d: &Daemon,
    reqs: Vec<pb::BindRequest>,
) -> (Vec<pb::Binding>, HashMap<Code, usize>) {
    let conns = clients(d, 8).await;
    let mut tasks = Vec::new();
    for (i, req) in reqs.into_iter().enumerate() {
        let mut c = conns[i % conns.len()].clone();
        tasks.push(tokio::spawn(async move {
            c.bind(req).await.map(|r| r.into_inner())
        }));
    }
    let mut ok = Vec::new();
    let mut errors = HashMap::new();
    within("concurrent binds", async {
        for t in tasks {
            match t.await.unwrap() {
                Ok(b) => ok.push(b),
                Err(s) => {
                    assert!(
                        !matches!(s.code(), Code::Internal | Code::Unknown),
                        "a Bind failed with {s:?}"
                    );
                    *errors.entry(s.code()).or_default() += 1;
                }
            }
        }
    })
    .await;
    (ok, errors)
}

/// Unbinds concurrently (an id may be listed more than once); every Unbind must succeed.
async fn unbind_all(d: &Daemon, ids: Vec<String>) {
    let conns = clients(d, 8).await;
    let mut tasks = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let mut c = conns[i % conns.len()].clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .unbind(pb::UnbindRequest {
                    binding_id: id.clone(),
                    ..Default::default()
                })
                .await;
            (id, r.map(|r| r.into_inner()))
        }));
    }
    within("concurrent unbinds", async {
        for t in tasks {
            let (id, r) = t.await.unwrap();
            let b = r.unwrap_or_else(|s| panic!("Unbind {id} failed: {s:?}"));
            assert_eq!(b.state(), pb::BindingState::Released, "{b:?}");
        }
    })
    .await;
}

pub(crate) fn text(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Every acknowledged binding that was not released since is live on the simulator under its
/// subscription id, with the same X and parties.
pub(crate) async fn assert_acknowledged_live(d: &Daemon, app_key: &str, acked: &[pb::Binding]) {
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

/// AXB: on each X every party appears at most once (either role) and at most `cap` bindings,
/// on the platform and in the daemon's ACTIVE list.
pub(crate) async fn assert_axb_rules(d: &Daemon, app: &str, app_key: &str, cap: usize) {
    let remote: Vec<(String, String, String)> = d
        .sim
        .bindings(app_key)
        .await
        .iter()
        .map(|b| (text(b, "x"), text(b, "a"), text(b, "b")))
        .collect();
    let local: Vec<(String, String, String)> = d
        .list(app, pb::BindingState::Active)
        .await
        .into_iter()
        .map(|b| (b.x_number, b.party_a, b.party_b))
        .collect();
    for (side, all) in [("platform", remote), ("daemon", local)] {
        let mut parties: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for (x, a, b) in &all {
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
pub(crate) async fn assert_ax_rules(d: &Daemon, app: &str, app_key: &str) {
    let remote: Vec<(String, String)> = d
        .sim
        .bindings(app_key)
        .await
        .iter()
        .map(|b| (text(b, "x"), text(b, "a")))
        .collect();
    let local: Vec<(String, String)> = d
        .list(app, pb::BindingState::Active)
        .await
        .into_iter()
        .map(|b| (b.x_number, b.party_a))
        .collect();
    for (side, all) in [("platform", remote), ("daemon", local)] {
        let mut xs = BTreeSet::new();
        let mut per_a: BTreeMap<&str, usize> = BTreeMap::new();
        for (x, a) in &all {
            assert!(xs.insert(x), "{side}: X {x} bound twice");
            *per_a.entry(a).or_default() += 1;
        }
        for (a, n) in per_a {
            assert!(n <= 5, "{side}: A {a} holds {n} Xs");
        }
    }
}

/// AXE: extensions unique per X, one A at most once per X (platform and daemon).
pub(crate) async fn assert_axe_rules(d: &Daemon, app: &str, app_key: &str) {
    let remote: Vec<(String, String, String)> = d
        .sim
        .bindings(app_key)
        .await
        .iter()
        .map(|b| (text(b, "x"), text(b, "extension"), text(b, "a")))
        .collect();
    let local: Vec<(String, String, String)> = d
        .list(app, pb::BindingState::Active)
        .await
        .into_iter()
        .map(|b| (b.x_number, b.extension, b.party_a))
        .collect();
    for (side, all) in [("platform", remote), ("daemon", local)] {
        let mut slots = BTreeSet::new();
        let mut parties = BTreeSet::new();
        for (x, e, a) in &all {
            assert_eq!(e.len(), 1, "{side}: extension {e:?} on {x}");
            assert!(slots.insert((x, e)), "{side}: {x} ext {e} bound twice");
            assert!(parties.insert((x, a)), "{side}: A {a} twice on {x}");
        }
    }
}

/// The daemon's per-number loads (ListNumbers) and per-area bound counts (GetPoolStats) agree
/// with the platform's live bindings, and nothing is left PENDING or RELEASING.
pub(crate) async fn assert_counts_match(d: &Daemon, app: &str, app_key: &str) {
    let mut by_x: BTreeMap<String, u32> = BTreeMap::new();
    for b in d.sim.bindings(app_key).await {
        *by_x.entry(text(&b, "x")).or_default() += 1;
    }
    let numbers = d
        .pool()
        .await
        .list_numbers(pb::ListNumbersRequest {
            app: app.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .numbers;
    let mut bound_per_area: BTreeMap<String, u32> = BTreeMap::new();
    for n in &numbers {
        let live = by_x.get(&n.number).copied().unwrap_or(0);
        assert_eq!(
            n.bindings, live,
            "{app}: ListNumbers says {} holds {} bindings, the platform has {live}",
            n.number, n.bindings
        );
        *bound_per_area.entry(n.area_code.clone()).or_default() += u32::from(live > 0);
    }
    let listed: BTreeSet<&String> = numbers.iter().map(|n| &n.number).collect();
    for x in by_x.keys() {
        assert!(listed.contains(x), "{app}: live binding on unknown X {x}");
    }
    let stats = d
        .pool()
        .await
        .get_pool_stats(pb::GetPoolStatsRequest { app: app.into() })
        .await
        .unwrap()
        .into_inner();
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

/// The platform answered every call with success: the daemon never offered it a slot that the
/// platform's rules refuse.
async fn assert_platform_never_refused(d: &Daemon, app_key: &str) {
    let stats = d.sim.stats(app_key).await;
    let codes: Vec<&String> = stats["by_code"].as_object().unwrap().keys().collect();
    assert_eq!(codes, ["0"], "platform answers: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axb_thousand_concurrent_binds_keep_the_rules_and_match_the_platform() {
    let d = Daemon::start_with(SIM, DAEMON).await;
    let mut rng = Rng(0x5eed_0001);
    let reqs: Vec<pb::BindRequest> = (0..1000)
        .map(|_| {
            let (a, b) = rng.pair(30);
            let mut r = bind("rides", &party(a), Some(&party(b)));
            r.area_code = if rng.below(2) == 0 { "010" } else { "021" }.into();
            r.any_area = true;
            r
        })
        .collect();
    let (acked, errors) = bind_all(&d, reqs).await;
    assert!(
        errors.keys().all(|c| *c == Code::ResourceExhausted),
        "errors: {errors:?}"
    );
    // 6 Xs × 10: the pool fills up; the rest are told it is exhausted.
    assert!(acked.len() >= 40, "only {} bindings", acked.len());
    assert!(acked.len() <= 6 * AXB_CAP);
    for b in &acked {
        assert_eq!(b.state(), pb::BindingState::Active);
    }
    assert_acknowledged_live(&d, "k-axb", &acked).await;
    assert_eq!(d.sim.bindings("k-axb").await.len(), acked.len());
    assert_axb_rules(&d, "rides", "k-axb", AXB_CAP).await;
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    assert_counts_match(&d, "rides", "k-axb").await;
    assert_platform_never_refused(&d, "k-axb").await;

    // Unbind every other binding concurrently; then bind again into the freed room.
    let (gone, kept): (Vec<_>, Vec<_>) = acked.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    unbind_all(&d, gone.iter().map(|(_, b)| b.binding_id.clone()).collect()).await;
    let kept: Vec<pb::Binding> = kept.into_iter().map(|(_, b)| b.clone()).collect();
    assert_acknowledged_live(&d, "k-axb", &kept).await;
    assert_eq!(d.sim.bindings("k-axb").await.len(), kept.len());
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    assert_counts_match(&d, "rides", "k-axb").await;

    let reqs: Vec<pb::BindRequest> = (0..300)
        .map(|_| {
            let (a, b) = rng.pair(30);
            let mut r = bind("rides", &party(a), Some(&party(b)));
            r.any_area = true;
            r
        })
        .collect();
    let (again, errors) = bind_all(&d, reqs).await;
    assert!(
        errors.keys().all(|c| *c == Code::ResourceExhausted),
        "errors: {errors:?}"
    );
    assert!(!again.is_empty());
    let all: Vec<pb::Binding> = kept.into_iter().chain(again).collect();
    assert_acknowledged_live(&d, "k-axb", &all).await;
    assert_axb_rules(&d, "rides", "k-axb", AXB_CAP).await;
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    assert_counts_match(&d, "rides", "k-axb").await;
    // Unbinds answered "0" too: nothing was unbound twice upstream.
    assert_platform_never_refused(&d, "k-axb").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ax_concurrent_binds_keep_one_a_per_x_and_five_xs_per_a() {
    let d = Daemon::start_with(SIM, DAEMON).await;
    let mut rng = Rng(0x5eed_0002);
    // 4 As competing for 8 Xs: each A may hold at most 5.
    let reqs: Vec<pb::BindRequest> = (0..200)
        .map(|_| {
            let mut r = bind("drivers", &party(rng.below(4)), None);
            r.any_area = true;
            r
        })
        .collect();
    let (acked, errors) = bind_all(&d, reqs).await;
    assert!(
        errors
            .keys()
            .all(|c| matches!(c, Code::ResourceExhausted | Code::FailedPrecondition)),
        "errors: {errors:?}"
    );
    assert_eq!(acked.len(), 8, "every X is handed out once");
    assert_acknowledged_live(&d, "k-ax", &acked).await;
    assert_ax_rules(&d, "drivers", "k-ax").await;
    assert_local_equals_sim(&d, "drivers", "k-ax").await;
    assert_counts_match(&d, "drivers", "k-ax").await;
    assert_platform_never_refused(&d, "k-ax").await;

    let (gone, kept): (Vec<_>, Vec<_>) = acked.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    unbind_all(&d, gone.iter().map(|(_, b)| b.binding_id.clone()).collect()).await;
    let kept: Vec<pb::Binding> = kept.into_iter().map(|(_, b)| b.clone()).collect();
    assert_acknowledged_live(&d, "k-ax", &kept).await;
    assert_local_equals_sim(&d, "drivers", "k-ax").await;
    assert_counts_match(&d, "drivers", "k-ax").await;
    // The released Xs cool down: nothing is handed out now, then all four after 60 s.
    let reqs: Vec<pb::BindRequest> = (0..40)
        .map(|i| {
            let mut r = bind("drivers", &party(10 + i % 8), None);
            r.any_area = true;
            r
        })
        .collect();
    let (none, _) = bind_all(&d, reqs.clone()).await;
    assert!(none.is_empty(), "cooling Xs handed out: {none:?}");
    d.clock.advance(60_000);
    let (again, _) = bind_all(&d, reqs).await;
    assert_eq!(again.len(), 4);
    assert_ax_rules(&d, "drivers", "k-ax").await;
    assert_local_equals_sim(&d, "drivers", "k-ax").await;
    assert_counts_match(&d, "drivers", "k-ax").await;
    assert_platform_never_refused(&d, "k-ax").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_concurrent_binds_keep_extensions_and_parties_unique_per_x() {
    let d = Daemon::start_with(SIM, DAEMON).await;
    let mut rng = Rng(0x5eed_0003);
    let reqs: Vec<pb::BindRequest> = (0..200)
        .map(|_| {
            let mut r = bind("stores", &party(rng.below(12)), None);
            r.any_area = true;
            r
        })
        .collect();
    let (acked, errors) = bind_all(&d, reqs).await;
    assert!(
        errors.keys().all(|c| *c == Code::ResourceExhausted),
        "errors: {errors:?}"
    );
    assert!(acked.len() >= 20, "only {} bindings", acked.len());
    assert_acknowledged_live(&d, "k-axe", &acked).await;
    assert_axe_rules(&d, "stores", "k-axe").await;
    assert_local_equals_sim(&d, "stores", "k-axe").await;
    assert_counts_match(&d, "stores", "k-axe").await;
    assert_platform_never_refused(&d, "k-axe").await;

    let (gone, kept): (Vec<_>, Vec<_>) = acked.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    unbind_all(&d, gone.iter().map(|(_, b)| b.binding_id.clone()).collect()).await;
    let kept: Vec<pb::Binding> = kept.into_iter().map(|(_, b)| b.clone()).collect();
    assert_acknowledged_live(&d, "k-axe", &kept).await;
    d.clock.advance(60_000);
    let reqs: Vec<pb::BindRequest> = (0..100)
        .map(|_| {
            let mut r = bind("stores", &party(rng.below(12)), None);
            r.any_area = true;
            r
        })
        .collect();
    let (again, errors) = bind_all(&d, reqs).await;
    assert!(
        errors.keys().all(|c| *c == Code::ResourceExhausted),
        "errors: {errors:?}"
    );
    let all: Vec<pb::Binding> = kept.into_iter().chain(again).collect();
    assert_acknowledged_live(&d, "k-axe", &all).await;
    assert_axe_rules(&d, "stores", "k-axe").await;
    assert_local_equals_sim(&d, "stores", "k-axe").await;
    assert_counts_match(&d, "stores", "k-axe").await;
    assert_platform_never_refused(&d, "k-axe").await;
    d.stop().await;
}

/// Workers bind and at once unbind the same binding twice in parallel, while a sweeper
/// unbinds whatever it sees ACTIVE: no slot may be given back twice.
async fn bind_unbind_mix(d: &Daemon, app: &'static str, app_key: &str, two_parties: bool) {
    let conns = clients(d, 4).await;
    let mut workers = Vec::new();
    for w in 0..12u64 {
        let c = conns[w as usize % conns.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x5eed_1000 + w);
            let mut bound = 0;
            for _ in 0..25 {
                let (a, b) = rng.pair(16);
                let mut req = bind(app, &party(a), two_parties.then(|| party(b)).as_deref());
                req.any_area = true;
                let b = match c.clone().bind(req).await {
                    Ok(b) => b.into_inner(),
                    Err(s) => {
                        assert!(
                            matches!(s.code(), Code::ResourceExhausted | Code::FailedPrecondition),
                            "Bind: {s:?}"
                        );
                        continue;
                    }
                };
                bound += 1;
                if rng.below(3) == 0 {
                    continue; // left for the sweeper
                }
                let unbind = |mut c: BindingServiceClient<Channel>, id: String| async move {
                    c.unbind(pb::UnbindRequest {
                        binding_id: id,
                        ..Default::default()
                    })
                    .await
                };
                let (one, two) = tokio::join!(
                    unbind(c.clone(), b.binding_id.clone()),
                    unbind(c.clone(), b.binding_id.clone())
                );
                for r in [one, two] {
                    let r = r.unwrap_or_else(|s| panic!("Unbind: {s:?}")).into_inner();
                    assert_eq!(r.state(), pb::BindingState::Released);
                }
            }
            bound
        }));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeper = {
        let stop = stop.clone();
        let mut c = conns[0].clone();
        tokio::spawn(async move {
            let mut swept = 0;
            while !stop.is_cancelled() {
                let page = c
                    .list_bindings(pb::ListBindingsRequest {
                        app: app.into(),
                        state: pb::BindingState::Active.into(),
                        page_size: 1000,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut tasks = Vec::new();
                for b in page.bindings.into_iter().step_by(2) {
                    let mut c = c.clone();
                    tasks.push(tokio::spawn(async move {
                        c.unbind(pb::UnbindRequest {
                            binding_id: b.binding_id,
                            ..Default::default()
                        })
                        .await
                    }));
                }
                for t in tasks {
                    let r = t.await.unwrap().unwrap_or_else(|s| panic!("Unbind: {s:?}"));
                    assert_eq!(r.into_inner().state(), pb::BindingState::Released);
                    swept += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            swept
        })
    };
    let mut bound = 0;
    within("bind/unbind workers", async {
        for w in workers {
            bound += w.await.unwrap();
        }
    })
    .await;
    stop.cancel();
    let swept = within("sweeper", sweeper).await.unwrap();
    assert!(bound > 50, "only {bound} binds succeeded");
    assert!(swept > 0, "the sweeper never raced the workers");
    assert_local_equals_sim(d, app, app_key).await;
    assert_counts_match(d, app, app_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_binds_and_unbinds_never_free_a_slot_twice() {
    // No cool-down, so freed AX numbers go straight back into rotation.
    let daemon = DAEMON.replace("cool_down_seconds = 60", "cool_down_seconds = 0");
    let d = Daemon::start_with(SIM, &daemon).await;
    tokio::join!(
        bind_unbind_mix(&d, "drivers", "k-ax", false),
        bind_unbind_mix(&d, "rides", "k-axb", true),
    );
    assert_axb_rules(&d, "rides", "k-axb", AXB_CAP).await;
    assert_ax_rules(&d, "drivers", "k-ax").await;
    // Every AX number is either bound or free again: none leaked, none counted free twice.
    let stats = d
        .pool()
        .await
        .get_pool_stats(pb::GetPoolStatsRequest {
            app: "drivers".into(),
        })
        .await
        .unwrap()
        .into_inner();
    for a in &stats.areas {
        assert_eq!(a.bound + a.free, a.total, "{a:?}");
    }
    // The whole pool is usable again once everything is unbound.
    let ids: Vec<String> = d
        .list("drivers", pb::BindingState::Active)
        .await
        .into_iter()
        .chain(d.list("rides", pb::BindingState::Active).await)
        .map(|b| b.binding_id)
        .collect();
    unbind_all(&d, ids).await;
    assert!(d.sim.bindings("k-ax").await.is_empty());
    assert!(d.sim.bindings("k-axb").await.is_empty());
    assert_counts_match(&d, "drivers", "k-ax").await;
    assert_counts_match(&d, "rides", "k-axb").await;
    let reqs: Vec<pb::BindRequest> = (0..8)
        .map(|i| {
            let mut r = bind("drivers", &party(100 + i), None);
            r.any_area = true;
            r
        })
        .collect();
    let (all, errors) = bind_all(&d, reqs).await;
    assert_eq!(all.len(), 8, "errors: {errors:?}");
    assert_counts_match(&d, "drivers", "k-ax").await;
    d.stop().await;
}
