//! A daemon (`xpool::Daemon`: build, recover, run — what `xpool::run_with_clock` does, keeping
//! its connection counts) in this process, on a listener bound to 127.0.0.1:0 and handed over,
//! over a temporary store, talking to its own simulator.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tonic::transport::Channel;
use xpool::config::Config;
use xpool::daemon::connections::ConnectionStats;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;
use xpool::lifecycle::OffsetClock;

use super::grpc::{list_bindings, reconcile_and_wait, wait_serving};
use super::running::Running;
use super::setup::Setup;
use super::sim::Sim;

/// Start-up (store open and recovery) until health says SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running daemon; dropping it shuts it down.
#[derive(Debug)]
pub struct Daemon {
    pub sim: Arc<Sim>,
    pub addr: String,
    pub clock: Arc<OffsetClock>,
    pub dir: Arc<tempfile::TempDir>,
    pub setup: Setup,
    /// The gRPC listener's connection counts.
    pub connections: Arc<ConnectionStats>,
    /// The push receiver, `http://127.0.0.1:PORT` (with [`Setup::receiver`]); the same port
    /// across restarts, since the simulator pushes there.
    pub receiver: Option<String>,
    /// The admin listener's port, when the setup's `[admin] listen` is `127.0.0.1:0` (bound by
    /// the harness, so that no other socket can take the port first).
    pub admin: Option<u16>,
    /// The daemon's `run`; shut down on drop.
    server: Running<anyhow::Error>,
}

impl Daemon {
    /// A simulator and a daemon with [`Setup::standard`].
    pub async fn start() -> Daemon {
        Daemon::start_with(Setup::standard()).await
    }

    /// Starts a daemon with [`Setup::standard`], runs `test` on it, and stops it cleanly.
    pub async fn run(test: impl AsyncFnOnce(&Daemon)) {
        let d = Daemon::start().await;
        test(&d).await;
        d.stop().await;
    }

    /// [`Daemon::start`] and a client of its binding service.
    pub async fn start_with_client() -> (Daemon, BindingServiceClient<Channel>) {
        let d = Daemon::start().await;
        let c = d.bindings().await;
        (d, c)
    }

    /// A simulator and a daemon, both from `setup`. With [`Setup::receiver`], the daemon's
    /// push receiver is bound first, so that the simulator's apps can push to it.
    pub async fn start_with(setup: Setup) -> Daemon {
        let (setup, pushes) = if setup.has_receiver() {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            (setup.pushing_to(&base), Some(listener))
        } else {
            (setup, None)
        };
        let sim = Arc::new(Sim::start_with(&setup).await);
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Daemon::launch(sim, dir, setup, Arc::new(OffsetClock::default()), pushes).await
    }

    /// A listener on the receiver's port again, for a restart.
    async fn rebind(receiver: Option<&str>) -> Option<tokio::net::TcpListener> {
        let addr = receiver?.trim_start_matches("http://").to_owned();
        Some(tokio::net::TcpListener::bind(addr).await.unwrap())
    }

