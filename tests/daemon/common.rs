//! A daemon (`xpool::run`) on 127.0.0.1:0 over a temporary store, talking to a simulator on
//! 127.0.0.1:0, and gRPC clients for it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use xpool::config::Config;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;
use xpool::lifecycle::OffsetClock;

use crate::sim::Sim;

/// The simulator side: one platform app per mode.
pub const SIM_CONFIG: &str = r#"
[[apps]]
app_key = "k-axb"
app_secret = "s-axb"
mode = "AXB"
max_bindings_per_x = 5000
numbers = [
  { number = "+8617000000001", area_code = "010" },
  { number = "+8617000000002", area_code = "010" },
  { number = "+8617000000003", area_code = "021" },
  { number = "+8617000000004", area_code = "0755" },
]

[[apps]]
app_key = "k-ax"
app_secret = "s-ax"
mode = "AX"
numbers = [
  { number = "+8617100000001", area_code = "010" },
  { number = "+8617100000002", area_code = "010" },
  { number = "+8617100000003", area_code = "021" },
]

[[apps]]
app_key = "k-axe"
app_secret = "s-axe"
mode = "AXE"
extension_digits = 2
numbers = [
  { number = "+8617200000001", area_code = "010" },
  { number = "+8617200000002", area_code = "010" },
]

[[apps]]
app_key = "k-axyb"
app_secret = "s-axyb"
mode = "AXYB"
numbers = [
  { number = "+8617300000001", area_code = "010" },
  { number = "+8617300000002", area_code = "010" },
  { number = "+8617300000003", area_code = "021" },
  { number = "+8617300000004", area_code = "021" },
]
"#;

/// The daemon side; `{SIM}` and `{STORE}` are filled in.
pub const DAEMON_CONFIG: &str = r#"
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
fallback_areas = ["021"]
numbers = [
  { number = "+8617000000001", area_code = "010" },
  { number = "+8617000000002", area_code = "010" },
  { number = "+8617000000003", area_code = "021" },
  { number = "+8617000000004", area_code = "0755" },
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
  { number = "+8617100000003", area_code = "021" },
]

[[apps]]
name = "stores"
mode = "AXE"
base_url = "{SIM}"
app_key = "k-axe"
app_secret = "s-axe"
rate_per_second = 10000
timeout_ms = 2000
extension_digits = 2
cool_down_seconds = 60
numbers = [
  { number = "+8617200000001", area_code = "010" },
  { number = "+8617200000002", area_code = "010" },
]

[[apps]]
name = "chat"
mode = "AXYB"
base_url = "{SIM}"
app_key = "k-axyb"
app_secret = "s-axyb"
rate_per_second = 10000
timeout_ms = 2000
numbers = [
  { number = "+8617300000001", area_code = "010" },
  { number = "+8617300000002", area_code = "010" },
  { number = "+8617300000003", area_code = "021" },
  { number = "+8617300000004", area_code = "021" },
]

[[apps]]
name = "local"
mode = "X"
max_bindings_per_x = 2
numbers = [
  { number = "+8617400000001", area_code = "010" },
  { number = "+8617400000002", area_code = "021" },
]
"#;

/// A running daemon; dropping it shuts it down.
pub struct Daemon {
    pub sim: Arc<Sim>,
    pub addr: String,
    pub clock: Arc<OffsetClock>,
    pub dir: Arc<tempfile::TempDir>,
    config_text: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Daemon {
    /// A simulator and a daemon with [`SIM_CONFIG`] and [`DAEMON_CONFIG`].
    pub async fn start() -> Daemon {
        Daemon::start_with(SIM_CONFIG, DAEMON_CONFIG).await
    }

    pub async fn start_with(sim_config: &str, daemon_config: &str) -> Daemon {
        let sim = Arc::new(Sim::start_with(sim_config).await);
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let text = daemon_config
            .replace("{SIM}", &sim.base_url)
            .replace("{STORE}", &dir.path().join("store").display().to_string());
        Daemon::launch(sim, dir, text, Arc::new(OffsetClock::default())).await
    }

    async fn launch(
        sim: Arc<Sim>,
        dir: Arc<tempfile::TempDir>,
        config_text: String,
        clock: Arc<OffsetClock>,
    ) -> Daemon {
        let config = Config::from_toml_str(&config_text, "test config", Vec::new())
            .expect("valid daemon config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(xpool::run_with_clock(
            config,
            listener,
            shutdown.clone().cancelled_owned(),
            clock.clone(),
        ));
        let daemon = Daemon {
            sim,
            addr,
            clock,
            dir,
            config_text,
            shutdown,
            task: Some(task),
        };
        daemon.wait_ready().await;
        daemon
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if Channel::from_shared(self.addr.clone())
                .unwrap()
                .connect()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("daemon did not start listening");
    }

    /// Shuts down cleanly (the store is flushed) and starts again on the same store.
    pub async fn restart(mut self) -> Daemon {
        let (sim, dir, text, clock) = (
            self.sim.clone(),
            self.dir.clone(),
            self.config_text.clone(),
            self.clock.clone(),
        );
        self.stop_inner().await;
        Daemon::launch(sim, dir, text, clock).await
    }

    /// Shuts down, runs `meanwhile` while it is down, and starts again on the same store.
    pub async fn restart_after(mut self, meanwhile: impl FnOnce()) -> Daemon {
        let (sim, dir, text, clock) = (
            self.sim.clone(),
            self.dir.clone(),
            self.config_text.clone(),
            self.clock.clone(),
        );
        self.stop_inner().await;
        meanwhile();
        Daemon::launch(sim, dir, text, clock).await
    }

    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("daemon stops within its grace period")
                .unwrap()
                .expect("daemon stops cleanly");
        }
    }

    pub async fn bindings(&self) -> BindingServiceClient<Channel> {
        BindingServiceClient::connect(self.addr.clone())
            .await
            .unwrap()
    }

    pub async fn pool(&self) -> PoolServiceClient<Channel> {
        PoolServiceClient::connect(self.addr.clone()).await.unwrap()
    }

    /// Every binding the daemon reports in `state` for `app`.
    pub async fn list(&self, app: &str, state: pb::BindingState) -> Vec<pb::Binding> {
        let mut client = self.bindings().await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_bindings(pb::ListBindingsRequest {
                    app: app.into(),
                    state: state.into(),
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            out.extend(page.bindings);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }
}

/// A Bind request for `app` with the given parties.
pub fn bind(app: &str, a: &str, b: Option<&str>) -> pb::BindRequest {
    pb::BindRequest {
        app: app.into(),
        party_a: a.into(),
        party_b: b.unwrap_or_default().into(),
        ..Default::default()
    }
}

pub fn party(i: u32) -> String {
    format!("+86139{i:08}")
}

/// Local ACTIVE bindings of `app` and the simulator's live bindings of `app_key` are the same
/// set of (subscription, x, a, b, y, extension).
pub async fn assert_local_equals_sim(d: &Daemon, app: &str, app_key: &str) {
    use std::collections::BTreeSet;
    let local: BTreeSet<(String, String, String, String, String, String)> = d
        .list(app, pb::BindingState::Active)
        .await
        .into_iter()
        .map(|b| {
            (
                b.subscription_id,
                b.x_number,
                b.party_a,
                b.party_b,
                b.y_number,
                b.extension,
            )
        })
        .collect();
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let remote: BTreeSet<_> = d
        .sim
        .bindings(app_key)
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
        .collect();
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
