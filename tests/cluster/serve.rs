//! `xpool serve` with `[cluster]`: three replica processes on one 3-member etcd cluster,
//! loopback only. Clients bind through every replica in turn (a replica that does not lead the
//! app forwards the call to its leader); the leader is SIGKILLed under load, and the
//! invariants are checked on the replica that takes over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;

use crate::common::{EtcdCluster, Replica, bounded, cluster_section, leader_id, new_leader};
use crate::support::certs::Ca;
use crate::support::{LogDump, Sim, bind, health_of, list_bindings, list_numbers};

const APP: &str = "rides";
/// The replicas' lease TTL (the smallest `[cluster]` takes).
const TTL_SECONDS: u64 = 2;
/// How long a client keeps retrying one Bind (through elections) before the test fails.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Replica `id` over `dir/<id>`, with [`config_text`], serving.
async fn spawn_replica(dir: &Path, cluster: &EtcdCluster, id: &str) -> Replica {
    spawn_replica_with(dir, cluster, id, "", &[]).await
}

/// [`spawn_replica`] with `more` at the end of the config (e.g. another app) and `env`
/// (`XPOOL__…` overrides) set.
async fn spawn_replica_with(
    dir: &Path,
    cluster: &EtcdCluster,
    id: &str,
    more: &str,
    env: &[(&str, &str)],
) -> Replica {
    let text = config_text(&dir.join(id), cluster, id) + more;
    Replica::spawn(dir, id, &text, env).await
}

fn config_text(home: &Path, cluster: &EtcdCluster, id: &str) -> String {
    let numbers: Vec<String> = (1..=8)
        .map(|n| format!("{{ number = \"+86176000000{n:02}\", area_code = \"010\" }}"))
        .collect();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_seconds = 2
[store]
path = "{store}"
[[apps]]
name = "{APP}"
mode = "X"
numbers = [ {numbers} ]
{cluster}"#,
        store = home.join("data").display(),
        numbers = numbers.join(", "),
        cluster = cluster_section(cluster, id, TTL_SECONDS),
    )
}

/// What the clients were told: request id → the binding acknowledged for it.
type Acked = Arc<Mutex<BTreeMap<String, pb::Binding>>>;

