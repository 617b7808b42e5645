//! Crash recovery, after sled's `tests/test_crash_recovery.rs`: the daemon runs as a child process
//! (`xpool serve --config FILE`) over one store, is SIGKILLed mid-load again and again and started
//! again, and after every start-up the store, its allocation index and the platform must agree:
//!
//! 1. nothing is left PENDING (or RELEASING): start-up resolved it before serving;
//! 2. no acknowledged binding is lost: it is ACTIVE with the same slot, or RELEASED because the
//!    test unbound it; an acknowledged Unbind stays RELEASED;
//! 3. the local ACTIVE bindings are exactly the simulator's live bindings;
//! 4. the index agrees with the records: `ListNumbers` and `GetPoolStats` count what the ACTIVE
//!    bindings hold, no slot is held twice, and a fresh Bind never gets a held slot;
//! 5. request ids survive: a repeated Bind returns the binding its request_id made.
//!
//! At the end the daemon gets SIGTERM and must exit 0 (health NOT_SERVING, drain, flush), and a
//! start-up after that clean stop passes the same checks.
//!
//! The seed is printed; `XPOOL_CRASH_SEED=<n>` replays a run's choices (timing still varies).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;

use crate::support::{
    App, DaemonProcess as Child, LogDump, RPC_TIMEOUT, Setup, Sim, Slot, list_bindings,
    list_numbers, party, rpc, sim_slots, slot, slot_conflict,
};

/// Kill-and-restart rounds.
const ROUNDS: usize = 10;
/// Concurrent load tasks per round.
const WORKERS: usize = 6;
/// The whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
/// Added by the simulator to every platform call, so kills land inside upstream calls often.
const SIM_LATENCY_MS: u64 = 5;

/// Small pools, so conflicts, exhaustion and cool-downs happen under load. The simulator here
/// never stalls, so one "not there" from it is final (`pending_recheck_ms = 0`) and start-up
/// resolves every reservation before serving; a platform that may still carry out a bind it
/// held is `tests/daemon/hung.rs`.
fn setup() -> Setup {
    let final_at_once = |a: App| a.daemon("pending_recheck_ms", 0);
    Setup::standard()
        .only(&["rides", "drivers", "stores", "chat"])
        .app("rides", |a| {
            final_at_once(a)
                .both("max_bindings_per_x", AXB_MAX_PER_X as i64)
                .renumber(8617000000001, &["010", "010", "021"])
        })
        .app("drivers", |a| {
            final_at_once(a).daemon("cool_down_seconds", 1)
        })
        .app("stores", |a| {
            final_at_once(a)
                .both("extension_digits", 1)
                .daemon("cool_down_seconds", 1)
        })
        .app("chat", |a| {
            final_at_once(a).renumber(8617300000001, &["010", "010", "010", "021", "021", "021"])
        })
}

type Str = &'static str;
/// `(first, n)`: `party(first..first + n)`.
type Parties = (u32, u32);

/// How the load uses one app of [`setup`] (its platform key comes from the setup).
#[derive(Debug)]
struct AppSpec {
    name: Str,
    mode: pb::Mode,
    /// Party A (and B) are drawn from these.
    parties_a: Parties,
    parties_b: Option<Parties>,
    /// Areas a Bind asks for; "" for none.
    areas: &'static [Str],
}

impl AppSpec {
    const fn new(
        name: Str,
        mode: pb::Mode,
        a: Parties,
        b: Option<Parties>,
        areas: &'static [Str],
    ) -> Self {
        AppSpec {
            name,
            mode,
            parties_a: a,
            parties_b: b,
            areas,
        }
    }
}

#[rustfmt::skip]
const APPS: [AppSpec; 4] = [
    AppSpec::new("rides",   pb::Mode::Axb,  (100, 8), Some((100, 8)), &["010", "021", ""]),
    AppSpec::new("drivers", pb::Mode::Ax,   (200, 6), None,           &["010", "021", ""]),
    AppSpec::new("stores",  pb::Mode::Axe,  (300, 6), None,           &["010", ""]),
    AppSpec::new("chat",    pb::Mode::Axyb, (400, 6), Some((410, 6)), &["010", "021"]),
];

