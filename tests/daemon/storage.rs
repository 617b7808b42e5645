//! A failed disk is reported, not hidden: with the store's I/O failing (faults injected into
//! this daemon's store only), Binds get UNAVAILABLE with a retry hint and a reason, health says
//! NOT_SERVING, and once the disk works again the daemon says SERVING on its own, with every
//! acknowledged binding and its state equal to the platform's.

use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt as _;
use xpool::grpc::pb;
use xpool::store::faults::{self, Error, Point, Times};

use crate::support::*;

/// Asks health until it says `want`; panics after 30 s.
async fn wait_health(d: &Daemon, want: ServingStatus) {
    wait_health_of(d, "xpool.v1.BindingService", want).await;
}

/// Waits until `service`'s health (an app's: `app/<name>`) says `want`.
async fn wait_health_of(d: &Daemon, service: &str, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while health_of(&d.addr, service).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{service:?} health never said {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn store_path(d: &Daemon) -> std::path::PathBuf {
    d.dir.path().join("store")
}

/// The reason and retry delay a storage refusal carries, and its retry headers.
fn assert_storage_refusal(status: &tonic::Status, reason: &str) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.reason, reason);
    assert_eq!(info.domain, "xpool");
    let retry = details.retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));
    for header in ["retry-after-ms", "grpc-retry-pushback-ms"] {
        assert!(status.metadata().get(header).is_some(), "{header}");
    }
    assert!(
        !status.message().contains('/'),
        "no path: {}",
        status.message()
    );
}

/// `GET path` on the admin listener: the status code and the body.
async fn admin_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    let code = reply[9..12].parse().unwrap();
    (code, reply)
}

