//! A daemon killed between taking a push and answering it (its write waits on a disk that does
//! not answer): the platform retries what it got no answer for, and each record is stored once.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::json;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::call_service_client::CallServiceClient;
use xpool::store::faults::FAULTS_FILE_ENV;

use super::*;

/// Replaces the daemon's faults file with `text`, as version `version` (its own modification
/// time, so the daemon never mistakes it for the one it read).
fn write_faults(file: &Path, text: &str, version: u64) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(version))
        .unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

#[tokio::test]
async fn a_push_cut_off_by_a_crash_is_stored_once_when_the_platform_retries() {
    let dir = tempfile::tempdir().unwrap();
    // The daemon child binds it itself, twice: the simulator must reach the restarted daemon
    // at the same URL.
    let port = crate::support::free_port();
    let setup = Setup::new(vec![
        App::new("rides", "k-axb", "AXB").numbers(8617000000001, &["010"]),
    ])
    .callbacks("listen", format!("127.0.0.1:{port}"))
    .pushing_to(&format!("http://127.0.0.1:{port}"))
    .sim_section("[push]\ntimeout_ms = 500\n");
    let sim = Sim::start_with(&setup).await;
    let faults = dir.path().join("faults");
    write_faults(&faults, "", 1);
    let env = [(FAULTS_FILE_ENV, faults.as_os_str())];
    let daemon = DaemonProcess::spawn(dir.path(), &setup, &sim.base_url, 1, &env).await;
    let (a, b) = (party(1), party(2));
    let mut bindings = BindingServiceClient::new(daemon.channel().await);
    let bound = rpc("Bind", bindings.bind(bind("rides", &a, Some(&b))))
        .await
        .unwrap();

    // The disk stops answering: each push of the call is taken and written to the log, and
    // its answer waits for a sync that does not come; the simulator gives up on each.
    write_faults(&faults, "LogSync Stall Always\n", 2);
    let body = json!({"app_key": "k-axb", "from": a, "to": bound.x_number, "talk_seconds": 60});
    let played = sim.control_post("/sim/call", body).await;
    assert_eq!(played["stateCode"], 0, "{played}");
    let pushes = sim.control_get("/sim/pushes?app_key=k-axb").await;
    let list = pushes["pushes"].as_array().unwrap();
    assert_eq!(list.len(), 5, "the call's five events: {pushes}");
    for push in list {
        assert_eq!(push["delivered"], false, "no answer came: {push}");
    }
    daemon.sigkill().await;

    write_faults(&faults, "", 3);
    let daemon = DaemonProcess::spawn(dir.path(), &setup, &sim.base_url, 2, &env).await;
    // The retries fall due (a minute after each failure), and the call's CDR with them.
    sim.advance_clock(120).await;
    let pushes = sim.control_get("/sim/pushes?app_key=k-axb").await;
    for push in pushes["pushes"].as_array().unwrap() {
        assert_eq!(push["delivered"], true, "taken once retried: {push}");
    }
    assert_eq!(pushes["pendingCdrs"], 0);

    let mut calls = CallServiceClient::new(daemon.channel().await);
    let req = pb::ListCallRecordsRequest {
        binding_id: bound.binding_id.clone(),
        ..Default::default()
    };
    let records = rpc("ListCallRecords", calls.list_call_records(req))
        .await
        .unwrap()
        .call_records;
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(record.session_id, text(&played, "sessionId"));
    assert_eq!(record.events.len(), 5, "each event once: {record:#?}");
    assert!(
        record.has_cdr && record.state_code == Some(0),
        "{record:#?}"
    );
    let exit = daemon.sigterm().await;
    assert!(exit.success(), "{exit}");
    sim.stop().await;
}