/// AXB: bindings per X (`max_bindings_per_x` above).
const AXB_MAX_PER_X: usize = 3;
/// AXE: extensions per X (`extension_digits = 1`: 1–9).
const AXE_EXTENSIONS: u32 = 9;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ------------------------------------------------------------------------------------------------
// What the test has seen.

/// A binding the daemon acknowledged (or that a check found ACTIVE and adopted).
#[derive(Debug, Clone)]
struct Tracked {
    app: usize,
    binding: pb::Binding,
    /// An Unbind was sent and not acknowledged: ACTIVE or RELEASED are both fine.
    unbind_sent: bool,
    /// An Unbind was acknowledged: RELEASED for good.
    released: bool,
}

impl Tracked {
    fn live(&self) -> bool {
        !self.unbind_sent && !self.released
    }
}

/// A Bind sent with a request_id.
#[derive(Debug, Clone)]
struct Request {
    party_a: String,
    party_b: String,
    area_code: String,
    /// The binding id of the acknowledged answer.
    acked: Option<String>,
}

#[derive(Debug, Default)]
struct History {
    bindings: BTreeMap<String, Tracked>,
    requests: BTreeMap<(usize, String), Request>,
    violations: Vec<String>,
    binds_acked: usize,
    binds_refused: usize,
    unbinds_acked: usize,
    interrupted: usize,
    adopted: usize,
    ops: usize,
}

impl History {
    /// Tracks `b` from now on.
    fn track(&mut self, app: usize, b: pb::Binding) {
        let t = Tracked {
            app,
            binding: b,
            unbind_sent: false,
            released: false,
        };
        self.bindings.insert(t.binding.binding_id.clone(), t);
    }

    /// A binding the daemon just made: its slot must be free, then it is tracked.
    fn acked(&mut self, app: usize, b: pb::Binding) {
        self.check_new_slot(app, &b);
        self.track(app, b);
    }

    /// A slot the daemon just handed out must not be held by a binding the test knows is live.
    fn check_new_slot(&mut self, app: usize, new: &pb::Binding) {
        let live: Vec<&pb::Binding> = self
            .bindings
            .values()
            .filter(|t| t.app == app && t.live() && t.binding.binding_id != new.binding_id)
            .map(|t| &t.binding)
            .collect();
        if let Some(problem) = slot_conflict(APPS[app].mode, AXB_MAX_PER_X, new, &live) {
            self.violations.push(format!(
                "{}: Bind returned a held slot: {problem}",
                APPS[app].name
            ));
        }
    }
}

fn random_parties(spec: &AppSpec, rng: &mut StdRng) -> (String, String) {
    crate::support::random_parties(spec.parties_a, spec.parties_b, rng)
}

// ------------------------------------------------------------------------------------------------
// Load.

