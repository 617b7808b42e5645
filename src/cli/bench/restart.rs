//! The restart: stop the spawned daemon with SIGTERM, start it again over the same store, and
//! time it from spawn to its first successful Bind (connecting, rebuilding its index from the
//! store and serving).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tonic::transport::Channel;

use super::load::party_number;
use super::spawn::{Spawned, read_proc};
use super::{BenchArgs, area_code};
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

/// Parties of the probe Binds: far above the preload's and the load's, which count up from 0.
const PROBE_PARTIES: u64 = 99_000_000;
/// How long after the first Bind the memory is read again (the daemon idle).
const SETTLE: Duration = Duration::from_secs(3);

/// What the restart measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestartReport {
    /// The daemon's RSS just before SIGTERM.
    pub rss_before_stop_mib: f64,
    /// From SIGTERM to the process's exit, and how it exited.
    pub stop_ms: u64,
    pub exit_status: String,
    /// From spawning the new process to its first successful Bind (target ≤ 5000).
    pub first_bind_ms: u64,
    /// Bind attempts until then (each a new connection while the port is closed).
    pub bind_attempts: u64,
    pub rss_at_first_bind_mib: f64,
    pub rss_after_settle_mib: f64,
    pub peak_rss_mib: f64,
}

impl RestartReport {
    pub fn text(&self) -> String {
        format!(
            "restart: rss before SIGTERM {:.1} MiB; stopped in {} ms ({}); first Bind {} ms after \
             spawn ({} attempts); rss {:.1} MiB then, {:.1} MiB {} s later, peak {:.1} MiB",
            self.rss_before_stop_mib,
            self.stop_ms,
            self.exit_status,
            self.first_bind_ms,
            self.bind_attempts,
            self.rss_at_first_bind_mib,
            self.rss_after_settle_mib,
            SETTLE.as_secs(),
            self.peak_rss_mib
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Stops and restarts the spawned daemon and measures both.
pub async fn run(args: &BenchArgs, procs: &mut Spawned) -> anyhow::Result<RestartReport> {
    let mut report = RestartReport::default();
    if let Some(pid) = procs.daemon_pid() {
        report.rss_before_stop_mib = mib(read_proc(&pid.to_string()).rss_kib);
    }
    let (stopped_in, status) = procs.stop_daemon().await?;
    report.stop_ms = stopped_in.as_millis() as u64;
    report.exit_status = status.to_string();
    let attempts = AtomicU64::new(0);
    let url = procs.server_url.clone();
    let proc = procs
        .restart_daemon(async || {
            attempts.fetch_add(1, Ordering::Relaxed);
            probe_bind(&url, args, "restart").await
        })
        .await?;
    report.first_bind_ms = proc.startup.as_millis() as u64;
    report.bind_attempts = attempts.load(Ordering::Relaxed);
    let pid = proc.pid.to_string();
    report.rss_at_first_bind_mib = mib(read_proc(&pid).rss_kib);
    tokio::time::sleep(SETTLE).await;
    let settled = read_proc(&pid);
    report.rss_after_settle_mib = mib(settled.rss_kib);
    report.peak_rss_mib = mib(settled.hwm_kib);
    Ok(report)
}

/// The probes' sequence number: each probe binds new parties under a request id of its own.
static PROBES: AtomicU64 = AtomicU64::new(0);

/// One Bind with new parties on a new connection; true when it succeeded. `tag` names the
/// phase in its request id.
pub(super) async fn probe_bind(url: &str, args: &BenchArgs, tag: &str) -> bool {
    let Ok(mut client) = BindingServiceClient::connect(url.to_owned()).await else {
        return false;
    };
    let deadline = Duration::from_millis(args.deadline_ms);
    bind_once(&mut client, args, tag, deadline).await.is_ok()
}

/// One Bind with new parties through `client`, with `deadline` (sent, and enforced here).
pub(super) async fn bind_once(
    client: &mut BindingServiceClient<Channel>,
    args: &BenchArgs,
    tag: &str,
    deadline: Duration,
) -> Result<pb::Binding, tonic::Code> {
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let msg = pb::BindRequest {
        app: args.app.clone(),
        party_a: party_number(PROBE_PARTIES + 2 * n),
        party_b: if args.mode.has_b() {
            party_number(PROBE_PARTIES + 2 * n + 1)
        } else {
            String::new()
        },
        area_code: area_code(0),
        request_id: format!("bench-{}-{tag}-{n}", std::process::id()),
        ..Default::default()
    };
    let mut req = tonic::Request::new(msg);
    req.set_timeout(deadline);
    match tokio::time::timeout(deadline + Duration::from_millis(250), client.bind(req)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => Err(status.code()),
        Err(_) => Err(tonic::Code::DeadlineExceeded),
    }
}
