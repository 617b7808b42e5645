//! `[log] otlp_endpoint` (cargo feature `otlp`): the `xpool` binary exports a call's span to a
//! collector, and one that is down costs neither latency nor a clean exit.
//!
//! The collector is a fake: opentelemetry-proto's TraceService on 127.0.0.1:0, keeping what it
//! is sent. Run with `cargo test --features otlp --test otlp`; without the feature cargo skips
//! it (`required-features`; the default build's refusal of the key is tested in
//! `src/config/tests/log.rs` and `tests/daemon/logs.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Server};
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

/// The bearer token the test calls with; it must reach no span.
const TOKEN: &str = "otlp-test-token-Zq9-SECRET-7731";
/// Start-up, a call, or the spans' arrival, at most.
const WAIT: Duration = Duration::from_secs(30);

/// A collector that keeps every export it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on 127.0.0.1:0 until `stop`; returns its `http://…` endpoint.
    async fn start(&self, stop: CancellationToken) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned()),
        );
        format!("http://{addr}")
    }

    /// Every span received, each with the attributes of its export's resource.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let received = self.received.lock().unwrap();
        let mut spans = Vec::new();
        for export in received.iter() {
            for resource_spans in &export.resource_spans {
                let resource = resource_spans.resource.clone().unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push((resource.attributes.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

fn string_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    let attribute = attributes.iter().find(|kv| kv.key == key)?;
    match attribute.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// The daemon's config: an X-mode app (no platform) with three numbers, a bearer token, spans
/// to `endpoint`.
fn config(dir: &Path, endpoint: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_delay_seconds = 0
shutdown_grace_seconds = 2
[store]
path = "{store}"
[log]
otlp_endpoint = "{endpoint}"
otlp_service_name = "xpool-otlp-test"
[auth]
[[auth.tokens]]
name = "rides"
token_sha256 = "{hash}"
scopes = ["bind:local"]
[[apps]]
name = "local"
mode = "X"
numbers = [
  {{ number = "+8617000000001", area_code = "010" }},
  {{ number = "+8617000000002", area_code = "010" }},
  {{ number = "+8617000000003", area_code = "010" }},
]
"#,
        store = dir.join("store").display(),
        hash = xpool::auth::sha256_hex(TOKEN.as_bytes()),
    )
}

/// `xpool serve` on `config`, logging into `dir/daemon.log`, killed when dropped.
struct Daemon {
    child: tokio::process::Child,
    log: std::path::PathBuf,
    addr: String,
}

impl Daemon {
    async fn start(dir: &Path, config: &str) -> Daemon {
        let path = dir.join("xpool.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("daemon.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .env("XPOOL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true);
        for (key, _) in std::env::vars() {
            if key.starts_with("XPOOL__") || key.starts_with("OTEL_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("spawning the xpool binary");
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = support::listening_addr(&log) {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the daemon exited during start-up ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "no listening line:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Daemon { child, log, addr }
    }

    /// A Bind with the token, of parties `2i+1` and `2i+2`; how long it took.
    async fn bind(&self, i: u32) -> Duration {
        let channel = Channel::from_shared(self.addr.clone()).unwrap();
        let channel = tokio::time::timeout(WAIT, channel.connect())
            .await
            .unwrap()
            .unwrap();
        let mut client = BindingServiceClient::new(channel);
        let mut request = tonic::Request::new(pb::BindRequest {
            app: "local".to_owned(),
            party_a: format!("+86139{:08}", 2 * i + 1),
            party_b: format!("+86139{:08}", 2 * i + 2),
            area_code: "010".to_owned(),
            ..Default::default()
        });
        let metadata = request.metadata_mut();
        metadata.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let request_id = format!("otlp-req-{i}");
        metadata.insert("x-request-id", request_id.parse().unwrap());
        let started = Instant::now();
        let bound = tokio::time::timeout(WAIT, client.bind(request)).await;
        let took = started.elapsed();
        let binding = bound.expect("Bind in time").expect("Bind").into_inner();
        assert!(binding.x_number.starts_with("+861700000000"), "{binding:?}");
        took
    }

    /// SIGTERM; the exit status and how long the exit took.
    async fn stop(mut self) -> (std::process::ExitStatus, Duration, String) {
        let pid = self.child.id().unwrap().to_string();
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exit in time")
            .unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap();
        (status, started.elapsed(), log)
    }
}

#[tokio::test]
async fn a_binds_span_reaches_the_collector_with_its_method_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::default();
    let stop = CancellationToken::new();
    let endpoint = collector.start(stop.clone()).await;
    let daemon = Daemon::start(dir.path(), &config(dir.path(), &endpoint)).await;
    daemon.bind(0).await;
    // The batch is sent at exit at the latest (the flush), so no waiting for its schedule.
    let (status, _, log) = daemon.stop().await;
    assert!(status.success(), "{status}:\n{log}");
    assert!(
        log.contains("exporting spans to an OpenTelemetry collector"),
        "{log}"
    );

    let spans = collector.spans();
    let bind_method = "/xpool.v1.BindingService/Bind";
    let (resource, span) = spans
        .iter()
        .find(|(_, span)| string_of(&span.attributes, "method").as_deref() == Some(bind_method))
        .unwrap_or_else(|| panic!("no span of the Bind among {spans:#?}\n{log}"));
    assert_eq!(span.name, "grpc");
    assert_eq!(
        string_of(&span.attributes, "request_id").as_deref(),
        Some("otlp-req-0")
    );
    assert_eq!(
        string_of(resource, "service.name").as_deref(),
        Some("xpool-otlp-test")
    );
    assert_eq!(
        string_of(resource, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    // No token, in any span, attribute or event.
    let everything = format!("{:?}", collector.received.lock().unwrap());
    assert!(!everything.contains(TOKEN), "the bearer token was exported");
    assert!(
        !everything.contains("Bearer"),
        "an authorization header was exported"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_collector_that_is_down_costs_spans_not_latency_or_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let daemon = Daemon::start(dir.path(), &config(dir.path(), &endpoint)).await;
    for _ in 0..3 {
        let took = daemon.bind(0).await;
        assert!(took < Duration::from_secs(2), "a Bind took {took:?}");
    }
    let (status, took, log) = daemon.stop().await;
    assert!(status.success(), "{status}:\n{log}");
    // The grace period (2 s) and the flush's bound (5 s), with slack for a loaded machine.
    assert!(
        took < Duration::from_secs(12),
        "the exit took {took:?}:\n{log}"
    );
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("could not be exported to the OpenTelemetry collector"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "reported once (at most once a minute):\n{log}"
    );
    assert!(warnings[0].contains("dropped_spans=3"), "{log}");
}

#[tokio::test]
async fn a_collector_that_never_answers_holds_up_neither_calls_nor_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    let daemon = Daemon::start(dir.path(), &config(dir.path(), &endpoint)).await;
    for i in 0..3 {
        let took = daemon.bind(i).await;
        assert!(took < Duration::from_secs(2), "a Bind took {took:?}");
    }
    let (status, took, log) = daemon.stop().await;
    assert!(status.success(), "{status}:\n{log}");
    // The grace period (2 s) and the flush's bound (5 s), with slack for a loaded machine.
    assert!(
        took < Duration::from_secs(12),
        "the exit took {took:?}:\n{log}"
    );
    held.abort();
}
