//! In-process replicas (a membership and an elector each), `xpool serve` replicas as child
//! processes, and the waits the tests share.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use xpool::cluster::Prefix;
use xpool::cluster::leadership::{
    Elector, Leadership, LeadershipConfig, LeadershipEvent, LossReason,
};
use xpool::cluster::membership::{Membership, MembershipConfig, NodeInfo};
pub use xpool_etcd::testing::EtcdCluster;
use xpool_etcd::{Client, Txn, TxnOp};

use crate::support::{listening_addr, wait_serving, xpool_serve};

/// The lease TTL of the test replicas (the smallest `[cluster]` accepts).
pub const TTL: Duration = Duration::from_secs(2);
/// The most any one test may take, etcd start-up included.
pub const TEST_BOUND: Duration = Duration::from_secs(120);
pub const PREFIX: &str = "/xpool/";

/// Six apps, as the brief's spread test has them.
pub fn apps(n: usize) -> Vec<String> {
    ["rides", "food", "parcels", "chat", "taxi", "grocery"]
        .iter()
        .take(n)
        .map(|s| (*s).to_owned())
        .collect()
}

/// Runs a test body, failing it if it takes longer than [`TEST_BOUND`].
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    if tokio::time::timeout(TEST_BOUND, body).await.is_err() {
        panic!("test did not finish within {TEST_BOUND:?}");
    }
}

/// Polls `check` every 50 ms until it holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(limit, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} did not happen within {limit:?}");
}

/// One replica in this process.
pub struct Node {
    pub id: String,
    pub membership: Membership,
    pub elector: Elector,
    /// The terms this node holds, from its `Won` / `Lost` events.
    pub led: Arc<Mutex<BTreeMap<String, Leadership>>>,
    /// Every `Lost` it was sent, in order.
    pub losses: Arc<Mutex<Vec<(String, LossReason)>>>,
    /// Events out of order (`Won` twice, `Lost` without a lost term): must stay empty.
    pub violations: Arc<Mutex<Vec<String>>>,
    /// Stops everything abruptly (as a crash would).
    pub cancel: CancellationToken,
}

impl Node {
    /// Joins `cluster` as `id` and campaigns for `apps`, ranks 300 ms apart, handing over after
    /// 1 s.
    pub async fn start(cluster: &EtcdCluster, id: &str, apps: &[String]) -> Node {
        let client = cluster.client();
        let config = MembershipConfig {
            node_id: id.to_owned(),
            info: NodeInfo {
                advertise_addr: format!("127.0.0.1:{}", 50_000 + id.len()),
                callbacks_addr: None,
                version: "test".to_owned(),
                started_at_ms: 1_700_000_000_000,
            },
            lease_ttl: TTL,
            retry_pause: Duration::from_millis(200),
        };
        let cancel = CancellationToken::new();
        let membership = Membership::join(client, Prefix::new(PREFIX), config, &cancel)
            .await
            .unwrap();
        let mut leadership = LeadershipConfig::new(apps.to_vec());
        leadership.rank_delay = Duration::from_millis(300);
        leadership.rebalance_after = Some(Duration::from_secs(1));
        leadership.retry_pause = Duration::from_millis(200);
        let (elector, mut events) = Elector::start(&membership, leadership, &cancel)
            .await
            .unwrap();
        let led: Arc<Mutex<BTreeMap<String, Leadership>>> = Arc::default();
        let losses: Arc<Mutex<Vec<(String, LossReason)>>> = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let (led2, losses2, bad) = (
            Arc::clone(&led),
            Arc::clone(&losses),
            Arc::clone(&violations),
        );
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    LeadershipEvent::Won { app, leadership } => {
                        if led2
                            .lock()
                            .unwrap()
                            .insert(app.clone(), leadership)
                            .is_some()
                        {
                            bad.lock()
                                .unwrap()
                                .push(format!("Won twice in a row for {app}"));
                        }
                    }
                    LeadershipEvent::Lost { app, why } => {
                        let old = led2.lock().unwrap().remove(&app);
                        if !old.is_some_and(|l| l.is_lost()) {
                            bad.lock()
                                .unwrap()
                                .push(format!("Lost {app} without a lost term"));
                        }
                        losses2.lock().unwrap().push((app, why));
                    }
                }
            }
        });
        Node {
            id: id.to_owned(),
            membership,
            elector,
            led,
            losses,
            violations,
            cancel,
        }
    }

    /// Asserts the events came in order.
    pub fn assert_orderly(&self) {
        let bad = self.violations.lock().unwrap();
        assert!(bad.is_empty(), "{}: {bad:?}", self.id);
    }

    /// The apps this node leads, by its events.
    pub fn leads(&self) -> Vec<String> {
        self.led.lock().unwrap().keys().cloned().collect()
    }

    /// This node's current term of `app`.
    pub fn term(&self, app: &str) -> Option<Leadership> {
        self.led.lock().unwrap().get(app).cloned()
    }

    /// Dies without a word to etcd: renewals stop, so its lease (and keys) expire within the
    /// TTL. Returns the terms it held, for stale-fence checks.
    pub async fn crash(self) -> BTreeMap<String, Leadership> {
        let terms = self.led.lock().unwrap().clone();
        self.cancel.cancel();
        self.membership.stop().await;
        drop(self.elector);
        terms
    }
}

