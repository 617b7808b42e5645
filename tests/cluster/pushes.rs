//! The platform's pushes in cluster mode: three `xpool serve` replicas on one 3-member etcd
//! cluster, an X-mode app on the simulator, and a load balancer in front of the replicas'
//! push receivers (the one URL the platform knows). The balancer sends every push to a replica
//! that does not lead the app, which forwards it to the leader: the X-mode callin is answered
//! with the bound party, and the call's events and CDR are stored under the leader's term and
//! listed by every replica. Then the leader is SIGKILLed, and the same holds with the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::call_service_client::CallServiceClient;

use crate::common::{EtcdCluster, Replica, bounded, cluster_section, leader_id, new_leader};
use crate::support::certs::Ca;
use crate::support::platform::auth::{self, Scheme};
use crate::support::process::logged_addr;
use crate::support::{App, LogDump, Setup, Sim, bind, party};

const APP: &str = "xmode";
/// The platform app (secret `s-x`); the replicas verify its pushes' signatures.
const KEY: &str = "k-x";
const TTL_SECONDS: u64 = 2;
/// Talk time of each call; the simulator's clock is moved past it so the CDR is pushed.
const TALK_SECONDS: u64 = 10;
/// How long a record may take to reach a replica's copy.
const SETTLE: Duration = Duration::from_secs(20);

/// A load balancer: one address, each connection passed to the replica it points at now.
/// Pointing it elsewhere cuts the connections it passed before, so that the platform's
/// kept-alive connections do not keep reaching the old replica.
struct Front {
    url: String,
    target: Arc<Mutex<(String, CancellationToken)>>,
    stop: CancellationToken,
}

impl Front {
    async fn start() -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = Arc::new(Mutex::new((String::new(), CancellationToken::new())));
        let stop = CancellationToken::new();
        let (to, stopped) = (Arc::clone(&target), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let (addr, cut) = to.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&addr).await else {
                        return;
                    };
                    tokio::select! {
                        () = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Front { url, target, stop }
    }

    /// Sends the connections from now on to `addr` (`host:port`), and cuts the others.
    async fn point(&self, addr: &str) {
        let old = std::mem::replace(
            &mut *self.target.lock().unwrap(),
            (addr.to_owned(), CancellationToken::new()),
        );
        old.1.cancel();
        // The platform's client notices the cut connections before its next push.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.cancel();
        self.target.lock().unwrap().1.cancel();
    }
}

/// One replica: its process, and the ports of its push receiver and metrics.
struct Node {
    replica: Replica,
    callbacks: String,
    admin: u16,
}

/// The X-mode app, its pushes signed and going to `front`.
fn setup(front: &str) -> Setup {
    Setup::new(vec![
        App::new(APP, KEY, "X")
            .daemon("verify_push_signature", true)
            .numbers(8617600000001, &["010", "010"]),
    ])
    .receiver()
    .pushing_to(front)
}

async fn spawn_node(dir: &std::path::Path, cluster: &EtcdCluster, sim: &Sim, id: &str) -> Node {
    spawn_node_with(dir, cluster, sim, id, "").await
}

