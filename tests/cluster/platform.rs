//! `xpool serve` with `[cluster]` in AXB mode: three replica processes on one 3-member etcd
//! cluster, and one platform simulator that every replica calls as the app's upstream. Clients
//! bind and unbind through every replica; the leader is SIGKILLed under load (with platform
//! calls in flight, so it leaves reservations and releases in doubt); the replica that takes
//! over resolves them, and after a reconcile its bindings are exactly the platform's.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;
use xpool_etcd::Client;

use crate::common::{EtcdCluster, Replica, bounded, cluster_section, leader_id, new_leader};
use crate::support::process::logged_addr;
use crate::support::{
    App, LogDump, Setup, Sim, Slot, bind, list_bindings, list_numbers, party, sim_slots, slot,
    text, watch_run,
};

const APP: &str = "rides";
/// The platform app the replicas call (secret `s-axb`).
const KEY: &str = "k-axb";
/// The replicas' lease TTL (the smallest `[cluster]` takes).
const TTL_SECONDS: u64 = 2;
/// How long a client keeps retrying one call (through elections) before the test fails.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// AXB: bindings per X, on both sides.
const CAP: usize = 20;
/// The clients, each binding and unbinding through every replica in turn.
const CLIENTS: usize = 4;
/// Binds per client.
const BINDS: usize = 36;
/// Live bindings a client keeps: after each Bind beyond these it unbinds its oldest.
const KEEP: usize = 3;
/// Parties A per client, reused while earlier bindings of theirs are live, so each Bind must
/// find an X the party is not on yet.
const PARTIES_A: usize = 3;
/// Added by the simulator to every call, so the leader dies with platform calls in flight.
const LATENCY_MS: u64 = 60;

/// One AXB app over four Xs of one area, the same on the platform and in every replica.
fn setup() -> Setup {
    Setup::new(vec![
        App::new(APP, KEY, "AXB")
            .both("max_bindings_per_x", CAP as i64)
            .numbers(8617000000001, &["010", "010", "010", "010"]),
    ])
}