/// Whether a write fenced by `term` commits now.
pub async fn fenced_write(client: &Client, term: &Leadership, value: &str) -> bool {
    let txn = Txn::new().when([term.fence()]).and_then([TxnOp::put(
        format!("/data/{}", term.app()),
        value.to_owned(),
    )]);
    client.txn(txn).await.unwrap().succeeded
}

/// Whether every app has exactly one leader among `nodes` (by their events), each node leads
/// at most `most`, and the leaders table of every node agrees.
pub fn settled(nodes: &[&Node], apps: &[String], most: usize) -> bool {
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        let leads = node.leads();
        if leads.len() > most {
            return false;
        }
        for app in leads {
            owners.entry(app).or_default().push(node.id.clone());
        }
    }
    let one_each = apps
        .iter()
        .all(|app| owners.get(app).is_some_and(|o| o.len() == 1));
    one_each
        && nodes.iter().all(|node| {
            let table = node.elector.leaders().borrow().clone();
            apps.iter().all(|app| {
                table.leader(app).map(|l| l.node_id) == owners.get(app).map(|o| o[0].clone())
            })
        })
}

/// One `xpool serve` replica, a child process (SIGKILLed when dropped).
pub struct Replica {
    pub id: String,
    pub proc: tokio::process::Child,
    /// `http://127.0.0.1:PORT`, read from its log.
    pub addr: String,
}

impl Replica {
    /// Starts replica `id` with the config `text`, written to `dir/<id>/xpool.toml`, and `env`
    /// (`XPOOL__…` overrides) set, logging to `dir/<id>.log`, and waits until it serves gRPC.
    pub async fn spawn(dir: &Path, id: &str, text: &str, env: &[(&str, &str)]) -> Replica {
        let replica = Replica::start(dir, id, text, env).await;
        let gone = || None::<String>;
        wait_serving(&replica.addr, Duration::from_secs(30), gone)
            .await
            .unwrap();
        replica
    }

    /// [`Replica::spawn`] without waiting for it to serve (its address is `http://…` even when
    /// it serves TLS).
    pub async fn start(dir: &Path, id: &str, text: &str, env: &[(&str, &str)]) -> Replica {
        let home = dir.join(id);
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("xpool.toml");
        std::fs::write(&config, text).unwrap();
        let log = dir.join(format!("{id}.log"));
        let mut proc = xpool_serve(&log)
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied())
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
        Replica {
            id: id.to_owned(),
            proc,
            addr,
        }
    }

    pub async fn sigkill(mut self) {
        self.proc.kill().await.unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.proc.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }
}

/// The `[cluster]` section of replica `id` on `cluster`'s three members, advertising the port
/// it binds, under [`PREFIX`].
pub fn cluster_section(cluster: &EtcdCluster, id: &str, ttl_seconds: u64) -> String {
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    format!(
        r#"
[cluster]
etcd_endpoints = {endpoints:?}
node_id = "{id}"
advertise_addr = "127.0.0.1:0"
lease_ttl_seconds = {ttl_seconds}
key_prefix = "{PREFIX}"
"#
    )
}

/// The node id leading `app` now, by etcd.
pub async fn leader_id(client: &Client, app: &str) -> Option<String> {
    let got = client.get(format!("{PREFIX}leader/{app}")).await.ok()?;
    got.first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// Waits until etcd names a leader of `app` other than `old`, failing after `limit`; its id.
pub async fn new_leader(etcd: &Client, app: &str, old: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some(id) = leader_id(etcd, app).await.filter(|id| id != old) {
            return id;
        }
        assert!(
            started.elapsed() < limit,
            "nobody took over {app} from {old}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
