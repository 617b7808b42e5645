//! The daemon's logs as an operator's collector reads them: with `[log] format = "json"` one
//! JSON object a line, a call's lines carrying its span (method and `x-request-id`); as text
//! written to a file, no terminal colour codes.

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
