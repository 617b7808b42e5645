//! The `xpool` binary's process life: signals and when the port opens. Each test runs the built
//! binary in a temporary directory and talks to it only over gRPC and signals.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use crate::support::process::logged_addr;
use crate::support::{health_of, xpool_serve};

/// Longest start-up or shutdown of a debug build on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A daemon child; dropping it SIGKILLs it, so a failing test leaves none behind.
struct Child {
    proc: tokio::process::Child,
    pid: u32,
    addr: String,
    port: u16,
}

impl Child {
    /// `xpool serve` in `dir` with `args` and `env`, listening on `port` (0: any, read back with
    /// [`Child::bound`]), logging to `dir/<log>`.
    fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)], port: u16, log: &str) -> Child {
        let mut cmd = xpool_serve(&dir.join(log));
        cmd.args(args).current_dir(dir);
        cmd.env("XPOOL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied());
        let proc = cmd.spawn().expect("spawning the xpool binary");
        let pid = proc.id().unwrap();
        Child {
            proc,
            pid,
            addr: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Learns the port a child spawned on port 0 bound, from its log: a port picked free
    /// beforehand could be taken by another test before the child binds it.
    async fn bound(mut self, dir: &Path, log: &str) -> Child {
        let addr = logged_addr(&dir.join(log), "gRPC server listening").await;
        self.port = addr.port();
        self.addr = format!("http://{addr}");
        self
    }

    /// The server's overall health status, `None` if it cannot be asked.
    async fn health(&self) -> Option<ServingStatus> {
        health_of(&self.addr, "").await
    }

    async fn wait_serving(&mut self, dir: &Path, log: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.proc.try_wait().unwrap() {
                panic!(
                    "daemon exited during start-up ({status}):\n{}",
                    read(dir, log)
                );
            }
            if self.health().await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "daemon did not serve within {PATIENCE:?}:\n{}",
            read(dir, log)
        );
    }

    fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("running kill(1)");
        assert!(sent.success(), "kill -{name} {} failed", self.pid);
    }

    async fn exit_status(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(PATIENCE, self.proc.wait())
            .await
            .expect("the daemon exits in time")
            .unwrap()
    }
}

fn read(dir: &Path, log: &str) -> String {
    std::fs::read_to_string(dir.join(log)).unwrap_or_default()
}

/// README's first command: `xpool serve` with no config runs the embedded default (simulator
/// in-process). SIGHUP leaves it serving; SIGTERM turns health NOT_SERVING for the configured
/// delay while calls still work, then it exits 0.
#[tokio::test]
async fn sighup_is_survived_and_sigterm_drains_after_the_not_serving_delay() {
    let dir = tempfile::tempdir().unwrap();
    let log = "serve.log";
    let env = [
        ("XPOOL__SERVER__SHUTDOWN_DELAY_SECONDS", "5"),
        // Beside other tests of the embedded default: not its fixed receiver port.
        ("XPOOL__CALLBACKS__LISTEN", "127.0.0.1:0"),
    ];
    let mut child = Child::spawn(dir.path(), &[], &env, 0, log)
        .bound(dir.path(), log)
        .await;
    child.wait_serving(dir.path(), log).await;

    // A bind through the embedded simulator works.
    let channel = Channel::from_shared(child.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bindings = BindingServiceClient::new(channel);
    let request = |b: &str| pb::BindRequest {
        app: "demo-axb".into(),
        party_a: "+8613800000001".into(),
        party_b: b.into(),
        ..Default::default()
    };
    bindings.bind(request("+8613800000002")).await.unwrap();

    child.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.proc.try_wait().unwrap().is_none(),
        "SIGHUP ended the daemon:\n{}",
        read(dir.path(), log)
    );
    assert_eq!(child.health().await, Some(ServingStatus::Serving));
    assert!(read(dir.path(), log).contains("SIGHUP received"));

    child.signal("TERM");
    let terminated = Instant::now();
    let deadline = terminated + Duration::from_secs(4);
    let mut not_serving = false;
    while Instant::now() < deadline && !not_serving {
        not_serving = child.health().await == Some(ServingStatus::NotServing);
    }
    assert!(not_serving, "health never said NOT_SERVING after SIGTERM");
    // Still serving calls during the delay, on the connection a client already has.
    bindings.bind(request("+8613800000003")).await.unwrap();

    let status = child.exit_status().await;
    assert!(
        status.success(),
        "exit {status} after SIGTERM:\n{}",
        read(dir.path(), log)
    );
    assert!(
        terminated.elapsed() >= Duration::from_secs(5),
        "exited before the delay was over"
    );
    assert!(dir.path().join("xpool-data").exists());
}

