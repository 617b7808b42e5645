//! `xpool serve` with `[cluster]`: three replica processes on one 3-member etcd cluster,
//! loopback only. Clients bind through every replica in turn (a replica that does not lead the
//! app forwards the call to its leader); the leader is SIGKILLed under load, and the
//! invariants are checked on the replica that takes over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool_etcd::Client;

use crate::common::{EtcdCluster, PREFIX, bounded};
use crate::support::{LogDump, bind, list_bindings, listening_addr, wait_serving, xpool_serve};

const APP: &str = "rides";
/// The replicas' lease TTL (the smallest `[cluster]` takes).
const TTL_SECONDS: u64 = 2;
/// How long a client keeps retrying one Bind (through elections) before the test fails.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// One `xpool serve` replica.
struct Replica {
    id: String,
    proc: tokio::process::Child,
    addr: String,
}

impl Replica {
    /// Starts replica `id` over `dir/<id>` and waits until it serves gRPC.
    async fn spawn(dir: &Path, cluster: &EtcdCluster, id: &str) -> Replica {
        let home = dir.join(id);
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("xpool.toml");
        std::fs::write(&config, config_text(&home, cluster, id)).unwrap();
        let log = dir.join(format!("{id}.log"));
        let mut proc = xpool_serve(&log)
            .arg("--config")
            .arg(&config)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Some(status) = proc.try_wait().unwrap() {
                panic!("replica {id} exited during start-up ({status})");
            }
            if let Some(addr) = listening_addr(&log) {
                break addr;
            }
            assert!(Instant::now() < deadline, "replica {id} did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let gone = || None::<String>;
        wait_serving(&addr, Duration::from_secs(30), gone)
            .await
            .unwrap();
        Replica {
            id: id.to_owned(),
            proc,
            addr,
        }
    }

    async fn sigkill(mut self) {
        self.proc.kill().await.unwrap();
    }
}

fn config_text(home: &Path, cluster: &EtcdCluster, id: &str) -> String {
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
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
[cluster]
etcd_endpoints = {endpoints:?}
node_id = "{id}"
advertise_addr = "127.0.0.1:0"
lease_ttl_seconds = {TTL_SECONDS}
key_prefix = "{PREFIX}"
"#,
        store = home.join("data").display(),
        numbers = numbers.join(", "),
    )
}

/// The node id leading `APP` now, by etcd.
async fn leader_id(client: &Client) -> Option<String> {
    let got = client.get(format!("{PREFIX}leader/{APP}")).await.ok()?;
    got.first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
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
        let addr = addrs[attempt % addrs.len()].clone();
        let mut request = tonic::Request::new(pb::BindRequest {
            request_id: request_id.to_owned(),
            ..bind(APP, a, Some(&a.replacen("+86138", "+86139", 1)))
        });
        request.set_timeout(Duration::from_secs(3));
        let answer = async {
            let channel = Channel::from_shared(addr).unwrap().connect().await;
            let channel = channel.map_err(|e| e.to_string())?;
            let bound = BindingServiceClient::new(channel).bind(request).await;
            bound.map_err(|e| format!("{:?}: {}", e.code(), e.message()))
        };
        match tokio::time::timeout(Duration::from_secs(4), answer).await {
            Ok(Ok(reply)) => return reply.into_inner(),
            Ok(Err(e)) => last = e,
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
            replicas.push(Replica::spawn(dir.path(), &cluster, id).await);
        }
        let addrs: HashMap<String, String> = replicas
            .iter()
            .map(|r| (r.id.clone(), r.addr.clone()))
            .collect();
        let all: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let etcd = cluster.client();
        bind_through(&all, 0, "warm-up", "+8613800000000").await;
        let first = leader_id(&etcd).await.unwrap();

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
        let next = leader_id(&etcd).await.unwrap();
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
