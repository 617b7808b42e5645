//! Chaos, repeatable from a seed (issue 10 §5): rounds of Binds, Unbinds and expiries while
//! faults strike in random order — SIGKILL, store I/O errors, a full disk, platform hangs and
//! lost answers — and after every round the promises are checked (see `check`): every
//! acknowledged binding is there, no party twice on one X, no slot handed out twice, local state
//! equals the platform's after a reconcile, and no request id has two live bindings.
//!
//! One daemon, a child process (`xpool serve`), over one store for the whole test, so that every
//! fault can meet every other: a SIGKILL can land while the disk is full or the platform hangs,
//! and the next start-up recovers whatever that left. (Alternating an in-process daemon, which
//! `faults::set` reaches, with a child for the kills would never kill a daemon whose disk is
//! failing.) The store's faults reach the child through its faults file
//! (`xpool::store::faults::FAULTS_FILE_ENV`), the platform's through the simulator's
//! `/sim/faults`. A child's clock cannot be moved, so expiry runs on real time: lifetimes of
//! 1–3 s (AX, AXB), a 1 s skew grace and a 1 s cool-down.
//!
//! `plan` draws the rounds from the seed, `inject` applies their faults, `load` runs the Binds
//! and Unbinds into the `history`, `check` looks after each round by the `rules`; `found` pins
//! what the test found as small tests.
//!
//! A start-up the store refuses fails the test with the daemon's message: none of these faults
//! may cost an acknowledged binding.
//!
//! `XPOOL_CHAOS_SEED=<n>` replays a run's plan (the faults, their order and offsets, and the
//! load's choices; the daemon's timing still varies), `XPOOL_CHAOS_ROUNDS=<n>` runs longer. On
//! failure the seed and every round's plan so far are printed.

mod check;
mod found;
mod history;
mod inject;
mod load;
mod plan;
mod proxy;
mod rules;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;
use xpool::grpc::pb;
use xpool::store::faults::FAULTS_FILE_ENV;

use self::history::{History, lock};
use self::inject::Injector;
use self::load::Load;
use self::plan::RoundPlan;
use self::proxy::HangProxy;
use crate::support::{DaemonProcess, LogDump, Setup, Sim, health, list_bindings};

/// Rounds unless `XPOOL_CHAOS_ROUNDS` says otherwise.
const ROUNDS: usize = 50;
/// The seed unless `XPOOL_CHAOS_SEED` says otherwise.
const SEED: u64 = 0x5eed_0010_0005;
/// The whole test, for the default rounds.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
/// The daemon's `expiry.skew_grace_seconds`, in ms.
const SKEW_GRACE_MS: i64 = 1_000;
/// AXB: bindings per X.
const AXB_CAP: usize = 3;
/// The daemon's limit on each platform call.
const UPSTREAM_TIMEOUT_MS: u64 = 400;

type Str = &'static str;
/// `(first, n)`: `party(first..first + n)`.
type Parties = (u32, u32);

/// How the load uses one app of [`setup`].
#[derive(Debug)]
pub struct AppSpec {
    name: Str,
    mode: pb::Mode,
    /// Party A (and B) of Binds without a request id are drawn from these.
    parties_a: Parties,
    parties_b: Option<Parties>,
    /// Areas a Bind asks for; "" for none.
    areas: &'static [Str],
    /// Lifetimes a Bind asks for (AXE and AXYB take whole minutes, at least one).
    ttls: &'static [u64],
    /// About how many bindings the pool holds at most: the fuller, the more Unbinds.
    capacity: usize,
}

#[rustfmt::skip]
const APPS: [AppSpec; 4] = [
    AppSpec { name: "rides", mode: pb::Mode::Axb, parties_a: (100, 8), parties_b: Some((100, 8)),
              areas: &["010", "021", ""], ttls: &[0, 1, 2, 3], capacity: 9 },
    AppSpec { name: "drivers", mode: pb::Mode::Ax, parties_a: (200, 6), parties_b: None,
              areas: &["010", "021", ""], ttls: &[0, 1, 2], capacity: 3 },
    AppSpec { name: "stores", mode: pb::Mode::Axe, parties_a: (300, 6), parties_b: None,
              areas: &["010", ""], ttls: &[0, 0, 60], capacity: 18 },
    AppSpec { name: "chat", mode: pb::Mode::Axyb, parties_a: (400, 6), parties_b: Some((410, 6)),
              areas: &["010", "021"], ttls: &[0, 60], capacity: 3 },
];