/// [`spawn_node`] with the TOML `extra` appended.
async fn spawn_node_with(
    dir: &std::path::Path,
    cluster: &EtcdCluster,
    sim: &Sim,
    id: &str,
    extra: &str,
) -> Node {
    // Port 0 for both listeners, read back from the log: a port picked free beforehand can
    // be taken (by any connection's local port) before the replica binds it.
    let store = dir.join(id).join("data");
    let text = setup("http://unused")
        .callbacks("listen", "127.0.0.1:0")
        .daemon_section("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .daemon_toml("127.0.0.1:0", &sim.base_url, &store)
        + &cluster_section(cluster, id, TTL_SECONDS)
        + extra;
    let replica = Replica::spawn(dir, id, &text, &[]).await;
    let log = dir.join(format!("{id}.log"));
    let callbacks = logged_addr(&log, "push receiver listening")
        .await
        .to_string();
    let admin = logged_addr(&log, "admin listener").await.port();
    Node {
        replica,
        callbacks,
        admin,
    }
}

/// Binds `a` and `b` through the replicas at `addrs`, retrying while the app has no leader
/// that serves.
async fn bind_through(addrs: &[String], a: &str, b: &str) -> pb::Binding {
    let started = Instant::now();
    let mut last = String::new();
    for addr in addrs.iter().cycle() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Bind {a}→{b}: {last}"
        );
        let mut req = tonic::Request::new(bind(APP, a, Some(b)));
        req.set_timeout(Duration::from_secs(3));
        let bound = async {
            let channel = Channel::from_shared(addr.clone()).unwrap().connect().await;
            BindingServiceClient::new(
                channel.map_err(|e| tonic::Status::unavailable(e.to_string()))?,
            )
            .bind(req)
            .await
        };
        match bound.await {
            Ok(reply) => return reply.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => last = s.message().to_owned(),
            Err(s) => panic!("Bind {a}→{b} on {addr}: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// Plays a call from `from` to `x` on the simulator, then moves its clock past the call's end
/// so its CDR is pushed; the control's answer.
async fn call(sim: &Sim, from: &str, x: &str) -> Value {
    let body = json!({"app_key": KEY, "from": from, "to": x, "talk_seconds": TALK_SECONDS});
    let played = sim.control_post("/sim/call", body).await;
    sim.advance_clock(2 * TALK_SECONDS).await;
    played
}

/// The call record of binding `id` on the replica at `addr` once it has the CDR and all five
/// events of an answered X-mode call; fails after [`SETTLE`].
async fn record_of(addr: &str, id: &str) -> pb::CallRecord {
    let started = Instant::now();
    loop {
        let mut calls = CallServiceClient::connect(addr.to_owned()).await.unwrap();
        let req = pb::ListCallRecordsRequest {
            app: APP.into(),
            binding_id: id.into(),
            ..Default::default()
        };
        let listed = calls.list_call_records(req).await.unwrap().into_inner();
        if let [record] = listed.call_records.as_slice()
            && record.has_cdr
            && record.events.len() == 5
        {
            return record.clone();
        }
        assert!(
            started.elapsed() < SETTLE,
            "the call through binding {id} is not complete on {addr}: {listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `xpool_pushes_total` of `outcome` on the replica with metrics on 127.0.0.1:`admin`.
async fn pushes(admin: u16, outcome: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("outcome=\"{outcome}\"");
    text.lines()
        .filter(|line| line.starts_with("xpool_pushes_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A call to X from a party bound through `front`'s replica (which does not lead the app):
/// the callin is answered with the other party, and every replica lists the call, complete
/// and linked to the binding.
async fn assert_call_goes_through(sim: &Sim, addrs: &[String], binding: &pb::Binding) {
    let played = call(sim, &binding.party_a, &binding.x_number).await;
    assert_eq!(played["stateCode"], 0, "{played}");
    assert_eq!(played["connectedTo"], binding.party_b.as_str(), "{played}");
    for addr in addrs {
        let record = record_of(addr, &binding.binding_id).await;
        assert_eq!(record.session_id, played["sessionId"].as_str().unwrap());
        assert_eq!(record.caller, binding.party_a);
        assert_eq!(record.x_number, binding.x_number);
    }
}

/// Pushes that reach a replica which does not lead their app are forwarded to the leader:
/// X-mode calls are connected, and their events and CDRs are stored once, under the leader's
/// term, and copied to every replica, before and after the leader is SIGKILLed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_a_follower_reach_the_apps_leader_through_a_failover() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let front = Front::start().await;
        let sim = Sim::start_with(&setup(&front.url)).await;
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let mut nodes: HashMap<String, Node> = HashMap::new();
        for id in ["r1", "r2", "r3"] {
            nodes.insert(id.into(), spawn_node(dir.path(), &cluster, &sim, id).await);
        }
        let addrs = |nodes: &HashMap<String, Node>| -> Vec<String> {
            nodes.values().map(|n| n.replica.addr.clone()).collect()
        };

        let first = bind_through(&addrs(&nodes), &party(1), &party(2)).await;
        let etcd = cluster.client();
        let leader = leader_id(&etcd, APP).await.unwrap();
        let follower = nodes.keys().find(|id| **id != leader).unwrap().clone();
        front.point(&nodes[&follower].callbacks).await;
        assert_call_goes_through(&sim, &addrs(&nodes), &first).await;
        assert!(
            pushes(nodes[&follower].admin, "forwarded").await >= 3.0,
            "the callin, the later events and the CDR went through follower {follower}"
        );
        assert_eq!(pushes(nodes[&follower].admin, "ok").await, 0.0);
        assert!(pushes(nodes[&leader].admin, "ok").await >= 3.0);

        nodes.remove(&leader).unwrap().replica.sigkill().await;
        let next = new_leader(&etcd, APP, &leader, Duration::from_secs(15)).await;
        let follower = nodes.keys().find(|id| **id != next).unwrap().clone();
        front.point(&nodes[&follower].callbacks).await;
        let second = bind_through(&addrs(&nodes), &party(3), &party(4)).await;
        assert_call_goes_through(&sim, &addrs(&nodes), &second).await;
        // The first call, stored under the dead leader's term, is still listed.
        for addr in addrs(&nodes) {
            record_of(&addr, &first.binding_id).await;
        }
        for (_, node) in nodes {
            node.replica.sigkill().await;
        }
        sim.stop().await;
    })
    .await;
}

/// With `[callbacks.tls]`, a push sent over HTTPS to a replica that does not lead its app goes
/// on to the leader over HTTPS too, trusting `[cluster.peer_tls]`'s CA: the SMS is stored once,
/// and listed on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_forwarded_over_https_with_callbacks_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let sim = Sim::start_with(&setup("http://unused")).await;
        let dir = tempfile::tempdir().unwrap();
        let _dump = LogDump(dir.path().to_path_buf());
        let ca = Ca::new("xpool test CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let ca_file = write("ca.pem", &ca.pem);
        let mut nodes: HashMap<String, Node> = HashMap::new();
        for id in ["r1", "r2"] {
            let (cert, key) = ca.sign(id);
            let (cert_file, key_file) = (
                write(&format!("{id}.pem"), &cert),
                write(&format!("{id}.key"), &key),
            );
            let tls = format!(
                "[callbacks.tls]\ncert_file = \"{cert_file}\"\nkey_file = \"{key_file}\"\n\
                 [cluster.peer_tls]\nca_file = \"{ca_file}\"\n"
            );
            let node = spawn_node_with(dir.path(), &cluster, &sim, id, &tls).await;
            nodes.insert(id.into(), node);
        }
        let addrs: Vec<String> = nodes.values().map(|n| n.replica.addr.clone()).collect();
        bind_through(&addrs, &party(1), &party(2)).await;
        let leader = leader_id(&cluster.client(), APP).await.unwrap();
        let follower = nodes.keys().find(|id| **id != leader).unwrap().clone();

        let https = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        let sms = json!({"appKey": KEY, "smsEvent": {"smsIdentifier": "tls-sms-1",
            "notifyMode": "Notify", "calling": party(1), "called": party(2),
            "virtualNumber": "+8617600000001", "smsContent": "hello"}});
        let url = format!("https://{}/sms", nodes[&follower].callbacks);
        // Signed as the app, which verifies signatures: the headers go on with the push.
        let created = xpool::platform::time::format_created(time::OffsetDateTime::now_utc());
        let token = auth::token(Scheme::Aksk, KEY, "s-x", &auth::new_nonce(), &created);
        let answer = https
            .post(&url)
            .header("Authorization", Scheme::Aksk.authorization())
            .header(Scheme::Aksk.token_header(), token)
            .json(&sms)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        assert_eq!(status, 200, "{}", answer.text().await.unwrap());
        assert_eq!(pushes(nodes[&follower].admin, "forwarded").await, 1.0);
        assert_eq!(pushes(nodes[&leader].admin, "ok").await, 1.0);
        for addr in &addrs {
            let started = Instant::now();
            loop {
                let mut calls = CallServiceClient::connect(addr.clone()).await.unwrap();
                let req = pb::ListMessagesRequest {
                    app: APP.into(),
                    ..Default::default()
                };
                let listed = calls.list_messages(req).await.unwrap().into_inner();
                if listed.messages.len() == 1 {
                    break;
                }
                assert!(started.elapsed() < SETTLE, "the SMS on {addr}: {listed:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (_, node) in nodes {
            node.replica.sigkill().await;
        }
        sim.stop().await;
    })
    .await;
}