async fn survives(point: Point, error: Error, reason: &str) {
    let d =
        Daemon::start_with(Setup::standard().daemon_section("[admin]\nlisten = \"127.0.0.1:0\"\n"))
            .await;
    let admin = d.admin.expect("the admin listener");
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    // Each app has a health entry of its own; an app not configured has none.
    wait_health_of(&d, "app/rides", ServingStatus::Serving).await;
    assert_eq!(health_of(&d.addr, "app/not-configured").await, None);
    let mut acked = Vec::new();
    for i in 0..4 {
        acked.push(
            d.bind_ok(bind_any("rides", &party(i), Some(&party(100 + i))))
                .await,
        );
    }

    faults::set(&store_path(&d), point, error, Times::Always);
    let refused = d
        .bind_refused(
            bind_any("rides", &party(10), Some(&party(110))),
            Code::Unavailable,
        )
        .await;
    assert_storage_refusal(&refused, reason);
    wait_health(&d, ServingStatus::NotServing).await;
    wait_health_of(&d, "app/rides", ServingStatus::NotServing).await;
    // Health stays NOT_SERVING while the disk fails, and every write is refused the same way.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(health(&d.addr).await, Some(ServingStatus::NotServing));
    let again = d
        .bind_refused(
            bind_any("rides", &party(11), Some(&party(111))),
            Code::Unavailable,
        )
        .await;
    assert_storage_refusal(&again, reason);
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
    let (_, metrics) = admin_get(admin, "/metrics").await;
    let label = if reason == "STORAGE_FULL" {
        "full"
    } else {
        "failed"
    };
    assert!(metrics.contains("xpool_store_writable 0"), "{metrics}");
    assert!(
        metrics.contains("xpool_app_serving{app=\"rides\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "xpool_store_failures_total{{reason=\"{label}\"}} 1"
        )),
        "{metrics}"
    );

    faults::clear(&store_path(&d));
    wait_health(&d, ServingStatus::Serving).await;
    wait_health_of(&d, "app/rides", ServingStatus::Serving).await;
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert!(metrics.contains("xpool_store_writable 1"), "{metrics}");
    assert!(
        metrics.contains("xpool_app_serving{app=\"rides\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xpool_app_leading{app=\"rides\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xpool_store_recoveries_total 1"),
        "{metrics}"
    );
    acked.push(
        d.bind_ok(bind_any("rides", &party(12), Some(&party(112))))
            .await,
    );
    for b in &acked {
        assert_eq!(d.state(&b.binding_id).await, pb::BindingState::Active);
    }
    // The refused Binds' reservations, kept through the failure, are settled by the resolver;
    // then local equals platform.
    within("background resolution", settle_in_background(&d, "rides")).await;
    within("background resolution", settle_in_background(&d, "rides")).await;
    stop_in_step(d, "rides", "k-axb").await;
}

#[tokio::test]
async fn a_full_disk_refuses_binds_and_recovers_on_its_own() {
    survives(Point::LogWrite, Error::Full, "STORAGE_FULL").await;
}

#[tokio::test]
async fn a_failing_sync_refuses_binds_and_recovers_on_its_own() {
    survives(Point::LogSync, Error::Io, "STORAGE_FAILED").await;
}

#[tokio::test]
async fn a_failing_database_refuses_binds_and_recovers_on_its_own() {
    survives(Point::SledApply, Error::Io, "STORAGE_FAILED").await;
}

/// Acknowledged bindings survive a daemon stopped while its store is failing, and it starts
/// again once the disk works.
#[tokio::test]
async fn a_daemon_stopped_while_failing_keeps_what_it_acknowledged() {
    let d = Daemon::start().await;
    let mut acked = Vec::new();
    for i in 0..3 {
        acked.push(
            d.bind_ok(bind_any("rides", &party(i), Some(&party(100 + i))))
                .await,
        );
    }
    let store = store_path(&d);
    faults::set(&store, Point::LogSync, Error::Full, Times::Always);
    d.bind_refused(
        bind_any("rides", &party(20), Some(&party(120))),
        Code::Unavailable,
    )
    .await;
    let (error, d) = d.restart_after_failed_stop(|| faults::clear(&store)).await;
    assert!(
        format!("{error:#}").contains("refuses writes"),
        "the stop says why it failed: {error:#}"
    );
    for b in &acked {
        assert_eq!(d.state(&b.binding_id).await, pb::BindingState::Active);
    }
    within("background resolution", settle_in_background(&d, "rides")).await;
    stop_in_step(d, "rides", "k-axb").await;
}

/// `StoreService/Backup` copies the store while the daemon serves Binds; the copy, restored
/// once the daemon is stopped (a restore is refused while it runs), is what the next daemon
/// serves: the bindings made before the backup, none made after.
#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_working_daemon() {
    let d = Daemon::start().await;
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(
            d.bind_ok(bind_any("rides", &party(i), Some(&party(100 + i))))
                .await,
        );
    }
    let backup = d.dir.path().join("backup");
    let mut admin = pb::store_service_client::StoreServiceClient::connect(d.addr.clone())
        .await
        .unwrap();
    let binds = async {
        let mut made = Vec::new();
        for i in 10..30 {
            made.push(
                d.bind_ok(bind_any("rides", &party(i), Some(&party(100 + i))))
                    .await,
            );
        }
        made
    };
    let request = pb::BackupRequest {
        dir: backup.display().to_string(),
    };
    let (taken, during) = tokio::join!(rpc("Backup", admin.backup(request)), binds);
    let taken = taken.unwrap();
    assert!(taken.bindings >= 5, "{taken:?}");
    let relative = pb::BackupRequest {
        dir: "relative/dir".into(),
    };
    let refused = admin.backup(relative).await.unwrap_err();
    assert_bad_field(&refused, "dir");
    let again = pb::BackupRequest {
        dir: backup.display().to_string(),
    };
    let refused = admin.backup(again).await.unwrap_err();
    let r = assert_reason(&refused, Code::FailedPrecondition, "BACKUP_REFUSED", &[]);
    assert_eq!(r.retry, None, "the directory is not empty");

    let store = store_path(&d);
    let in_use = xpool::store::admin::restore(&backup, &store).await;
    assert!(in_use.is_err(), "restore refused while the daemon runs");
    let d = d
        .restart_after_async(async || {
            xpool::store::admin::restore(&backup, &store).await.unwrap();
        })
        .await;
    for b in &before {
        assert_eq!(d.state(&b.binding_id).await, pb::BindingState::Active);
    }
    // Binds that ran beside the backup are in it or not, each one whole.
    let restored = d.list("rides", pb::BindingState::Active).await;
    assert_eq!(restored.len() as i64, taken.bindings, "{taken:?}");
    assert!(restored.len() < before.len() + during.len() + 1);
    d.stop().await;
}
