//! Callers with bearer tokens (`[auth]`), against the built binary: no token or an unknown one
//! is UNAUTHENTICATED, a token without the scope a call needs is PERMISSION_DENIED naming it,
//! each scope allows what it says on every service, a token over its rate is
//! RESOURCE_EXHAUSTED with a retry hint, health stays open, `xpool reconcile --token` works,
//! and no token ever reaches the log or the metrics.

use std::time::Duration;

use tonic::Code;
use tonic::metadata::MetadataValue;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::call_service_client::CallServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;
use xpool::grpc::pb::store_service_client::StoreServiceClient;
use xpool::grpc::pb::watch_service_client::WatchServiceClient;

use crate::support::*;

const RIDES: &str = "xpool_rides-api-token-0123456789abcdef";
const READER: &str = "xpool_reader-token-0123456789abcdef";
const OPS: &str = "xpool_ops-token-0123456789abcdef";
const LIMITED: &str = "xpool_limited-token-0123456789abcdef";

/// Two apps (AXB `rides` on the simulator, X-mode `local`), four tokens, the admin listener
/// on a port of the daemon's choosing.
fn setup() -> Setup {
    let token = |name: &str, token: &str, scopes: &str, extra: &str| {
        format!(
            "[[auth.tokens]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nscopes = {scopes}\n{extra}",
            xpool::auth::sha256_hex(token.as_bytes())
        )
    };
    let auth = [
        "[auth]\n".to_owned(),
        token("rides-api", RIDES, r#"["bind:rides"]"#, ""),
        token("reader", READER, r#"["read:local"]"#, ""),
        token("ops", OPS, r#"["admin"]"#, ""),
        token("limited", LIMITED, r#"["read:*"]"#, "rate_per_second = 1\n"),
    ]
    .concat();
    Setup::standard()
        .only(&["rides", "local"])
        .daemon_section(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n{auth}"))
}

/// `message` carrying `token` the way gRPC clients send call credentials.
fn with<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

fn get(binding_id: &str) -> pb::GetBindingRequest {
    pb::GetBindingRequest::by_id(binding_id)
}

fn calls_of(app: &str) -> pb::ListCallRecordsRequest {
    pb::ListCallRecordsRequest {
        app: app.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_call_needs_a_known_token_with_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup();
    let sim = Sim::start_with(&setup).await;
    let daemon = DaemonProcess::spawn(dir.path(), &setup, &sim.base_url, 1, &[]).await;
    let admin = daemon.admin_port().await;
    let channel = daemon.channel().await;
    let mut bindings = BindingServiceClient::new(channel.clone());
    let mut pool = PoolServiceClient::new(channel.clone());
    let mut calls = CallServiceClient::new(channel.clone());

    // Health stays open: probes and load balancers carry no token.
    assert_eq!(
        health(&daemon.addr).await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );

    let health_cli = within(
        "xpool health",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"))
            .args(["health", "--server", &daemon.addr])
            .env_remove("XPOOL_TOKEN")
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(health_cli.status.code(), Some(0), "{health_cli:?}");
    assert_eq!(String::from_utf8_lossy(&health_cli.stdout), "SERVING\n");

    // No token, a malformed one, an unknown one: UNAUTHENTICATED, nothing bound.
    let refused = rpc(
        "Bind",
        bindings.bind(bind("rides", &party(1), Some(&party(2)))),
    )
    .await
    .unwrap_err();
    assert_reason(&refused, Code::Unauthenticated, "UNAUTHENTICATED", &[]);
    assert!(refused.message().contains("Bearer"), "{refused:?}");
    let mut basic = tonic::Request::new(bind("rides", &party(1), Some(&party(2))));
    basic
        .metadata_mut()
        .insert("authorization", "Basic b3BzOm9wcw==".parse().unwrap());
    let refused = rpc("Bind", bindings.bind(basic)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let unknown = format!("{RIDES}x");
    let refused = rpc(
        "Bind",
        bindings.bind(with(&unknown, bind("rides", &party(1), Some(&party(2))))),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        sim.bindings("k-axb").await.is_empty(),
        "nothing reached the platform"
    );

    // bind:rides binds and reads rides, and nothing else.
    let ride = rpc(
        "Bind",
        bindings.bind(with(RIDES, bind("rides", &party(1), Some(&party(2))))),
    )
    .await
    .unwrap();
    let got = rpc(
        "GetBinding",
        bindings.get_binding(with(RIDES, get(&ride.binding_id))),
    )
    .await
    .unwrap();
    assert_eq!(got.binding_id, ride.binding_id);
    let refused = rpc(
        "Bind",
        bindings.bind(with(RIDES, bind("local", &party(3), Some(&party(4))))),
    )
    .await
    .unwrap_err();
    assert_reason(
        &refused,
        Code::PermissionDenied,
        "SCOPE_REQUIRED",
        &[("scope", "bind:local"), ("caller", "rides-api")],
    );
    let add = pb::AddNumbersRequest {
        app: "local".into(),
        numbers: vec![pb::NumberSpec {
            number: "+8617400000099".into(),
            area_code: "010".into(),
        }],
    };
    let refused = rpc("AddNumbers", pool.add_numbers(with(RIDES, add.clone())))
        .await
        .unwrap_err();
    assert_reason(
        &refused,
        Code::PermissionDenied,
        "SCOPE_REQUIRED",
        &[("scope", "admin")],
    );
    let apps = rpc(
        "ListApps",
        pool.list_apps(with(RIDES, pb::ListAppsRequest::default())),
    )
    .await
    .unwrap();
    let names: Vec<&str> = apps.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["rides"], "only the apps the token may read");

    // admin does everything; read:local reads local but changes nothing.
    let chat = rpc(
        "Bind",
        bindings.bind(with(OPS, bind("local", &party(3), Some(&party(4))))),
    )
    .await
    .unwrap();
    rpc("AddNumbers", pool.add_numbers(with(OPS, add)))
        .await
        .unwrap();
    let got = rpc(
        "GetBinding",
        bindings.get_binding(with(READER, get(&chat.binding_id))),
    )
    .await
    .unwrap();
    assert_eq!(got.party_a, party(3));
    let refused = rpc(
        "GetBinding",
        bindings.get_binding(with(READER, get(&ride.binding_id))),
    )
    .await
    .unwrap_err();
    assert_reason(
        &refused,
        Code::PermissionDenied,
        "SCOPE_REQUIRED",
        &[("scope", "read:rides")],
    );
    let unbind = pb::UnbindRequest::by_id(&chat.binding_id);
    let refused = rpc("Unbind", bindings.unbind(with(READER, unbind.clone())))
        .await
        .unwrap_err();
    assert_reason(
        &refused,
        Code::PermissionDenied,
        "SCOPE_REQUIRED",
        &[("scope", "bind:local")],
    );
    assert_eq!(
        rpc(
            "GetBinding",
            bindings.get_binding(with(OPS, get(&chat.binding_id)))
        )
        .await
        .unwrap()
        .state(),
        pb::BindingState::Active,
        "the refused Unbind changed nothing"
    );
    rpc(
        "ListCallRecords",
        calls.list_call_records(with(READER, calls_of("local"))),
    )
    .await
    .unwrap();
    let refused = rpc(
        "ListCallRecords",
        calls.list_call_records(with(READER, calls_of(""))),
    )
    .await
    .unwrap_err();
    assert_reason(
        &refused,
        Code::PermissionDenied,
        "SCOPE_REQUIRED",
        &[("scope", "read:*")],
    );
    let stats = pb::GetPoolStatsRequest {
        app: "rides".into(),
    };
    let refused = rpc(
        "GetPoolStats",
        pool.get_pool_stats(with(READER, stats.clone())),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    rpc("GetPoolStats", pool.get_pool_stats(with(RIDES, stats)))
        .await
        .unwrap();

    // WatchService: read:local follows local, not every app; StoreService: admin only.
    let mut watch = WatchServiceClient::new(channel.clone());
    let local = pb::WatchRequest {
        apps: vec!["local".into()],
        ..Default::default()
    };
    rpc("Watch", watch.watch(with(READER, local)))
        .await
        .unwrap();
    let refused = rpc(
        "Watch",
        watch.watch(with(READER, pb::WatchRequest::default())),
    )
    .await
    .unwrap_err();
    assert_reason(
        &refused,
        Code::PermissionDenied,
        "SCOPE_REQUIRED",
        &[("scope", "read:*")],
    );
    let mut store = StoreServiceClient::new(channel.clone());
    let backup = pb::BackupRequest {
        dir: dir.path().join("backup").display().to_string(),
    };
    let refused = rpc("Backup", store.backup(with(RIDES, backup)))
        .await
        .unwrap_err();
    assert_reason(
        &refused,
        Code::PermissionDenied,
        "SCOPE_REQUIRED",
        &[("scope", "admin")],
    );
    assert!(
        !dir.path().join("backup").exists(),
        "the refused backup wrote nothing"
    );

    // A token over its rate_per_second: RESOURCE_EXHAUSTED with when to retry.
    let mut limited = Vec::new();
    for _ in 0..3 {
        limited.push(
            rpc(
                "ListCallRecords",
                calls.list_call_records(with(LIMITED, calls_of(""))),
            )
            .await,
        );
    }
    let over = limited
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("three calls at once are over a rate of 1 a second");
    assert_reason(
        over,
        Code::ResourceExhausted,
        "CALLER_RATE_LIMITED",
        &[("caller", "limited")],
    );
    assert!(refusal(over).retry.is_some(), "RetryInfo: {over:?}");
    assert!(over.metadata().get("retry-after-ms").is_some(), "{over:?}");

    // The reconcile client sends its token: without one it is refused (exit 2).
    // (A child process, awaited: the simulator answers on this test's runtime.)
    let reconcile = async |token: Option<&str>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"));
        cmd.args(["reconcile", "--server", &daemon.addr, "--app", "rides"])
            .env_remove("XPOOL_TOKEN");
        if let Some(token) = token {
            cmd.env("XPOOL_TOKEN", token);
        }
        within("xpool reconcile", cmd.output()).await.unwrap()
    };
    let refused = reconcile(None).await;
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("Unauthenticated") || said.contains("token"),
        "{said}"
    );
    let wrong_scope = reconcile(Some(RIDES)).await;
    assert_eq!(wrong_scope.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong_scope.stderr).contains("admin"));
    let done = reconcile(Some(OPS)).await;
    assert!(
        done.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    let mut runs = ReconcileServiceClient::new(channel.clone());
    let refused = rpc(
        "ListReconcileRuns",
        runs.list_reconcile_runs(with(READER, pb::ListReconcileRunsRequest::default())),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Every refusal is counted by reason; no token is in the metrics or the log.
    let metrics = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |reason: &str| -> u64 {
        let series = format!("xpool_auth_refusals_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count("no_token") >= 2, "{metrics}");
    assert_eq!(count("malformed"), 1, "{metrics}");
    assert_eq!(count("unknown_token"), 1, "{metrics}");
    assert!(count("scope") >= 9, "{metrics}");
    assert!(count("rate_limited") >= 1, "{metrics}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(log.contains("call refused"), "refusals are logged:\n{log}");
    for token in [RIDES, READER, OPS, LIMITED, unknown.as_str(), "b3BzOm9wcw"] {
        assert!(!log.contains(token), "a token in the log:\n{log}");
        assert!(!metrics.contains(token), "a token in the metrics");
    }
    daemon.sigterm().await;
}

#[tokio::test]
async fn without_auth_a_daemon_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("xpool.toml");
    let text = Setup::standard().only(&["local"]).daemon_toml(
        "0.0.0.0:0",
        "http://127.0.0.1:9",
        &dir.path().join("store"),
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xpool"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("server.listen: 0.0.0.0:0 is not a loopback address and there is no [auth]"),
        "{said}"
    );
    assert!(
        !dir.path().join("store").exists(),
        "nothing was opened: {said}"
    );

    // --check-config says the same without starting; with `insecure` the config is valid.
    let check = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_xpool"))
            .args(["serve", "--check-config", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let refused = check(&config);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a loopback address"));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[server]\n", "[server]\ninsecure = true\n"),
    )
    .unwrap();
    let valid = check(&config);
    assert!(valid.status.success(), "{valid:?}");
    assert!(String::from_utf8_lossy(&valid.stdout).contains("valid; 1 app(s), gRPC on 0.0.0.0:0"));
    assert!(!dir.path().join("store").exists(), "checking opens nothing");
}
