//! The daemon's logs as an operator's collector reads them: with `[log] format = "json"` one
//! JSON object a line, a call's lines carrying its span (method and `x-request-id`); as text
//! written to a file, no terminal colour codes; and a build without the `otlp` feature refuses
//! `[log] otlp_endpoint` (tests/otlp.rs tests the export itself).

use serde_json::Value;
use xpool::grpc::pb;
use xpool::grpc::pb::store_service_client::StoreServiceClient;

use crate::support::*;

fn setup() -> Setup {
    Setup::standard().only(&["local"])
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_and_group_a_call_by_its_span() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup().daemon_section("[log]\nformat = \"json\"\n");
    let daemon = DaemonProcess::spawn(dir.path(), &setup, "http://127.0.0.1:9", 1, &[]).await;
    let backup = dir.path().join("backup");
    let mut req = tonic::Request::new(pb::BackupRequest {
        dir: backup.display().to_string(),
    });
    req.metadata_mut()
        .insert("x-request-id", "req-7f3a".parse().unwrap());
    let mut store = StoreServiceClient::new(daemon.channel().await);
    rpc("Backup", store.backup(req)).await.unwrap();
    daemon.sigterm().await;

    let log = std::fs::read_to_string(dir.path().join("daemon-01.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() > 5, "{log}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(line.get(key).is_some(), "{key} in {line}");
        }
    }
    let backed_up = lines
        .iter()
        .find(|l| l["fields"]["message"] == "store backed up")
        .unwrap_or_else(|| panic!("the backup's line:\n{log}"));
    assert_eq!(backed_up["level"], "INFO");
    assert_eq!(backed_up["span"]["name"], "grpc", "{backed_up}");
    assert_eq!(backed_up["span"]["method"], "/xpool.v1.StoreService/Backup");
    assert_eq!(backed_up["span"]["request_id"], "req-7f3a");
    assert!(!log.contains('\u{1b}'), "no colour codes");
}

#[tokio::test]
async fn text_logs_written_to_a_file_carry_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProcess::spawn(dir.path(), &setup(), "http://127.0.0.1:9", 1, &[]).await;
    daemon.sigterm().await;
    let log = std::fs::read_to_string(dir.path().join("daemon-01.log")).unwrap();
    assert!(log.contains("gRPC server listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log:?}");
}

/// A build without the `otlp` feature refuses `[log] otlp_endpoint`, from the file or the
/// environment, in `--check-config` and at start, naming the key and the feature: never
/// serving with the spans silently not exported.
#[cfg(not(feature = "otlp"))]
#[tokio::test]
async fn otlp_endpoint_is_refused_without_the_otlp_feature() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let plain = setup().daemon_toml("127.0.0.1:0", "http://127.0.0.1:9", &store);
    let with_endpoint = format!("{plain}\n[log]\notlp_endpoint = \"http://127.0.0.1:4317\"\n");
    let config = dir.path().join("xpool.toml");
    let runs = [
        (&with_endpoint, vec!["--check-config"], None),
        (&with_endpoint, vec![], None),
        (
            &plain,
            vec!["--check-config"],
            Some("http://127.0.0.1:4317"),
        ),
        (&plain, vec![], Some("http://127.0.0.1:4317")),
    ];
    for (text, args, env) in runs {
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("refused.log");
        let mut cmd = xpool_serve(&log);
        cmd.arg("--config").arg(&config).args(&args);
        if let Some(endpoint) = env {
            cmd.env("XPOOL__LOG__OTLP_ENDPOINT", endpoint);
        }
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.status())
            .await
            .expect("refused at once")
            .unwrap();
        let output = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(1), "{args:?} {env:?}:\n{output}");
        assert!(
            output.contains("log.otlp_endpoint: is set, but this xpool was built without")
                && output.contains("--features otlp"),
            "{args:?} {env:?}:\n{output}"
        );
        assert!(!output.contains("listening"), "{output}");
    }
}