/// Binds and Unbinds over every app until `stop`. Errors after `stop` are the kill's doing;
/// before it, only the daemon's ordinary refusals are expected.
async fn worker(
    round: usize,
    w: usize,
    seed: u64,
    channel: Channel,
    hist: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = BindingServiceClient::new(channel);
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let app = rng.random_range(0..APPS.len());
        let spec = &APPS[app];
        lock(&hist).ops += 1;
        // An Unbind of a live binding of this app, or else a Bind.
        let target = rng.random_bool(0.5).then(|| {
            let mut h = lock(&hist);
            let ids: Vec<String> = h
                .bindings
                .values()
                .filter(|t| t.app == app && t.live())
                .map(|t| t.binding.binding_id.clone())
                .collect();
            if ids.is_empty() {
                return None;
            }
            let id = ids[rng.random_range(0..ids.len())].clone();
            let t = h.bindings.get_mut(&id).unwrap();
            t.unbind_sent = true;
            Some(t.binding.clone())
        });
        if let Some(Some(b)) = target {
            let req = if !b.request_id.is_empty() && rng.random_bool(0.5) {
                pb::UnbindRequest::by_request(b.app.clone(), b.request_id.clone())
            } else {
                pb::UnbindRequest::by_id(b.binding_id.clone())
            };
            let result = tokio::time::timeout(RPC_TIMEOUT, client.unbind(req)).await;
            let killed = stop.load(Ordering::SeqCst);
            let mut h = lock(&hist);
            match result {
                Ok(Ok(resp)) => {
                    let got = resp.into_inner();
                    if got.state() != pb::BindingState::Released || got.binding_id != b.binding_id {
                        h.violations
                            .push(format!("Unbind of {b:?} answered {got:?}, not RELEASED"));
                    }
                    h.unbinds_acked += 1;
                    h.bindings.get_mut(&b.binding_id).unwrap().released = true;
                }
                Ok(Err(status)) if killed => {
                    h.interrupted += 1;
                    let _ = status;
                    break;
                }
                Ok(Err(status)) => {
                    if !matches!(status.code(), Code::Unavailable | Code::FailedPrecondition) {
                        h.violations
                            .push(format!("Unbind of {} failed: {status:?}", b.binding_id));
                    }
                }
                Err(_) => {
                    if !killed {
                        h.violations.push(format!(
                            "Unbind of {} hung for {RPC_TIMEOUT:?}",
                            b.binding_id
                        ));
                    }
                    break;
                }
            }
            continue;
        }

        let (party_a, party_b) = random_parties(spec, &mut rng);
        let area_code = spec.areas[rng.random_range(0..spec.areas.len())].to_owned();
        let request_id = if rng.random_bool(0.4) {
            format!("crash-r{round}-w{w}-{i}")
        } else {
            String::new()
        };
        if !request_id.is_empty() {
            lock(&hist).requests.insert(
                (app, request_id.clone()),
                Request {
                    party_a: party_a.clone(),
                    party_b: party_b.clone(),
                    area_code: area_code.clone(),
                    acked: None,
                },
            );
        }
        let req = pb::BindRequest {
            app: spec.name.into(),
            party_a,
            party_b,
            any_area: rng.random_bool(0.3),
            area_code,
            request_id: request_id.clone(),
            ..Default::default()
        };
        let result = tokio::time::timeout(RPC_TIMEOUT, client.bind(req.clone())).await;
        let killed = stop.load(Ordering::SeqCst);
        let mut h = lock(&hist);
        match result {
            Ok(Ok(resp)) => {
                let b = resp.into_inner();
                if b.state() != pb::BindingState::Active {
                    h.violations
                        .push(format!("Bind {req:?} answered {b:?}, not ACTIVE"));
                }
                if let Some(r) = h.requests.get_mut(&(app, request_id)) {
                    r.acked = Some(b.binding_id.clone());
                }
                h.binds_acked += 1;
                h.acked(app, b);
            }
            Ok(Err(_)) if killed => {
                h.interrupted += 1;
                break;
            }
            Ok(Err(status)) => {
                h.binds_refused += 1;
                if !matches!(
                    status.code(),
                    Code::ResourceExhausted | Code::FailedPrecondition | Code::Unavailable
                ) {
                    h.violations
                        .push(format!("Bind {req:?} failed: {status:?}"));
                }
            }
            Err(_) => {
                if !killed {
                    h.violations
                        .push(format!("Bind {req:?} hung for {RPC_TIMEOUT:?}"));
                }
                break;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The checks after a start-up.

/// Every invariant of a freshly started daemon; `label` names the start-up in messages.
async fn check(
    child: &Child,
    sim: &Sim,
    setup: &Setup,
    hist: &Mutex<History>,
    label: &str,
    probe: &mut u32,
) {
    let channel = child.channel().await;
    let mut bindings = BindingServiceClient::new(channel.clone());
    let mut pool = PoolServiceClient::new(channel);
    for (app, spec) in APPS.iter().enumerate() {
        let name = spec.name;
        let all = list_bindings(&mut bindings, name, pb::BindingState::Unspecified).await;

        // (1) Start-up resolved everything open.
        let pending = list_bindings(&mut bindings, name, pb::BindingState::Pending).await;
        assert!(
            pending.is_empty(),
            "{label}: {name}: PENDING bindings survived start-up: {pending:#?}"
        );
        let open: Vec<&pb::Binding> = all
            .iter()
            .filter(|b| {
                matches!(
                    b.state(),
                    pb::BindingState::Pending | pb::BindingState::Releasing
                )
            })
            .collect();
        assert!(
            open.is_empty(),
            "{label}: {name}: bindings left open after start-up: {open:#?}"
        );
        let by_id: HashMap<&str, &pb::Binding> =
            all.iter().map(|b| (b.binding_id.as_str(), b)).collect();
        let active: Vec<&pb::Binding> = all
            .iter()
            .filter(|b| b.state() == pb::BindingState::Active)
            .collect();

        // (2) Nothing acknowledged is lost, nothing released comes back.
        {
            let mut h = lock(hist);
            let mut adopted = 0;
            for t in h.bindings.values_mut().filter(|t| t.app == app) {
                let id = &t.binding.binding_id;
                let Some(now) = by_id.get(id.as_str()) else {
                    panic!(
                        "{label}: {name}: acknowledged binding {id} is gone: {:#?}",
                        t.binding
                    );
                };
                let state = now.state();
                if t.released {
                    assert_eq!(
                        state,
                        pb::BindingState::Released,
                        "{label}: {name}: binding {id} was unbound (acknowledged) but is {now:#?}"
                    );
                } else if t.unbind_sent {
                    match state {
                        pb::BindingState::Active => t.unbind_sent = false,
                        pb::BindingState::Released => t.released = true,
                        _ => panic!("{label}: {name}: binding {id} mid-unbind is {now:#?}"),
                    }
                } else {
                    assert_eq!(
                        state,
                        pb::BindingState::Active,
                        "{label}: {name}: acknowledged binding {id} (never unbound) is {now:#?}"
                    );
                }
                if state == pb::BindingState::Active {
                    assert_eq!(
                        slot(now),
                        slot(&t.binding),
                        "{label}: {name}: binding {id} changed slot across a restart"
                    );
                }
            }
            // Binds whose answer the kill swallowed but start-up resolved as made: the test
            // tracks (and may unbind) them from now on.
            for b in &active {
                if !h.bindings.contains_key(&b.binding_id) {
                    adopted += 1;
                    h.track(app, (*b).clone());
                }
            }
            h.adopted += adopted;
        }

        // (3) Local ACTIVE equals the platform's live bindings.
        let local: BTreeSet<Slot> = active.iter().map(|b| slot(b)).collect();
        let key = setup.get(name).key.as_deref().expect("a platform app");
        let remote = sim_slots(sim, key).await;
        assert_eq!(
            local,
            remote,
            "{label}: {name}: local ACTIVE bindings differ from the platform's\n\
             only local: {:#?}\nonly on the platform: {:#?}",
            local.difference(&remote).collect::<Vec<_>>(),
            remote.difference(&local).collect::<Vec<_>>(),
        );

        // (4a) No slot is held twice among the ACTIVE records.
        for (i, b) in active.iter().enumerate() {
            let before: Vec<&pb::Binding> = active[..i].to_vec();
            if let Some(problem) = slot_conflict(spec.mode, AXB_MAX_PER_X, b, &before) {
                panic!("{label}: {name}: two live bindings share a slot: {problem}");
            }
        }

        // (4b) The index counts what the records hold.
        let mut per_x: BTreeMap<&str, i32> = BTreeMap::new();
        for b in &active {
            *per_x.entry(b.x_number.as_str()).or_default() += 1;
        }
        let numbers = list_numbers(&mut pool, name).await;
        let listed: BTreeSet<&str> = numbers.iter().map(|n| n.number.as_str()).collect();
        let owned = setup.get(name).owned();
        let configured: BTreeSet<&str> = owned.iter().map(|(n, _)| *n).collect();
        assert_eq!(listed, configured, "{label}: {name}: ListNumbers");
        for n in &numbers {
            let held = per_x.get(n.number.as_str()).copied().unwrap_or(0);
            assert_eq!(
                n.binding_count, held,
                "{label}: {name}: ListNumbers says {} holds {} bindings, the records say {held}: {n:?}",
                n.number, n.binding_count
            );
            if spec.mode == pb::Mode::Axe {
                assert_eq!(
                    i64::from(n.binding_count) + n.free_extension_count + n.cooling_count,
                    i64::from(AXE_EXTENSIONS),
                    "{label}: {name}: extensions of {} do not add up: {n:?}",
                    n.number
                );
            }
        }
        let stats = rpc(
            "GetPoolStats",
            pool.get_pool_stats(pb::GetPoolStatsRequest { app: name.into() }),
        )
        .await
        .unwrap();
        let area_of: HashMap<&str, &str> = owned.iter().copied().collect();
        let mut expected: BTreeMap<&str, (i32, i32)> = BTreeMap::new();
        for (n, area) in &owned {
            let e = expected.entry(area).or_default();
            e.0 += 1;
            e.1 += i32::from(per_x.contains_key(n));
        }
        let got: BTreeMap<&str, (i32, i32)> = stats
            .areas
            .iter()
            .map(|a| (a.area_code.as_str(), (a.total, a.bound)))
            .collect();
        assert_eq!(
            got, expected,
            "{label}: {name}: GetPoolStats (total, bound) per area vs the ACTIVE records {per_x:?}; {stats:?}"
        );
        for b in &active {
            if spec.mode != pb::Mode::Axyb {
                assert_eq!(
                    area_of.get(b.x_number.as_str()).copied(),
                    Some(b.area_code.as_str()),
                    "{label}: {name}: {b:?} is not in its X's area"
                );
            }
        }

        // (5) Request ids survive: a repeated Bind returns what its request_id made. Binds the
        // kill interrupted are retried, as a client would.
        let requests: Vec<(String, Request)> = lock(hist)
            .requests
            .iter()
            .filter(|((a, _), _)| *a == app)
            .map(|((_, rid), r)| (rid.clone(), r.clone()))
            .collect();
        for (rid, r) in requests {
            let found = rpc(
                "GetBinding",
                bindings.get_binding(pb::GetBindingRequest::by_request(name, rid.clone())),
            )
            .await;
            let found = match found {
                Ok(b) => {
                    assert_ne!(
                        b.state(),
                        pb::BindingState::Pending,
                        "{label}: {name}: request {rid} is still PENDING: {b:?}"
                    );
                    Some(b)
                }
                Err(s) if s.code() == Code::NotFound => None,
                Err(s) => panic!("{label}: {name}: GetBinding of request {rid}: {s:?}"),
            };
            if let Some(acked) = &r.acked {
                let b = found.as_ref().unwrap_or_else(|| {
                    panic!("{label}: {name}: request {rid} (acknowledged as {acked}) is gone")
                });
                assert_eq!(&b.binding_id, acked, "{label}: {name}: request {rid}");
                continue;
            }
            // Unacknowledged: retry it once.
            let retry = rpc(
                "Bind (retry)",
                bindings.bind(pb::BindRequest {
                    app: name.into(),
                    party_a: r.party_a.clone(),
                    party_b: r.party_b.clone(),
                    area_code: r.area_code.clone(),
                    request_id: rid.clone(),
                    ..Default::default()
                }),
            )
            .await;
            let mut h = lock(hist);
            match retry {
                Ok(b) => {
                    if let Some(f) = &found {
                        assert_eq!(
                            b.binding_id, f.binding_id,
                            "{label}: {name}: retried request {rid} made a second binding"
                        );
                    } else {
                        assert_eq!(
                            b.state(),
                            pb::BindingState::Active,
                            "{label}: {name}: {b:?}"
                        );
                        h.acked(app, b.clone());
                    }
                    h.requests.get_mut(&(app, rid)).unwrap().acked = Some(b.binding_id);
                }
                Err(s) => {
                    assert!(
                        found.is_none()
                            && matches!(
                                s.code(),
                                Code::ResourceExhausted | Code::FailedPrecondition
                            ),
                        "{label}: {name}: retry of request {rid} (found {found:?}): {s:?}"
                    );
                    // Refused outright: nothing to remember.
                    h.requests.remove(&(app, rid));
                }
            }
        }

        // (4c) A fresh Bind (parties never used) never gets a held slot.
        *probe += 1;
        let fresh_b = (spec.parties_b.is_some()).then(|| party(900_000 + *probe));
        *probe += 1;
        let req = pb::BindRequest {
            app: name.into(),
            party_a: party(900_000 + *probe),
            party_b: fresh_b.unwrap_or_default(),
            area_code: spec.areas[0].into(),
            any_area: true,
            ..Default::default()
        };
        match rpc("Bind (probe)", bindings.bind(req.clone())).await {
            Ok(b) => {
                assert_eq!(
                    b.state(),
                    pb::BindingState::Active,
                    "{label}: {name}: {b:?}"
                );
                if let Some(problem) = slot_conflict(spec.mode, AXB_MAX_PER_X, &b, &active) {
                    panic!("{label}: {name}: a fresh Bind got a held slot: {problem}");
                }
                let mut h = lock(hist);
                h.acked(app, b);
            }
            Err(s) if s.code() == Code::ResourceExhausted => {}
            Err(s) => panic!("{label}: {name}: fresh Bind {req:?}: {s:?}"),
        }
    }
    let violations = std::mem::take(&mut lock(hist).violations);
    assert!(
        violations.is_empty(),
        "{label}: violations under load:\n{}",
        violations.join("\n")
    );
}

// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_then_restart_keeps_store_index_and_platform_in_step() {
    tokio::time::timeout(TEST_TIMEOUT, crash_rounds())
        .await
        .expect("the crash test finishes in time");
}

async fn crash_rounds() {
    let started = Instant::now();
    let seed = std::env::var("XPOOL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed: XPOOL_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let setup = setup();
    let sim = Sim::start_with(&setup).await;
    for spec in &APPS {
        let key = setup.get(spec.name).key.as_deref();
        sim.faults(json!({ "app_key": key, "latency_ms": SIM_LATENCY_MS }))
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let _dump = LogDump(dir.path().to_owned());
    let hist = Arc::new(Mutex::new(History::default()));
    let mut probe = 0u32;

    let mut child = Child::spawn(dir.path(), &setup, &sim.base_url, 0, &[]).await;
    check(&child, &sim, &setup, &hist, "first start", &mut probe).await;
    for round in 1..=ROUNDS {
        let channel = child.channel().await;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                tokio::spawn(worker(
                    round,
                    w,
                    rng.random(),
                    channel.clone(),
                    Arc::clone(&hist),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..250))).await;
        stop.store(true, Ordering::SeqCst);
        child.sigkill().await;
        for w in workers {
            tokio::time::timeout(RPC_TIMEOUT + Duration::from_secs(5), w)
                .await
                .expect("load tasks end once the daemon is dead")
                .unwrap();
        }
        // Let the platform finish what the dead daemon had already sent: a request that lands
        // after start-up looked for it would be a platform-side race, not a daemon fault.
        tokio::time::sleep(Duration::from_millis(SIM_LATENCY_MS * 10 + 50)).await;
        child = Child::spawn(dir.path(), &setup, &sim.base_url, round, &[]).await;
        check(
            &child,
            &sim,
            &setup,
            &hist,
            &format!("restart after kill #{round}"),
            &mut probe,
        )
        .await;
    }

    // A clean stop: SIGTERM, exit 0 within the grace period, and the next start-up is clean too.
    let status = child.sigterm().await;
    assert!(status.success(), "SIGTERM: the daemon exited with {status}");
    child = Child::spawn(dir.path(), &setup, &sim.base_url, ROUNDS + 1, &[]).await;
    check(
        &child,
        &sim,
        &setup,
        &hist,
        "start after SIGTERM",
        &mut probe,
    )
    .await;
    let log = child.log.clone();
    let status = child.sigterm().await;
    assert!(status.success(), "SIGTERM: the daemon exited with {status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("shutdown signal received") && text.contains("stopped"),
        "no clean shutdown in the log:\n{text}"
    );

    let h = lock(&hist);
    let resolved = (1..=ROUNDS)
        .map(|r| {
            std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy() == format!("daemon-{r:02}.log"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .matches("resolved an open binding")
                        .count()
                })
                .sum::<usize>()
        })
        .sum::<usize>();
    println!(
        "crash test: {ROUNDS} kills in {:.1?}; {} ops, {} binds acked, {} refused, {} unbinds acked, \
         {} interrupted by kills, {} open bindings resolved at start-up, {} adopted, {} tracked",
        started.elapsed(),
        h.ops,
        h.binds_acked,
        h.binds_refused,
        h.unbinds_acked,
        h.interrupted,
        resolved,
        h.adopted,
        h.bindings.len()
    );
    drop(h);
    drop(sim);
}