/// Small pools, so conflicts, exhaustion and cool-downs happen; short upstream timeouts, so a
/// hang costs a Bind its answer; no reconcile grace shorter than the test, so a reconcile never
/// frees a binding on its own and a ghost stays visible to the checks.
fn setup() -> Setup {
    let limits = |a: crate::support::App| {
        a.daemon("timeout_ms", UPSTREAM_TIMEOUT_MS as i64)
            .daemon("max_request_wait_ms", 500)
            .daemon("flow_control_backoff_ms", 100)
    };
    Setup::standard()
        .only(&["rides", "drivers", "stores", "chat"])
        .server("max_request_wait_ms", 500)
        .app("rides", |a| {
            limits(a)
                .both("max_bindings_per_x", AXB_CAP as i64)
                .renumber(8617000000001, &["010", "010", "021"])
        })
        .app("drivers", |a| limits(a).daemon("cool_down_seconds", 1))
        .app("stores", |a| {
            limits(a)
                .both("extension_digits", 1)
                .daemon("cool_down_seconds", 1)
        })
        .app("chat", |a| {
            limits(a).renumber(8617300000001, &["010", "010", "010", "021", "021", "021"])
        })
        .daemon_section(&format!(
            "[expiry]\nskew_grace_seconds = {}\n\n[reconcile]\ngrace_seconds = 3600\n",
            SKEW_GRACE_MS / 1000
        ))
}

/// Wall-clock ms, the daemon's clock.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_millis() as i64
}

fn env_number<T: std::str::FromStr>(key: &str) -> Option<T> {
    let value = std::env::var(key).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{key}={value} is not a number")),
    )
}

/// Prints the seed and the plan of every round so far when the test fails.
struct PlanDump {
    seed: u64,
    rounds: Vec<String>,
}

impl Drop for PlanDump {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos test failed: replay with XPOOL_CHAOS_SEED={}; the plan so far:\n{}",
                self.seed,
                self.rounds.join("\n")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_rounds_keep_every_promise() {
    let seed = env_number("XPOOL_CHAOS_SEED").unwrap_or(SEED);
    let rounds = env_number("XPOOL_CHAOS_ROUNDS").unwrap_or(ROUNDS);
    println!("chaos test: XPOOL_CHAOS_SEED={seed} XPOOL_CHAOS_ROUNDS={rounds}");
    let limit = TEST_TIMEOUT * (rounds.max(ROUNDS) / ROUNDS) as u32;
    tokio::time::timeout(limit, Box::pin(chaos(seed, rounds)))
        .await
        .unwrap_or_else(|_| panic!("the chaos test (seed {seed}) did not finish in {limit:?}"));
}

/// The test's fixed parts: the simulator, the store's directory, the faults, the history.
struct World {
    setup: Setup,
    sim: Sim,
    /// Between the daemon and the simulator, for platform hangs.
    proxy: HangProxy,
    keys: Vec<String>,
    /// The store's parent: config, logs, faults file.
    dir: PathBuf,
    injector: Injector,
    hist: Arc<Mutex<History>>,
    incarnation: usize,
}

impl World {
    async fn spawn(&mut self) -> DaemonProcess {
        self.incarnation += 1;
        let env = [(FAULTS_FILE_ENV, self.injector.file().as_os_str())];
        DaemonProcess::spawn(
            &self.dir,
            &self.setup,
            &self.proxy.url,
            self.incarnation,
            &env,
        )
        .await
    }

    /// How many lines of the daemons' logs say `what`.
    fn logged(&self, what: &str) -> usize {
        (1..=self.incarnation)
            .map(|i| {
                let log = self.dir.join(format!("daemon-{i:02}.log"));
                let text = std::fs::read_to_string(log).unwrap_or_default();
                text.matches(what).count()
            })
            .sum()
    }

