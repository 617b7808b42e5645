//! One timed full reconciliation of the app (`ReconcileService.Reconcile`, as
//! `xpool reconcile --app`), with the daemon's memory read every 100 ms while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use super::BenchArgs;
use super::spawn::{Spawned, read_proc};
use xpool::grpc::pb;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;

/// Errors the report lists one by one (the rest are counted).
const ERRORS_LISTED: usize = 5;

/// What the reconciliation reported, and what it cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileRun {
    /// From sending the request to its answer (target ≤ 60000).
    pub wall_ms: u64,
    pub xs_checked: u64,
    pub orphans_adopted: u64,
    pub orphans_released: u64,
    pub ghosts_freed: u64,
    pub fields_corrected: u64,
    pub pending_resolved: u64,
    pub numbers_removed: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    /// The spawned daemon's RSS before, at its highest while it ran, and after (None without
    /// --spawn); growth = peak − before (target ≤ 100).
    pub rss_before_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub rss_after_mib: Option<f64>,
    pub rss_growth_mib: Option<f64>,
    pub daemon_cpu_s: Option<f64>,
    /// Platform requests the simulator counted while it ran.
    pub sim_requests: Option<u64>,
}

impl ReconcileRun {
    pub fn text(&self) -> String {
        let mib = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.1} MiB"));
        let mut s = format!(
            "reconcile: {} ms wall, {} numbers checked, adopted {}, released {}, ghosts freed {}, \
             fields corrected {}, pending resolved {}, numbers removed {}, errors {}\n  daemon rss \
             {} before, {} peak during, {} after (growth {}); daemon cpu {} s; {} platform \
             requests",
            self.wall_ms,
            self.xs_checked,
            self.orphans_adopted,
            self.orphans_released,
            self.ghosts_freed,
            self.fields_corrected,
            self.pending_resolved,
            self.numbers_removed,
            self.errors,
            mib(self.rss_before_mib),
            mib(self.rss_peak_mib),
            mib(self.rss_after_mib),
            mib(self.rss_growth_mib),
            self.daemon_cpu_s
                .map_or_else(|| "?".to_owned(), |c| format!("{c:.2}")),
            self.sim_requests
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        );
        for e in &self.first_errors {
            s.push_str(&format!("\n    {e}"));
        }
        s
    }
}

/// Runs one full reconciliation of `args.app` and measures it.
pub async fn run(args: &BenchArgs, procs: &Spawned) -> anyhow::Result<ReconcileRun> {
    let mut client = ReconcileServiceClient::connect(procs.server_url.clone())
        .await
        .with_context(|| format!("connecting to {}", procs.server_url))?;
    let pid = procs.daemon_pid().map(|p| p.to_string());
    let before = pid.as_deref().map(read_proc);
    let sim_before = if procs.has_sim {
        super::spawn::sim_stats(&procs.sim_url, &args.app_key).await
    } else {
        None
    };
    let running = Arc::new(AtomicBool::new(true));
    let peak_kib = Arc::new(AtomicU64::new(before.map_or(0, |b| b.rss_kib)));
    let sampler = pid.clone().map(|pid| {
        let (running, peak_kib) = (Arc::clone(&running), Arc::clone(&peak_kib));
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                peak_kib.fetch_max(read_proc(&pid).rss_kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let t0 = Instant::now();
    let answer = client
        .reconcile(pb::ReconcileRequest {
            app: args.app.clone(),
            numbers: Vec::new(),
            dry_run: false,
        })
        .await;
    let wall = t0.elapsed();
    running.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    let r = answer.context("ReconcileService.Reconcile")?.into_inner();
    let after = pid.as_deref().map(read_proc);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let sim_after = if procs.has_sim {
        super::spawn::sim_stats(&procs.sim_url, &args.app_key).await
    } else {
        None
    };
    let peak = after.map(|a| mib(peak_kib.load(Ordering::Relaxed).max(a.rss_kib)));
    Ok(ReconcileRun {
        wall_ms: wall.as_millis() as u64,
        xs_checked: r.xs_checked,
        orphans_adopted: r.orphans_adopted,
        orphans_released: r.orphans_released,
        ghosts_freed: r.ghosts_freed,
        fields_corrected: r.fields_corrected,
        pending_resolved: r.pending_resolved,
        numbers_removed: r.numbers_removed,
        errors: r.errors.len() as u64,
        first_errors: r.errors.into_iter().take(ERRORS_LISTED).collect(),
        rss_before_mib: before.map(|b| mib(b.rss_kib)),
        rss_peak_mib: peak,
        rss_after_mib: after.map(|a| mib(a.rss_kib)),
        rss_growth_mib: before.zip(peak).map(|(b, p)| p - mib(b.rss_kib)),
        daemon_cpu_s: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
        sim_requests: super::report::SimDelta::between(sim_before, sim_after).map(|d| d.requests),
    })
}