    async fn launch(
        sim: Arc<Sim>,
        dir: Arc<tempfile::TempDir>,
        setup: Setup,
        clock: Arc<OffsetClock>,
        pushes: Option<tokio::net::TcpListener>,
    ) -> Daemon {
        let text = setup.daemon_toml("127.0.0.1:0", &sim.base_url, &dir.path().join("store"));
        let config =
            Config::from_toml_str(&text, "test config", Vec::new()).expect("valid daemon config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let admin_listener = match config.admin.listen {
            Some(at) if at.port() == 0 => Some(tokio::net::TcpListener::bind(at).await.unwrap()),
            _ => None,
        };
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().unwrap().port());
        let run_clock: Arc<dyn xpool::lifecycle::Clock> = clock.clone();
        let receiver = pushes
            .as_ref()
            .map(|l| format!("http://{}", l.local_addr().unwrap()));
        let stats = Arc::new(OnceLock::new());
        let built = Arc::clone(&stats);
        let mut server = Running::spawn(|shutdown| async move {
            let mut daemon = xpool::Daemon::build(config, run_clock).await?;
            if let Some(listener) = pushes {
                daemon = daemon.with_push_listener(listener);
            }
            if let Some(listener) = admin_listener {
                daemon = daemon.with_admin_listener(listener);
            }
            let _ = built.set(Arc::clone(daemon.connection_stats()));
            daemon.recover().await;
            daemon.run(listener, shutdown).await
        });
        let ready = wait_serving(&addr, START_TIMEOUT, || server.is_finished().then_some(())).await;
        if ready.is_err() {
            panic!(
                "the daemon exited during start-up: {:?}",
                server.exit().await
            );
        }
        Daemon {
            sim,
            addr,
            clock,
            dir,
            setup,
            connections: Arc::clone(stats.get().expect("built before serving")),
            receiver,
            admin,
            server,
        }
    }

    /// Shuts down cleanly (the store is flushed) and starts again on the same store.
    pub async fn restart(self) -> Daemon {
        self.restart_after(|| {}).await
    }

    /// Shuts down, awaits `meanwhile` while it is down, and starts again on the same store.
    pub async fn restart_after_async(self, meanwhile: impl AsyncFnOnce()) -> Daemon {
        self.restart_after_inner(meanwhile).await
    }

    /// Shuts down, runs `meanwhile` while it is down, and starts again on the same store.
    pub async fn restart_after(self, meanwhile: impl FnOnce()) -> Daemon {
        self.restart_after_inner(async || meanwhile()).await
    }

    async fn restart_after_inner(mut self, meanwhile: impl AsyncFnOnce()) -> Daemon {
        let (sim, dir, setup, clock) = (
            self.sim.clone(),
            self.dir.clone(),
            self.setup.clone(),
            self.clock.clone(),
        );
        self.stop_inner().await;
        meanwhile().await;
        let pushes = Daemon::rebind(self.receiver.as_deref()).await;
        Daemon::launch(sim, dir, setup, clock, pushes).await
    }

    /// Shuts down, which must fail (the store could not be closed), runs `meanwhile` while it is
    /// down, and starts again on the same store; the error the stop returned.
    pub async fn restart_after_failed_stop(
        mut self,
        meanwhile: impl FnOnce(),
    ) -> (anyhow::Error, Daemon) {
        let (sim, dir, setup, clock) = (
            self.sim.clone(),
            self.dir.clone(),
            self.setup.clone(),
            self.clock.clone(),
        );
        let stopped = self
            .server
            .stop_with(Duration::from_secs(15), "the daemon")
            .await;
        let error = stopped.expect_err("the stop failed");
        meanwhile();
        let pushes = Daemon::rebind(self.receiver.as_deref()).await;
        (error, Daemon::launch(sim, dir, setup, clock, pushes).await)
    }

    /// Shuts down and waits for a clean exit within the grace period.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        self.server
            .stop(Duration::from_secs(15), "the daemon")
            .await;
    }

    pub async fn bindings(&self) -> BindingServiceClient<Channel> {
        BindingServiceClient::connect(self.addr.clone())
            .await
            .unwrap()
    }

    pub async fn pool(&self) -> PoolServiceClient<Channel> {
        PoolServiceClient::connect(self.addr.clone()).await.unwrap()
    }

    pub async fn reconciler(&self) -> ReconcileServiceClient<Channel> {
        ReconcileServiceClient::connect(self.addr.clone())
            .await
            .unwrap()
    }

    /// Starts a reconciliation run of `req`, which must be accepted, and follows it to its
    /// final state (see [`reconcile_and_wait`]); the run then.
    pub async fn reconcile_and_wait(&self, req: pb::ReconcileRequest) -> pb::ReconcileRun {
        reconcile_and_wait(&mut self.reconciler().await, req).await
    }

    /// Reconciles `app` (all apps: empty) to the end; the run.
    pub async fn reconcile(&self, app: &str) -> pb::ReconcileRun {
        self.reconcile_and_wait(pb::ReconcileRequest {
            app: app.into(),
            numbers: Vec::new(),
            dry_run: false,
        })
        .await
    }

    /// Binds, which must succeed.
    pub async fn bind_ok(&self, req: pb::BindRequest) -> pb::Binding {
        let what = format!("Bind {req:?}");
        must(&what, self.bindings().await.bind(req).await)
    }

    /// Binds, which must be refused with `code`; the refusal.
    pub async fn bind_refused(&self, req: pb::BindRequest, code: tonic::Code) -> tonic::Status {
        let what = format!("Bind {req:?}");
        match self.bindings().await.bind(req).await {
            Ok(b) => panic!("{what}: accepted: {:?}", b.into_inner()),
            Err(s) => {
                assert_eq!(s.code(), code, "{what}: {s:?}");
                s
            }
        }
    }

    /// Unbinds by binding id, which must succeed.
    pub async fn unbind_ok(&self, binding_id: &str) -> pb::Binding {
        let req = pb::UnbindRequest::by_id(binding_id);
        must(binding_id, self.bindings().await.unbind(req).await)
    }

    /// The binding with this id, which must exist.
    pub async fn get(&self, binding_id: &str) -> pb::Binding {
        let req = pb::GetBindingRequest::by_id(binding_id);
        must(binding_id, self.bindings().await.get_binding(req).await)
    }

    /// The binding of `app` made under `request_id`, which must exist.
    pub async fn get_by_request(&self, app: &str, request_id: &str) -> pb::Binding {
        let req = pb::GetBindingRequest::by_request(app, request_id);
        let what = format!("{app} request {request_id}");
        must(&what, self.bindings().await.get_binding(req).await)
    }

    /// The state of the binding with this id.
    pub async fn state(&self, binding_id: &str) -> pb::BindingState {
        self.get(binding_id).await.state()
    }

    /// GetPoolStats of `app`, which must succeed.
    pub async fn pool_stats(&self, app: &str) -> pb::GetPoolStatsResponse {
        let req = pb::GetPoolStatsRequest { app: app.into() };
        must(app, self.pool().await.get_pool_stats(req).await)
    }

    /// Every binding the daemon reports in `state` for `app`.
    pub async fn list(&self, app: &str, state: pb::BindingState) -> Vec<pb::Binding> {
        list_bindings(&mut self.bindings().await, app, state).await
    }
}

/// The answer of a call that must succeed; `what` names it otherwise.
#[track_caller]
fn must<T>(what: &str, result: Result<tonic::Response<T>, tonic::Status>) -> T {
    match result {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("{what}: {s:?}"),
    }
}