    /// The checks of `check::round` after `plan` (none: a start-up), for the daemon `child`;
    /// `settle` waits out expiries.
    async fn check(
        &self,
        child: &DaemonProcess,
        label: String,
        plan: Option<&RoundPlan>,
        settle: bool,
    ) -> check::Reconciled {
        let ctx = check::Ctx {
            channel: child.channel().await,
            sim: &self.sim,
            keys: &self.keys,
            hist: &self.hist,
            label,
            late_commits: plan.is_some_and(RoundPlan::late_commits),
        };
        check::round(&ctx, settle).await
    }
}

async fn chaos(seed: u64, rounds: usize) {
    let started = Instant::now();
    let plans = plan::plan(seed, rounds);
    let mut dump = PlanDump {
        seed,
        rounds: Vec::new(),
    };
    let setup = setup();
    let sim = Sim::start_with(&setup).await;
    let keys: Vec<String> = APPS
        .iter()
        .map(|s| setup.get(s.name).key.clone().expect("a platform app"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogDump(dir.path().to_owned());
    let injector = Injector::new(dir.path(), keys.clone());
    let proxy = HangProxy::start(&sim.base_url).await;
    let mut world = World {
        setup,
        sim,
        proxy,
        keys,
        dir: dir.path().to_owned(),
        injector,
        hist: Arc::default(),
        incarnation: 0,
    };
    let mut child = world.spawn().await;
    world.check(&child, "first start".into(), None, false).await;
    let mut reconciled = check::Reconciled::default();
    for plan in &plans {
        dump.rounds.push(plan.to_string());
        child = round(&mut world, child, plan).await;
        let label = format!("seed {seed}, {plan}");
        let r = world.check(&child, label, Some(plan), false).await;
        if let Some(status) = child.exited() {
            panic!("seed {seed}, {plan}: the daemon exited on its own ({status})");
        }
        reconciled.orphans_adopted += r.orphans_adopted;
        reconciled.pending_resolved += r.pending_resolved;
        reconciled.fields_corrected += r.fields_corrected;
    }
    finish(&mut world, child, seed).await;
    let store_failures = world.logged("the store failed a write");
    let disk_rounds = plans.iter().filter(|p| p.fails_disk()).count();
    assert!(
        disk_rounds == 0 || store_failures > 0,
        "seed {seed}: {disk_rounds} rounds failed the disk, and no daemon noticed: is the \
         faults file read?"
    );
    let h = lock(&world.hist);
    println!(
        "chaos test: {rounds} rounds in {:.1?} ({}), {} daemon starts, {store_failures} store \
         failures and recoveries; {:?}; reconciles: {reconciled:?}; {} bindings tracked",
        started.elapsed(),
        plan::census(&plans),
        world.incarnation,
        h.counts,
        h.bindings.len(),
    );
}

/// One round: load with the plan's faults, SIGKILL and start again if it says so, then wait
/// until the daemon serves again.
async fn round(world: &mut World, child: DaemonProcess, plan: &RoundPlan) -> DaemonProcess {
    let load = Load {
        channel: child.channel().await,
        hist: Arc::clone(&world.hist),
        stop: Arc::default(),
        killed: Arc::default(),
    };
    let start = Instant::now();
    let workers = {
        let load = load.clone();
        let (round, seed) = (plan.round, plan.load_seed);
        tokio::spawn(async move { load::run(round, seed, &load).await })
    };
    // With a kill, the faults are lifted just after it, so that it strikes while they hold.
    let faults_end = plan.load_ms + if plan.kill { 20 } else { 0 };
    let injecting = world
        .injector
        .run(&world.sim, &world.proxy, &plan.events, start, faults_end);
    let stopping = async {
        tokio::time::sleep_until((start + Duration::from_millis(plan.load_ms)).into()).await;
        if plan.kill {
            load.killed.store(true, Ordering::SeqCst);
        }
        load.stop.store(true, Ordering::SeqCst);
        if plan.kill {
            child.sigkill().await;
            None
        } else {
            Some(child)
        }
    };
    let ((), alive) = tokio::join!(injecting, stopping);
    workers.await.unwrap();
    match alive {
        Some(mut child) => {
            wait_serving(&mut child, plan).await;
            child
        }
        None => world.spawn().await,
    }
}

/// Health says SERVING again (a failed store recovers on its own, on a back-off).
async fn wait_serving(child: &mut DaemonProcess, plan: &RoundPlan) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while health(&child.addr).await != Some(ServingStatus::Serving) {
        if let Some(status) = child.exited() {
            panic!("{plan}: the daemon exited on its own ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "{plan}: the daemon did not serve again within 20 s of the faults' end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the last round: everything open is resolved in the background, the checks pass once
/// more, a SIGTERM stops the daemon cleanly, and a start after it passes them too.
async fn finish(world: &mut World, child: DaemonProcess, seed: u64) {
    let mut bindings =
        xpool::grpc::pb::binding_service_client::BindingServiceClient::new(child.channel().await);
    let deadline = Instant::now() + Duration::from_secs(20);
    for spec in &APPS {
        for state in [pb::BindingState::Pending, pb::BindingState::Releasing] {
            loop {
                let open = list_bindings(&mut bindings, spec.name, state).await;
                if open.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "seed {seed}: {} left {state:?} 20 s after the last round: {open:?}",
                    spec.name
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    world
        .check(
            &child,
            format!("seed {seed}: settled after the last round"),
            None,
            true,
        )
        .await;
    let status = child.sigterm().await;
    assert!(status.success(), "SIGTERM: the daemon exited with {status}");
    let child = world.spawn().await;
    world
        .check(
            &child,
            format!("seed {seed}: start after SIGTERM"),
            None,
            true,
        )
        .await;
    let status = child.sigterm().await;
    assert!(status.success(), "SIGTERM: the daemon exited with {status}");
}