/// A binding left PENDING (the platform never answered) is resolved at start-up before the
/// port is bound: while recovery waits on the silent platform, connections are refused
/// instead of hanging, and health answers SERVING once the port is open.
#[tokio::test]
async fn the_port_opens_only_after_recovery() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let timeout_ms = 1500;
    std::fs::write(
        dir.path().join("xpool.toml"),
        format!(
            "[server]\nshutdown_delay_seconds = 0\nshutdown_grace_seconds = 5\n\
             [store]\npath = \"store\"\n\
             [[apps]]\nname = \"rides\"\nmode = \"AXB\"\nbase_url = \"{silent_url}\"\n\
             app_key = \"k\"\napp_secret = \"s\"\ntimeout_ms = {timeout_ms}\n\
             numbers = [{{ number = \"+8617000000001\", area_code = \"010\" }}]\n"
        ),
    )
    .unwrap();
    let args = ["--config", "xpool.toml"];

    let mut first = Child::spawn(dir.path(), &args, &[], 0, "first.log")
        .bound(dir.path(), "first.log")
        .await;
    first.wait_serving(dir.path(), "first.log").await;
    // The second daemon takes the port the first bound: the test must know it before it is
    // bound, to see it refused while recovery runs. (Another test could take it in between,
    // as it could a port picked free; the window is the first daemon's stop.)
    let port = first.port;
    let channel = Channel::from_shared(first.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let lost = BindingServiceClient::new(channel)
        .bind(pb::BindRequest {
            app: "rides".into(),
            party_a: "+8613800000001".into(),
            party_b: "+8613800000002".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(lost.code(), tonic::Code::Unavailable, "{lost:?}");
    first.signal("TERM");
    assert!(first.exit_status().await.success());
    drop(first);

    let mut second = Child::spawn(dir.path(), &args, &[], port, "second.log");
    let started = Instant::now();
    let mut refused_while_running = false;
    let opened = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "the port never opened:\n{}",
            read(dir.path(), "second.log")
        );
        if let Some(status) = second.proc.try_wait().unwrap() {
            panic!(
                "exited during start-up ({status}):\n{}",
                read(dir.path(), "second.log")
            );
        }
        match std::net::TcpStream::connect(("127.0.0.1", second.port)) {
            Ok(_) => break started.elapsed(),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
                refused_while_running |= read(dir.path(), "second.log").contains("store open");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = read(dir.path(), "second.log");
    assert!(
        refused_while_running,
        "the port was never refused after the store opened:\n{text}"
    );
    // Recovery asked the silent platform and waited out its timeout first.
    assert!(
        opened >= Duration::from_millis(timeout_ms),
        "opened after {opened:?}:\n{text}"
    );
    second.wait_serving(dir.path(), "second.log").await;
    let text = read(dir.path(), "second.log");
    let recovered = text.find("could not be resolved at start-up");
    let listening = text.find("gRPC server listening");
    assert!(
        matches!((recovered, listening), (Some(r), Some(l)) if r < l),
        "recovery did not finish before listening:\n{text}"
    );
    second.signal("TERM");
    assert!(second.exit_status().await.success());
}

/// A reconciliation run in flight (here waiting on a platform that never answers) stops when
/// shutdown begins, and the run queued behind it never starts: both end CANCELLED, their Watch
/// streams end with that state, and the daemon exits long before the grace period or the
/// call timeout.
#[tokio::test]
async fn a_running_reconciliation_stops_at_shutdown() {
    use tokio_util::sync::CancellationToken;
    use xpool::grpc::pb::ReconcileRunState as State;
    use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;

    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nshutdown_delay_seconds = 0\nshutdown_grace_seconds = 30\n\
         [store]\npath = \"{}\"\n\
         [[apps]]\nname = \"rides\"\nmode = \"AXB\"\nbase_url = \"http://{}\"\n\
         app_key = \"k\"\napp_secret = \"s\"\ntimeout_ms = 60000\n\
         numbers = [{{ number = \"+8617000000001\", area_code = \"010\" }}]\n",
        dir.path().join("store").display(),
        silent.local_addr().unwrap(),
    );
    let config = xpool::config::Config::from_toml_str(&text, "test config", Vec::new()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(xpool::run(
        config,
        listener,
        shutdown.clone().cancelled_owned(),
    ));

    let channel = Channel::from_shared(addr).unwrap().connect().await.unwrap();
    let mut client = ReconcileServiceClient::new(channel);
    let req = pb::ReconcileRequest {
        app: "rides".into(),
        ..Default::default()
    };
    let first = client.reconcile(req.clone()).await.unwrap().into_inner();
    let second = client.reconcile(req).await.unwrap().into_inner();
    assert_eq!(second.state(), State::Queued, "{second:?}");
    let mut first = watch(&mut client, &first.run_id).await;
    // The first run starts, and waits on the silent platform.
    loop {
        let run = first
            .message()
            .await
            .unwrap()
            .expect("the watch ends after the run");
        match run.state() {
            State::Queued => {}
            State::Running => break,
            _ => panic!("{run:?}"),
        }
    }
    let mut second = watch(&mut client, &second.run_id).await;
    let queued = second.message().await.unwrap().unwrap();
    assert_eq!(queued.state(), State::Queued, "{queued:?}");

    let stopping = Instant::now();
    shutdown.cancel();
    for (stream, started) in [(&mut first, true), (&mut second, false)] {
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            let mut last = None;
            while let Some(run) = stream.message().await.unwrap() {
                last = Some(run);
            }
            last.expect("the final state is sent")
        })
        .await
        .expect("the runs end at shutdown");
        assert_eq!(end.state(), State::Cancelled, "{end:?}");
        assert_eq!(end.start_time.is_some(), started, "{end:?}");
        assert!(end.end_time.is_some(), "{end:?}");
    }
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("the daemon stops long before its grace period")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(10));
}

/// A WatchReconcileRun stream of run `run_id`.
async fn watch(
    client: &mut xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient<Channel>,
    run_id: &str,
) -> tonic::Streaming<pb::ReconcileRun> {
    let req = pb::WatchReconcileRunRequest {
        run_id: run_id.into(),
    };
    client.watch_reconcile_run(req).await.unwrap().into_inner()
}