/// Replica `id` over `dir/<id>`, calling the simulator at `sim_url`, with its metrics on
/// 127.0.0.1:`admin`, serving.
async fn spawn_replica(
    dir: &Path,
    cluster: &EtcdCluster,
    sim_url: &str,
    id: &str,
) -> (Replica, u16) {
    let store = dir.join(id).join("data");
    let text = setup()
        .daemon_section("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .daemon_toml("127.0.0.1:0", sim_url, &store)
        + &cluster_section(cluster, id, TTL_SECONDS);
    let replica = Replica::spawn(dir, id, &text, &[]).await;
    let admin = logged_addr(&dir.join(format!("{id}.log")), "admin listener").await;
    (replica, admin.port())
}

/// The platform calls a replica has made, by its metrics on 127.0.0.1:`admin`.
async fn platform_calls(admin: u16) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("xpool_upstream_calls_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the clients were told.
#[derive(Debug, Default)]
struct Told {
    /// Request id → the binding its Bind was answered with.
    bound: BTreeMap<String, pb::Binding>,
    /// Request ids whose Unbind was answered (RELEASED).
    unbound: BTreeSet<String>,
}

type Shared = Arc<Mutex<Told>>;

/// `call` on the replicas of `addrs` in turn from `first`, each attempt with a 3 s deadline,
/// retried (the same request) while the answer is [`retried`] or missing; any other refusal
/// fails the test. The answer.
async fn through<T, F, Fut>(addrs: &[String], first: usize, what: &str, mut call: F) -> T
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = Instant::now();
    let mut last = String::new();
    for attempt in first.. {
        assert!(
            started.elapsed() < RETRY_FOR,
            "{what}: no answer within {RETRY_FOR:?}; last: {last}"
        );
        let addr = &addrs[attempt % addrs.len()];
        let once = async {
            let channel = Channel::from_shared(addr.clone()).unwrap().connect().await;
            let channel = channel.map_err(|e| format!("connecting: {e}"))?;
            match call(channel).await {
                Ok(reply) => Ok(reply.into_inner()),
                Err(s) if retried(&s) => Err(format!("{:?}: {}", s.code(), s.message())),
                Err(s) => panic!("{what} on {addr}: {s:?}"),
            }
        };
        match tokio::time::timeout(Duration::from_secs(4), once).await {
            Ok(Ok(reply)) => return reply,
            Ok(Err(why)) => last = why,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// Whether a call's outcome is unknown or it was refused for now: UNAVAILABLE, past its
/// deadline, or its connection or stream lost (the replica killed under it).
fn retried(status: &tonic::Status) -> bool {
    use tonic::Code::*;
    let message = status.message();
    let lost = matches!(status.code(), Unknown | Internal)
        && (message.starts_with("transport error") || message.starts_with("h2 protocol error"));
    lost || matches!(status.code(), Unavailable | DeadlineExceeded | Cancelled)
}

/// A request with a 3 s deadline.
fn deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(3));
    request
}

/// Client `t`: [`BINDS`] Binds of its own parties through every replica, unbinding its oldest
/// live binding whenever it holds more than [`KEEP`]; every answer noted in `told`.
async fn client(t: usize, addrs: Vec<String>, told: Shared) {
    let mut live = VecDeque::new();
    for i in 0..BINDS {
        let request_id = format!("c{t}-{i}");
        let base = 1_000 * u32::try_from(t + 1).unwrap();
        let a = party(base + u32::try_from(i % PARTIES_A).unwrap());
        let b = party(base + 100 + u32::try_from(i).unwrap());
        let req = pb::BindRequest {
            request_id: request_id.clone(),
            ..bind(APP, &a, Some(&b))
        };
        let what = format!("Bind {request_id}");
        let binding = through(&addrs, t + i, &what, |channel| {
            let req = deadline(req.clone());
            async move { BindingServiceClient::new(channel).bind(req).await }
        })
        .await;
        assert_eq!(binding.state(), pb::BindingState::Active, "{binding:?}");
        told.lock()
            .unwrap()
            .bound
            .insert(request_id.clone(), binding);
        live.push_back(request_id);
        if live.len() > KEEP {
            let oldest = live.pop_front().unwrap();
            let req = pb::UnbindRequest {
                binding: Some(pb::unbind_request::Binding::RequestId(oldest.clone())),
                app: APP.into(),
            };
            let what = format!("Unbind {oldest}");
            let released = through(&addrs, t + i + 1, &what, |channel| {
                let req = deadline(req.clone());
                async move { BindingServiceClient::new(channel).unbind(req).await }
            })
            .await;
            assert_eq!(released.state(), pb::BindingState::Released, "{released:?}");
            told.lock().unwrap().unbound.insert(oldest);
        }
    }
}

/// The bindings of `APP` in `state` on `addr` (from its local copy).
async fn listed(addr: &str, state: pb::BindingState) -> Vec<pb::Binding> {
    let channel = Channel::from_shared(addr.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    list_bindings(&mut BindingServiceClient::new(channel), APP, state).await
}

/// The bindings of `APP` on `addr` that a lost answer can leave open: PENDING and RELEASING.
async fn in_doubt(addr: &str) -> Vec<pb::Binding> {
    let mut open = listed(addr, pb::BindingState::Pending).await;
    open.extend(listed(addr, pb::BindingState::Releasing).await);
    open
}

/// Reconciles `APP`, asked through `via` (a replica that does not lead it, which forwards the
/// Reconcile to the leader) and followed on the leader at `leader` (a run lives in the memory
/// of the replica that runs it), until a run ends with no error: a reservation the platform
/// said once it does not have stays PENDING until it is asked again a timeout later.
async fn reconcile(via: &str, leader: &str) -> pb::ReconcileRun {
    let started = Instant::now();
    loop {
        let req = pb::ReconcileRequest {
            app: APP.into(),
            ..Default::default()
        };
        let run = through(&[via.to_owned()], 0, "Reconcile", |channel| {
            let req = deadline(req.clone());
            async move { ReconcileServiceClient::new(channel).reconcile(req).await }
        })
        .await;
        let channel = Channel::from_shared(leader.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ReconcileServiceClient::new(channel);
        let run = watch_run(&mut client, &run.run_id).await.pop().unwrap();
        let rechecks = run
            .errors
            .iter()
            .all(|e| e.message.contains("stays pending until it is asked again"));
        if run.errors.is_empty() && run.state() == pb::ReconcileRunState::Succeeded {
            return run;
        }
        assert!(
            rechecks && started.elapsed() < RETRY_FOR,
            "Reconcile with a healthy platform: {run:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// AXB on one side (`side`): on each X a party at most once (either role) and at most
/// [`CAP`] bindings, and each party B (one per request) at most once in all.
fn assert_axb_rules(side: &str, bindings: &[(String, String, String)]) {
    let mut on_x: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut per_x: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bs = BTreeSet::new();
    for (x, a, b) in bindings {
        let parties = on_x.entry(x).or_default();
        assert!(parties.insert(a), "{side}: party {a} twice on {x}");
        assert!(parties.insert(b), "{side}: party {b} twice on {x}");
        *per_x.entry(x).or_default() += 1;
        assert!(bs.insert(b), "{side}: request of party B {b} bound twice");
    }
    for (x, n) in per_x {
        assert!(n <= CAP, "{side}: {n} bindings on {x}, cap {CAP}");
    }
}

/// What the kill of the leader left.
struct Killed {
    /// The leader before the kill, and after it.
    first: String,
    next: String,
    /// PENDING and RELEASING bindings the dead leader left, in the survivors' copies.
    left_open: Vec<pb::Binding>,
}

/// Runs the clients over `replicas` and SIGKILLs the leader once 30 Binds are acknowledged and
/// a follower's copy shows a reservation in flight; waits until the clients are done (5 Binds
/// acknowledged after the kill within the bound).
async fn kill_leader_under_load(
    replicas: &mut Vec<Replica>,
    etcd: &Client,
    told: &Shared,
) -> Killed {
    let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let first = leader_id(etcd, APP).await.unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| tokio::spawn(client(t, all.clone(), Arc::clone(told))))
        .collect();
    let follower = replicas
        .iter()
        .find(|r| r.id != first)
        .unwrap()
        .addr
        .clone();
    let acked = || told.lock().unwrap().bound.len();
    let started = Instant::now();
    while acked() < 30
        || listed(&follower, pb::BindingState::Pending)
            .await
            .is_empty()
    {
        assert!(started.elapsed() < RETRY_FOR, "no load before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at_kill = acked();
    let victim = replicas.iter().position(|r| r.id == first).unwrap();
    let killed_at = Instant::now();
    replicas.swap_remove(victim).sigkill().await;
    // What the dead leader left open, as the survivors' copies hold it (it writes no more).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left_open = in_doubt(&follower).await;
    let next = new_leader(etcd, APP, &first, RETRY_FOR).await;
    while acked() <= at_kill + 4 {
        assert!(
            killed_at.elapsed() < RETRY_FOR,
            "no Bind acknowledged after the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failover = killed_at.elapsed();
    for client in clients {
        client.await.unwrap();
    }
    let states: Vec<_> = left_open.iter().map(pb::Binding::state).collect();
    eprintln!("failover (kill → 5 more Binds acknowledged): {failover:?}; left open: {states:?}");
    assert!(
        failover < Duration::from_secs(TTL_SECONDS + 13),
        "failover took {failover:?}"
    );
    assert_eq!(leader_id(etcd, APP).await.as_deref(), Some(next.as_str()));
    Killed {
        first,
        next,
        left_open,
    }
}

/// Waits until the leader at `leader` has resolved every PENDING and RELEASING binding by
/// itself (at taking over, then in the background), without a reconcile.
async fn wait_resolved(leader: &str) {
    let started = Instant::now();
    loop {
        let open = in_doubt(leader).await;
        if open.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < RETRY_FOR,
            "the new leader left these unresolved: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader's bindings (`everything`) are as the clients were told: nothing open, what the
/// dead leader left open resolved, every acknowledged binding there on its slot (RELEASED if
/// unbound, else ACTIVE), and no ACTIVE binding beyond those; the ACTIVE slots.
fn assert_as_told(
    everything: &[pb::Binding],
    told: &Told,
    left_open: &[pb::Binding],
) -> BTreeSet<Slot> {
    let by_id: HashMap<&str, &pb::Binding> = everything
        .iter()
        .map(|b| (b.binding_id.as_str(), b))
        .collect();
    let open = |b: &&pb::Binding| {
        matches!(
            b.state(),
            pb::BindingState::Pending | pb::BindingState::Releasing
        )
    };
    let unresolved: Vec<&pb::Binding> = everything.iter().filter(open).collect();
    assert!(
        unresolved.is_empty(),
        "unresolved after the reconcile: {unresolved:?}"
    );
    for b in left_open {
        // Completed, released, or (a reservation the platform never made) dropped.
        let now = by_id.get(b.binding_id.as_str());
        assert!(
            now.is_none_or(|n| n.state() != b.state()),
            "left open at the kill and not resolved: {b:?} is now {now:?}"
        );
    }
    for (request_id, acked) in &told.bound {
        let found = by_id.get(acked.binding_id.as_str());
        let found = found.unwrap_or_else(|| panic!("{request_id}'s binding is gone"));
        assert_eq!(slot(found), slot(acked), "{request_id}");
        let expected = if told.unbound.contains(request_id) {
            pb::BindingState::Released
        } else {
            pb::BindingState::Active
        };
        assert_eq!(found.state(), expected, "{request_id}: {found:?}");
    }
    let active: Vec<&pb::Binding> = everything
        .iter()
        .filter(|b| b.state() == pb::BindingState::Active)
        .collect();
    assert_eq!(
        active.len(),
        told.bound.len() - told.unbound.len(),
        "ACTIVE bindings beyond the acknowledged ones (a retry bound twice): {active:?}"
    );
    let local: BTreeSet<Slot> = active.iter().map(|b| slot(b)).collect();
    assert_eq!(local.len(), active.len(), "two ACTIVE bindings on one slot");
    let xab = |s: &Slot| (s.1.clone(), s.2.clone(), s.3.clone());
    assert_axb_rules("leader", &local.iter().map(xab).collect::<Vec<_>>());
    local
}

/// The platform's live bindings keep the AXB rules and are the slots `local`, nothing extra
/// on either side.
async fn assert_platform_holds(sim: &Sim, local: &BTreeSet<Slot>) {
    let remote = sim.bindings(KEY).await;
    let remote_xab: Vec<(String, String, String)> = remote
        .iter()
        .map(|b| (text(b, "x"), text(b, "a"), text(b, "b")))
        .collect();
    assert_axb_rules("platform", &remote_xab);
    assert_eq!(
        remote.len(),
        local.len(),
        "the platform's bindings: {remote:?}"
    );
    assert_eq!(
        *local,
        sim_slots(sim, KEY).await,
        "the leader's ACTIVE bindings differ from the platform's"
    );
}

/// The leader's allocation index (ListNumbers at `leader`) holds on each X what the ACTIVE
/// slots `local` hold there: no slot is counted twice, none left taken.
async fn assert_index_counts(leader: &str, local: &BTreeSet<Slot>) {
    let channel = Channel::from_shared(leader.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let numbers = list_numbers(&mut PoolServiceClient::new(channel), APP).await;
    assert_eq!(numbers.len(), 4, "{numbers:?}");
    for n in numbers {
        let held = local.iter().filter(|s| s.1 == n.number).count();
        assert_eq!(
            usize::try_from(n.binding_count).unwrap(),
            held,
            "the index counts {} bindings on {}, {held} are ACTIVE",
            n.binding_count,
            n.number
        );
    }
}

/// The copy of the replica at `addr` comes to hold the ACTIVE slots `local`.
async fn assert_copy_follows(addr: &str, local: &BTreeSet<Slot>) {
    let started = Instant::now();
    loop {
        let active = listed(addr, pb::BindingState::Active).await;
        if active.iter().map(slot).collect::<BTreeSet<Slot>>() == *local {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the follower's copy differs from the leader's"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Only leaders call the platform: `next` has, and a replica of `replicas` that never led (by
/// its log in `dir`) made no call, by their metrics on the ports `admin`.
async fn assert_only_leaders_called(
    dir: &Path,
    replicas: &[Replica],
    admin: &HashMap<String, u16>,
    next: &str,
) {
    assert!(
        platform_calls(admin[next]).await > 0.0,
        "the leader's calls"
    );
    for replica in replicas {
        let log = std::fs::read_to_string(dir.join(format!("{}.log", replica.id))).unwrap();
        // Its campaign logs "leading app=…" when it wins, before it makes any call.
        if !log.contains("leading app=") {
            let calls = platform_calls(admin[&replica.id]).await;
            assert_eq!(
                calls, 0.0,
                "{} never led and called the platform",
                replica.id
            );
            eprintln!("{} never led and made no platform call", replica.id);
        }
    }
}

/// The leader is SIGKILLed while four clients bind and unbind through all three replicas, with
/// platform calls in flight: another replica leads within the bound and resolves what the
/// dead leader left in doubt; every acknowledged binding not unbound since is ACTIVE as
/// acknowledged, every acknowledged Unbind RELEASED; no party is twice on one X and no request
/// bound twice, locally or on the platform; after a reconcile the leader's bindings are the
/// platform's, with nothing extra on either side; the other replica's copy agrees, and a
/// replica that never led never called the platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_axb_leaders_bindings_equal_the_platforms_after_a_reconcile() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let sim = Sim::start_with(&setup()).await;
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut replicas = Vec::new();
        let mut admin = HashMap::new();
        for id in ["r1", "r2", "r3"] {
            let (replica, port) = spawn_replica(dir.path(), &cluster, &sim.base_url, id).await;
            admin.insert(id.to_owned(), port);
            replicas.push(replica);
        }
        let addrs: HashMap<String, String> = replicas
            .iter()
            .map(|r| (r.id.clone(), r.addr.clone()))
            .collect();
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let warm = pb::BindRequest {
            request_id: "warm-up".into(),
            ..bind(APP, &party(1), Some(&party(2)))
        };
        let warm = through(&all, 0, "Bind warm-up", |channel| {
            let req = deadline(warm.clone());
            async move { BindingServiceClient::new(channel).bind(req).await }
        })
        .await;
        let told: Shared = Arc::default();
        told.lock().unwrap().bound.insert("warm-up".into(), warm);
        sim.faults(json!({ "app_key": KEY, "latency_ms": LATENCY_MS }))
            .await;

        let etcd = cluster.client();
        let killed = kill_leader_under_load(&mut replicas, &etcd, &told).await;
        assert_ne!(killed.next, killed.first, "another replica leads");
        let leader = &addrs[&killed.next];
        let other = &replicas.iter().find(|r| r.id != killed.next).unwrap().addr;
        wait_resolved(leader).await;
        let run = reconcile(other, leader).await;
        eprintln!(
            "reconcile: {} numbers, {} orphans adopted, {} ghosts freed, {} pending resolved, \
             {} corrected",
            run.xs_checked,
            run.orphans_adopted,
            run.ghosts_freed,
            run.pending_resolved,
            run.fields_corrected
        );
        assert_eq!(
            (run.orphans_adopted, run.ghosts_freed, run.fields_corrected),
            (0, 0, 0),
            "the leader differed from the platform before the reconcile: {run:?}"
        );
        let told = std::mem::take(&mut *told.lock().unwrap());
        let everything = listed(leader, pb::BindingState::Unspecified).await;
        let local = assert_as_told(&everything, &told, &killed.left_open);
        assert_platform_holds(&sim, &local).await;
        assert_index_counts(leader, &local).await;
        assert_copy_follows(other, &local).await;
        assert_only_leaders_called(dir.path(), &replicas, &admin, &killed.next).await;
        for replica in replicas {
            replica.sigkill().await;
        }
        sim.stop().await;
    })
    .await;
}

/// `xpool reconcile --app` sent to a replica that does not lead the app: the Reconcile is
/// forwarded to the leader, which runs it, and the command follows the run to its end (exit 0)
/// as it does on the leader: its WatchReconcileRun names the app in the metadata
/// (`xpool-app`), so the follower forwards it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xpool_reconcile_through_a_follower_follows_the_run_on_the_leader() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let sim = Sim::start_with(&setup()).await;
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut replicas = Vec::new();
        for id in ["r1", "r2"] {
            replicas.push(
                spawn_replica(dir.path(), &cluster, &sim.base_url, id)
                    .await
                    .0,
            );
        }
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let req = bind(APP, &party(1), Some(&party(2)));
        through(&all, 0, "Bind", |channel| {
            let req = deadline(req.clone());
            async move { BindingServiceClient::new(channel).bind(req).await }
        })
        .await;
        let leader = leader_id(&cluster.client(), APP).await.unwrap();
        let follower = replicas.iter().find(|r| r.id != leader).unwrap();
        let reconciled = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"))
            .args(["reconcile", "--server", &follower.addr, "--app", APP])
            .output()
            .await
            .unwrap();
        assert!(
            reconciled.status.success(),
            "xpool reconcile through {}: {}\n{}{}",
            follower.id,
            reconciled.status,
            String::from_utf8_lossy(&reconciled.stdout),
            String::from_utf8_lossy(&reconciled.stderr)
        );
        for replica in replicas {
            replica.sigkill().await;
        }
        sim.stop().await;
    })
    .await;
}