/// Binds `request_id` for party `a` through the replicas in `addrs` in turn, starting at
/// `first` (any replica takes any call: one that does not lead `APP` forwards it), retrying
/// with the same request id through elections and refusals; the binding acknowledged.
async fn bind_through(addrs: &[String], first: usize, request_id: &str, a: &str) -> pb::Binding {
    let started = Instant::now();
    let mut last = String::new();
    for attempt in first.. {
        assert!(
            started.elapsed() < RETRY_FOR,
            "{request_id} not bound within {RETRY_FOR:?}; last: {last}"
        );
        let addr = &addrs[attempt % addrs.len()];
        let bound = bind_once(addr, request_id, a, Duration::from_secs(3));
        match tokio::time::timeout(Duration::from_secs(4), bound).await {
            Ok(Ok(reply)) => return reply,
            Ok(Err(code)) => last = format!("{code:?}"),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// The leader is SIGKILLed while four clients bind through all three replicas: another replica leads within
/// the bound, every acknowledged binding is there as it was acknowledged, no party is twice
/// on one X, and retries of requests whose answer was lost bound nothing twice.
#[tokio::test]
async fn a_killed_leaders_acknowledged_bindings_survive_on_the_next() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut replicas = Vec::new();
        for id in ["r1", "r2", "r3"] {
            replicas.push(spawn_replica(dir.path(), &cluster, id).await);
        }
        let addrs: HashMap<String, String> = replicas
            .iter()
            .map(|r| (r.id.clone(), r.addr.clone()))
            .collect();
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let etcd = cluster.client();
        bind_through(&all, 0, "warm-up", "+8613800000000").await;
        let first = leader_id(&etcd, APP).await.unwrap();

        let acked: Acked = Arc::default();
        let mut clients = Vec::new();
        for t in 0..4 {
            let (all, acked) = (all.clone(), Arc::clone(&acked));
            clients.push(tokio::spawn(async move {
                for i in 0..40 {
                    let request_id = format!("c{t}-{i}");
                    let a = format!("+86138{t:02}{i:04}00");
                    let binding = bind_through(&all, t + i, &request_id, &a).await;
                    acked.lock().unwrap().insert(request_id, binding);
                }
            }));
        }
        while acked.lock().unwrap().len() < 30 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let at_kill = acked.lock().unwrap().len();
        let victim = replicas.iter().position(|r| r.id == first).unwrap();
        let killed_at = Instant::now();
        replicas.swap_remove(victim).sigkill().await;
        while acked.lock().unwrap().len() <= at_kill + 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failover = killed_at.elapsed();
        for client in clients {
            client.await.unwrap();
        }
        let next = leader_id(&etcd, APP).await.unwrap();
        assert_ne!(next, first, "another replica leads");
        eprintln!("failover (kill → 5 more Binds acknowledged): {failover:?}");
        assert!(
            failover < Duration::from_secs(TTL_SECONDS + 13),
            "failover took {failover:?}"
        );

        // Every acknowledged binding is on the new leader as acknowledged.
        let channel = Channel::from_shared(addrs[&next].clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut api = BindingServiceClient::new(channel);
        let active = list_bindings(&mut api, APP, pb::BindingState::Active).await;
        let by_id: HashMap<&str, &pb::Binding> =
            active.iter().map(|b| (b.binding_id.as_str(), b)).collect();
        let acked = acked.lock().unwrap().clone();
        assert_eq!(acked.len(), 160);
        for (request_id, binding) in acked.iter() {
            let found = by_id.get(binding.binding_id.as_str());
            let found = found.unwrap_or_else(|| panic!("{request_id}'s binding is gone"));
            assert_eq!(found.x_number, binding.x_number, "{request_id}");
            assert_eq!(found.party_a, binding.party_a, "{request_id}");
        }
        // Nothing bound twice: one ACTIVE binding per request (plus the warm-up), each party
        // once per X.
        assert_eq!(active.len(), acked.len() + 1, "retries bound nothing twice");
        let mut seen = HashSet::new();
        for b in &active {
            assert!(
                seen.insert((b.x_number.clone(), b.party_a.clone())),
                "{} twice on {}",
                b.party_a,
                b.x_number
            );
        }
        for replica in replicas {
            replica.sigkill().await;
        }
    })
    .await;
}

/// Waits until the replica at `addr` says `want` for the app's health (`app/<APP>`).
async fn wait_app_health(addr: &str, want: ServingStatus) {
    let service = format!("app/{APP}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while health_of(addr, &service).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{addr}: {service} never said {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One Bind on `addr` with `deadline`, no retry; the binding, or the status code.
async fn bind_once(
    addr: &str,
    request_id: &str,
    a: &str,
    deadline: Duration,
) -> Result<pb::Binding, tonic::Code> {
    let mut request = tonic::Request::new(pb::BindRequest {
        request_id: request_id.to_owned(),
        ..bind(APP, a, Some(&a.replacen("+86138", "+86139", 1)))
    });
    request.set_timeout(deadline);
    let channel = Channel::from_shared(addr.to_owned())
        .unwrap()
        .connect()
        .await;
    let channel = channel.map_err(|_| tonic::Code::Unavailable)?;
    let bound = BindingServiceClient::new(channel).bind(request).await;
    bound.map(tonic::Response::into_inner).map_err(|e| e.code())
}

/// Every acknowledged binding is ACTIVE on `addr` as acknowledged, and no two ACTIVE
/// bindings share a party on one X; the ACTIVE bindings.
async fn assert_holds(addr: &str, acked: &BTreeMap<String, pb::Binding>) -> Vec<pb::Binding> {
    let channel = Channel::from_shared(addr.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut api = BindingServiceClient::new(channel);
    let active = list_bindings(&mut api, APP, pb::BindingState::Active).await;
    let by_id: HashMap<&str, &pb::Binding> =
        active.iter().map(|b| (b.binding_id.as_str(), b)).collect();
    for (request_id, binding) in acked {
        let found = by_id.get(binding.binding_id.as_str());
        let found = found.unwrap_or_else(|| panic!("{request_id}'s binding is gone"));
        assert_eq!(
            (&found.x_number, &found.party_a),
            (&binding.x_number, &binding.party_a),
            "{request_id}"
        );
    }
    let mut seen = HashSet::new();
    for b in &active {
        assert!(
            seen.insert((b.x_number.clone(), b.party_a.clone())),
            "{} twice on {}",
            b.party_a,
            b.x_number
        );
    }
    active
}

/// The leader is SIGSTOPped with Binds in flight, for longer than its lease: another replica
/// takes the app; once SIGCONTed, the old leader commits nothing under its old term (what it
/// acknowledges is on the new leader, nothing is bound twice) and serves again as a follower,
/// forwarding to the new leader.
#[tokio::test]
async fn a_leader_stopped_past_its_lease_commits_nothing_when_it_resumes() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut replicas = Vec::new();
        for id in ["r1", "r2", "r3"] {
            replicas.push(spawn_replica(dir.path(), &cluster, id).await);
        }
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let etcd = cluster.client();
        let warm = bind_through(&all, 0, "warm-up", "+8613800000000").await;
        let old = leader_id(&etcd, APP).await.unwrap();
        let stopped = replicas.iter().position(|r| r.id == old).unwrap();
        let stopped_addr = replicas[stopped].addr.clone();

        let mut in_flight = Vec::new();
        for i in 0..8 {
            let addr = stopped_addr.clone();
            in_flight.push(tokio::spawn(async move {
                let request_id = format!("stopped-{i}");
                let a = format!("+861380100{i:02}00");
                let bound = bind_once(&addr, &request_id, &a, Duration::from_secs(20)).await;
                (request_id.clone(), bound)
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        replicas[stopped].signal("STOP");
        let next = new_leader(&etcd, APP, &old, RETRY_FOR).await;
        let others: Vec<String> = replicas
            .iter()
            .filter(|r| r.id != old)
            .map(|r| r.addr.clone())
            .collect();
        let mut acked = BTreeMap::from([("warm-up".to_owned(), warm)]);
        for i in 0..5 {
            let request_id = format!("meanwhile-{i}");
            let a = format!("+861380200{i:02}00");
            acked.insert(
                request_id.clone(),
                bind_through(&others, i, &request_id, &a).await,
            );
        }
        replicas[stopped].signal("CONT");
        for (i, task) in in_flight.into_iter().enumerate() {
            let (request_id, outcome) = task.await.unwrap();
            let binding = match outcome {
                Ok(binding) => binding,
                Err(code) => {
                    assert!(
                        matches!(
                            code,
                            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                        ),
                        "{request_id}: {code:?}"
                    );
                    // Refused or unknown: the retry (same request id) binds it exactly once.
                    let a = format!("+861380100{i:02}00");
                    bind_through(&others, i, &request_id, &a).await
                }
            };
            acked.insert(request_id, binding);
        }
        // Back as a follower: its Binds reach the new leader.
        for i in 0..5 {
            let request_id = format!("after-{i}");
            let a = format!("+861380300{i:02}00");
            let only = [stopped_addr.clone()];
            acked.insert(
                request_id.clone(),
                bind_through(&only, 0, &request_id, &a).await,
            );
        }
        assert_eq!(leader_id(&etcd, APP).await.as_deref(), Some(next.as_str()));
        let next_addr = &replicas.iter().find(|r| r.id == next).unwrap().addr;
        let active = assert_holds(next_addr, &acked).await;
        assert_eq!(
            active.len(),
            acked.len(),
            "nothing bound but what was acknowledged"
        );
        for replica in replicas {
            replica.sigkill().await;
        }
    })
    .await;
}

/// One etcd member killed: Binds go on. Quorum lost: Binds are refused UNAVAILABLE within
/// their deadline, reads are still served; quorum back: Binds succeed again, and nothing
/// acknowledged is lost.
#[tokio::test]
async fn quorum_loss_refuses_writes_promptly_and_serves_reads() {
    bounded(async {
        let Some(mut cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut replicas = Vec::new();
        for id in ["r1", "r2", "r3"] {
            replicas.push(spawn_replica(dir.path(), &cluster, id).await);
        }
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let mut acked = BTreeMap::new();
        acked.insert(
            "warm-up".to_owned(),
            bind_through(&all, 0, "warm-up", "+8613800000000").await,
        );

        // The app is served through every replica: its leader, and the others forwarding.
        for addr in &all {
            wait_app_health(addr, ServingStatus::Serving).await;
        }
        // The app's pool, which only its leader holds, is listed through any replica.
        for addr in &all {
            let channel = Channel::from_shared(addr.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut pool = PoolServiceClient::new(channel);
            let numbers = list_numbers(&mut pool, APP).await;
            assert_eq!(numbers.len(), 8, "{addr}: {numbers:?}");
            // Every replica lists the app, led here or not, with its numbers.
            let apps = pool
                .list_apps(pb::ListAppsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .apps;
            assert_eq!(apps.len(), 1, "{addr}: {apps:?}");
            assert_eq!((apps[0].name.as_str(), apps[0].number_count), (APP, 8));
        }

        let etcd_leader = cluster.leader().await.unwrap();
        let first = (etcd_leader + 1) % 3;
        cluster.kill(first);
        for i in 0..5 {
            let request_id = format!("one-down-{i}");
            let a = format!("+861380400{i:02}00");
            acked.insert(
                request_id.clone(),
                bind_through(&all, i, &request_id, &a).await,
            );
        }

        let second = (first + 1) % 3;
        cluster.kill(second);
        // Every replica refuses writes, promptly, whatever it knew of the leader.
        tokio::time::sleep(Duration::from_secs(TTL_SECONDS + 1)).await;
        for (i, addr) in all.iter().enumerate() {
            let mut request = tonic::Request::new(pb::BindRequest {
                request_id: format!("no-quorum-{i}"),
                ..bind(APP, "+8613805000000", Some("+8613905000000"))
            });
            request.set_timeout(Duration::from_secs(3));
            let channel = Channel::from_shared(addr.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let started = Instant::now();
            let refused = tokio::time::timeout(
                Duration::from_secs(6),
                BindingServiceClient::new(channel).bind(request),
            )
            .await
            .expect("a Bind without quorum must not hang past its deadline");
            let code = refused.expect_err("no write commits without quorum").code();
            assert!(
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ),
                "{code:?} after {:?}",
                started.elapsed()
            );
            // Reads are served from the local copy.
            let channel = Channel::from_shared(addr.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut api = BindingServiceClient::new(channel);
            let active = list_bindings(&mut api, APP, pb::BindingState::Active).await;
            assert!(
                active.len() >= acked.len(),
                "{addr}: {} bindings",
                active.len()
            );
        }
        // No replica keeps its lease without quorum, so none can vouch for a leader: the
        // app's health says so everywhere, while the server itself still serves reads.
        for addr in &all {
            wait_app_health(addr, ServingStatus::NotServing).await;
            assert_eq!(
                health_of(addr, "").await,
                Some(ServingStatus::Serving),
                "{addr}"
            );
        }

        cluster.restart(first);
        cluster.restart(second);
        cluster.wait_healthy(Duration::from_secs(30)).await.unwrap();
        for addr in &all {
            wait_app_health(addr, ServingStatus::Serving).await;
        }
        for i in 0..5 {
            let request_id = format!("healed-{i}");
            let a = format!("+861380600{i:02}00");
            acked.insert(
                request_id.clone(),
                bind_through(&all, i, &request_id, &a).await,
            );
        }
        let etcd = cluster.client();
        let leader = leader_id(&etcd, APP).await.unwrap();
        let leader_addr = &replicas.iter().find(|r| r.id == leader).unwrap().addr;
        assert_holds(leader_addr, &acked).await;
        for replica in replicas {
            replica.sigkill().await;
        }
    })
    .await;
}

/// A replica started again on an empty disk copies everything from etcd, and once it is the
/// only one left it leads the app with every acknowledged binding.
#[tokio::test]
async fn a_replica_on_an_empty_disk_catches_up_and_can_lead() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut replicas = Vec::new();
        for id in ["r1", "r2", "r3"] {
            replicas.push(spawn_replica(dir.path(), &cluster, id).await);
        }
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let mut acked = BTreeMap::new();
        for i in 0..20 {
            let request_id = format!("before-{i}");
            let a = format!("+861380700{i:02}00");
            acked.insert(
                request_id.clone(),
                bind_through(&all, i, &request_id, &a).await,
            );
        }
        let etcd = cluster.client();
        let leader = leader_id(&etcd, APP).await.unwrap();
        let wiped = replicas.iter().position(|r| r.id != leader).unwrap();
        let id = replicas[wiped].id.clone();
        replicas.swap_remove(wiped).sigkill().await;
        std::fs::remove_dir_all(dir.path().join(&id).join("data")).unwrap();
        let fresh = spawn_replica(dir.path(), &cluster, &id).await;
        for replica in replicas {
            replica.sigkill().await;
        }
        let only = [fresh.addr.clone()];
        for i in 0..5 {
            let request_id = format!("after-{i}");
            let a = format!("+861380800{i:02}00");
            acked.insert(
                request_id.clone(),
                bind_through(&only, 0, &request_id, &a).await,
            );
        }
        assert_eq!(leader_id(&etcd, APP).await.as_deref(), Some(id.as_str()));
        let active = assert_holds(&fresh.addr, &acked).await;
        assert_eq!(active.len(), acked.len());
        fresh.sigkill().await;
    })
    .await;
}

/// The replicas' current addresses, as the chaos test restarts them on new ports.
type Live = Arc<Mutex<Vec<String>>>;

/// [`bind_through`] over whatever replicas are live at each attempt.
async fn bind_live(live: &Live, first: usize, request_id: &str, a: &str) -> pb::Binding {
    let started = Instant::now();
    let mut attempt = first;
    loop {
        assert!(
            started.elapsed() < RETRY_FOR,
            "{request_id} not bound within {RETRY_FOR:?}"
        );
        let addrs = live.lock().unwrap().clone();
        let one = [addrs[attempt % addrs.len()].clone()];
        attempt += 1;
        let bound = tokio::time::timeout(
            Duration::from_secs(5),
            bind_once(&one[0], request_id, a, Duration::from_secs(3)),
        )
        .await;
        if let Ok(Ok(binding)) = bound {
            return binding;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small deterministic generator (xorshift), so a seed replays the same rounds.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Seeded rounds of SIGKILLed leaders and followers (restarted), leaders SIGSTOPped past their
/// lease (then resumed) and etcd members killed (then restarted), under two clients binding
/// through every live replica; afterwards every acknowledged binding is there, nothing is
/// bound twice, and nothing but what was acknowledged. `XPOOL_CLUSTER_CHAOS_SEED` replays a
/// run, `XPOOL_CLUSTER_CHAOS_ROUNDS` sets the rounds (20).
#[tokio::test]
async fn chaos_rounds_keep_every_acknowledged_binding() {
    let seed: u64 = std::env::var("XPOOL_CLUSTER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64) | 1
        });
    let rounds: usize = std::env::var("XPOOL_CLUSTER_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("cluster chaos: XPOOL_CLUSTER_CHAOS_SEED={seed} XPOOL_CLUSTER_CHAOS_ROUNDS={rounds}");
    let run = async {
        let Some(mut cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut replicas = Vec::new();
        for id in ["r1", "r2", "r3"] {
            replicas.push(spawn_replica(dir.path(), &cluster, id).await);
        }
        let live: Live = Arc::new(Mutex::new(
            replicas.iter().map(|r| r.addr.clone()).collect(),
        ));
        let etcd = cluster.client();
        let acked: Acked = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let mut clients = Vec::new();
        for t in 0..2usize {
            let (live, acked, stop) = (Arc::clone(&live), Arc::clone(&acked), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.is_cancelled() {
                    let request_id = format!("c{t}-{i}");
                    let a = format!("+86138{t:02}{i:04}00");
                    let binding = bind_live(&live, t + i, &request_id, &a).await;
                    acked.lock().unwrap().insert(request_id, binding);
                    i += 1;
                }
            }));
        }
        let mut rng = Rng(seed);
        for round in 0..rounds {
            let leader = leader_id(&etcd, APP).await;
            let pick = rng.below(4);
            let at = match pick {
                // The leader (or, without one, anyone), then a follower: SIGKILL, restart.
                0 | 1 => {
                    let victim = match (&leader, pick) {
                        (Some(l), 0) => replicas.iter().position(|r| &r.id == l),
                        (Some(l), _) => replicas.iter().position(|r| &r.id != l),
                        (None, _) => None,
                    }
                    .unwrap_or(0);
                    let id = replicas[victim].id.clone();
                    replicas.remove(victim).sigkill().await;
                    *live.lock().unwrap() = replicas.iter().map(|r| r.addr.clone()).collect();
                    tokio::time::sleep(Duration::from_millis(300 + rng.below(1500))).await;
                    replicas.push(spawn_replica(dir.path(), &cluster, &id).await);
                    format!("killed and restarted {id}")
                }
                // The leader stopped past its lease, then resumed.
                2 => match leader.and_then(|l| replicas.iter().position(|r| r.id == l)) {
                    Some(i) => {
                        replicas[i].signal("STOP");
                        tokio::time::sleep(Duration::from_secs(TTL_SECONDS + 1)).await;
                        replicas[i].signal("CONT");
                        format!("stopped {} past its lease", replicas[i].id)
                    }
                    None => "no leader to stop".to_owned(),
                },
                // One etcd member killed, then restarted.
                _ => {
                    let member = usize::try_from(rng.below(3)).unwrap();
                    cluster.kill(member);
                    tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
                    cluster.restart(member);
                    cluster.wait_healthy(Duration::from_secs(30)).await.unwrap();
                    format!("etcd member {member} killed and restarted")
                }
            };
            *live.lock().unwrap() = replicas.iter().map(|r| r.addr.clone()).collect();
            let before = acked.lock().unwrap().len();
            let started = Instant::now();
            while acked.lock().unwrap().len() < before + 2 {
                assert!(
                    started.elapsed() < RETRY_FOR,
                    "round {round} ({at}): no Bind acknowledged after it (seed {seed})"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!(
                "round {round}: {at}; {} acknowledged",
                acked.lock().unwrap().len()
            );
        }
        stop.cancel();
        for client in clients {
            client.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        let leader = leader_id(&etcd, APP).await.unwrap();
        let leader_addr = replicas
            .iter()
            .find(|r| r.id == leader)
            .unwrap()
            .addr
            .clone();
        let active = assert_holds(&leader_addr, &acked).await;
        assert_eq!(
            active.len(),
            acked.len(),
            "seed {seed}: only what was acknowledged"
        );
        for replica in replicas {
            replica.sigkill().await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(400), run)
        .await
        .is_err()
    {
        panic!("cluster chaos did not finish within 400 s (seed {seed})");
    }
}

/// Retention runs in cluster mode, on each app's leader under its term. An AX app (on the
/// simulator) keeps a released binding through its 2 s cool-down, and request ids are not
/// remembered, so the retention job deletes an unbound binding about 2 s after its release:
/// it is then gone from every replica, and its request id binds anew.
#[tokio::test]
async fn retention_runs_on_the_leader_and_reaches_every_replica() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let sim = Sim::start().await;
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let retention = [
            ("XPOOL__STORE__RELEASED_RETENTION_DAYS", "0"),
            ("XPOOL__STORE__REQUEST_ID_RETENTION_HOURS", "0"),
        ];
        let drivers = format!(
            r#"
[[apps]]
name = "drivers"
mode = "AX"
cool_down_seconds = 2
base_url = "{base_url}"
app_key = "k-ax"
app_secret = "s-ax"
numbers = [ {{ number = "+8617100000001", area_code = "010" }} ]
"#,
            base_url = sim.base_url
        );
        let mut replicas = Vec::new();
        for id in ["r1", "r2", "r3"] {
            let replica = spawn_replica_with(dir.path(), &cluster, id, &drivers, &retention);
            replicas.push(replica.await);
        }
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let connect = |addr: &String| {
            let addr = addr.clone();
            async move {
                let channel = Channel::from_shared(addr).unwrap().connect().await.unwrap();
                BindingServiceClient::new(channel)
            }
        };
        let request = pb::BindRequest {
            request_id: "ax-1".into(),
            ..bind("drivers", "+8613800000001", None)
        };
        let first = bind_until_bound(&all, &request).await;
        // Unbound through a replica that may not lead (forwarded if so).
        connect(&all[1])
            .await
            .unbind(pb::UnbindRequest::by_id(first.binding_id.clone()))
            .await
            .unwrap();
        let released_at = Instant::now();

        for addr in &all {
            let mut api = connect(addr).await;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let by_id = api
                    .get_binding(pb::GetBindingRequest::by_id(first.binding_id.clone()))
                    .await;
                if by_id
                    .as_ref()
                    .is_err_and(|s| s.code() == tonic::Code::NotFound)
                {
                    break;
                }
                assert!(Instant::now() < deadline, "{addr}: still there: {by_id:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert!(
            released_at.elapsed() >= Duration::from_secs(2),
            "deleted by the retention job after the cool-down, not at release"
        );
        let again = bind_until_bound(&all, &request).await;
        assert_ne!(again.binding_id, first.binding_id, "a new binding");
        for replica in replicas {
            replica.sigkill().await;
        }
        sim.stop().await;
    })
    .await;
}

/// Sends `request` through the replicas in turn until one acknowledges it (retrying through
/// an election, and while its request id is still taken).
async fn bind_until_bound(addrs: &[String], request: &pb::BindRequest) -> pb::Binding {
    let deadline = Instant::now() + RETRY_FOR;
    let mut last = None;
    for addr in addrs.iter().cycle() {
        assert!(Instant::now() < deadline, "not bound: {last:?}");
        let channel = Channel::from_shared(addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        match BindingServiceClient::new(channel)
            .bind(request.clone())
            .await
        {
            Ok(reply) => return reply.into_inner(),
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// With `[server.tls]` asking for client certificates, the replicas forward to each other
/// over mutual TLS (`[cluster.peer_tls]`): a client known only by its certificate
/// (`[[auth.clients]]`) binds through every replica, the two that do not lead forwarding to the
/// one that does, which takes the caller from the forwarding replica (a replica's certificate
/// names its node id). A stranger's certificate claiming to forward for that client is refused.
#[tokio::test]
async fn replicas_forward_to_each_other_over_mutual_tls() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let ca = Ca::new("xpool test CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let ca_file = write("ca.pem", &ca.pem);
        let mut replicas = Vec::new();
        for id in ["r1", "r2", "r3"] {
            let (cert, key) = ca.sign(id);
            let cert_file = write(&format!("{id}.pem"), &cert);
            let key_file = write(&format!("{id}.key"), &key);
            let tls = format!(
                r#"
[server.tls]
cert_file = "{cert_file}"
key_file = "{key_file}"
client_ca_file = "{ca_file}"
[cluster.peer_tls]
ca_file = "{ca_file}"
cert_file = "{cert_file}"
key_file = "{key_file}"
[auth]
[[auth.clients]]
name = "rides-client"
subject = "a-client"
scopes = ["bind:{APP}"]
"#
            );
            let text = config_text(&dir.path().join(id), &cluster, id) + &tls;
            replicas.push(Replica::start(dir.path(), id, &text, &[]).await);
        }
        let (cert, key) = ca.sign("a-client");
        let client_tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.pem))
            .identity(Identity::from_pem(cert, key));
        let connect = |addr: &str| {
            let url = addr.replacen("http://", "https://", 1);
            Channel::from_shared(url)
                .unwrap()
                .tls_config(client_tls.clone())
                .unwrap()
                .connect_lazy()
        };
        let mut acked = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            let request = pb::BindRequest {
                request_id: format!("tls-{i}"),
                ..bind(APP, &format!("+86138000000{i:02}"), Some("+8613900000000"))
            };
            let deadline = Instant::now() + RETRY_FOR;
            let bound = loop {
                let mut api = BindingServiceClient::new(connect(&replica.addr));
                match api.bind(request.clone()).await {
                    Ok(reply) => break reply.into_inner(),
                    Err(status) => assert!(
                        Instant::now() < deadline,
                        "{} did not bind: {status:?}",
                        replica.id
                    ),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            acked.push(bound);
        }
        let leader = leader_id(&cluster.client(), APP).await.unwrap();
        let leader = replicas.iter().find(|r| r.id == leader).unwrap();
        let mut api = BindingServiceClient::new(connect(&leader.addr));
        let active = list_bindings(&mut api, APP, pb::BindingState::Active).await;
        for bound in &acked {
            assert!(
                active.iter().any(|b| b.binding_id == bound.binding_id),
                "{bound:?} not on the leader"
            );
        }
        // Only a replica may say whom it forwards for.
        let (cert, key) = ca.sign("a-stranger");
        let stranger_tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.pem))
            .identity(Identity::from_pem(cert, key));
        let channel = Channel::from_shared(leader.addr.replacen("http://", "https://", 1))
            .unwrap()
            .tls_config(stranger_tls)
            .unwrap()
            .connect_lazy();
        let mut request = tonic::Request::new(bind(APP, "+8613800000099", Some("+8613900000000")));
        request
            .metadata_mut()
            .insert("xpool-forwarded-client", "rides-client".parse().unwrap());
        let refused = BindingServiceClient::new(channel)
            .bind(request)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        for replica in replicas {
            replica.sigkill().await;
        }
    })
    .await;
}
