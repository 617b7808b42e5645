//! One timed full reconciliation run of the app (started and followed to its end as
//! `xpool reconcile --app` does), with the daemon's memory read every 100 ms while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};

use super::BenchArgs;
use super::spawn::{Sample, Spawned, read_proc};
use xpool::grpc::pb;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;

/// Errors the report lists one by one (the rest are counted).
const ERRORS_LISTED: usize = 5;

/// What the reconciliation reported, and what it cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileRun {
    /// From starting the run to its end (target ≤ 60000).
    pub wall_ms: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub errors: u64,
    pub first_errors: Vec<String>,
    #[serde(flatten)]
    pub daemon: DaemonUse,
    /// Platform requests the simulator counted while it ran.
    pub sim_requests: Option<u64>,
}

/// The run's counts under their proto names (the errors are listed by [`ReconcileRun`]).
#[derive(Debug, Clone, Default)]
pub struct Counts(pub pb::ReconcileRun);

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = &self.0;
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("xs_checked", &r.xs_checked)?;
        map.serialize_entry("orphans_adopted", &r.orphans_adopted)?;
        map.serialize_entry("orphans_released", &r.orphans_released)?;
        map.serialize_entry("ghosts_freed", &r.ghosts_freed)?;
        map.serialize_entry("fields_corrected", &r.fields_corrected)?;
        map.serialize_entry("pending_resolved", &r.pending_resolved)?;
        map.serialize_entry("numbers_removed", &r.numbers_removed)?;
        map.end()
    }
}

/// The spawned daemon's RSS before, at its highest while it ran, and after, and the CPU time it
/// used (None without --spawn); growth = peak − before (target ≤ 100).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DaemonUse {
    pub rss_before_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub rss_after_mib: Option<f64>,
    pub rss_growth_mib: Option<f64>,
    pub daemon_cpu_s: Option<f64>,
}

impl DaemonUse {
    /// From the samples before and after the run and the highest RSS sampled while it ran.
    fn between(before: Option<Sample>, after: Option<Sample>, peak_kib: u64) -> DaemonUse {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let peak = after.map(|a| mib(peak_kib.max(a.rss_kib)));
        DaemonUse {
            rss_before_mib: before.map(|b| mib(b.rss_kib)),
            rss_peak_mib: peak,
            rss_after_mib: after.map(|a| mib(a.rss_kib)),
            rss_growth_mib: before.zip(peak).map(|(b, p)| p - mib(b.rss_kib)),
            daemon_cpu_s: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
        }
    }
}

impl ReconcileRun {
    pub fn text(&self) -> String {
        let mib = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.1} MiB"));
        let (c, d) = (&self.counts.0, &self.daemon);
        let mut s = format!(
            "reconcile: {} ms wall, {} numbers checked, adopted {}, released {}, ghosts freed {}, \
             fields corrected {}, pending resolved {}, numbers removed {}, errors {}\n  daemon rss \
             {} before, {} peak during, {} after (growth {}); daemon cpu {} s; {} platform \
             requests",
            self.wall_ms,
            c.xs_checked,
            c.orphans_adopted,
            c.orphans_released,
            c.ghosts_freed,
            c.fields_corrected,
            c.pending_resolved,
            c.numbers_removed,
            self.errors,
            mib(d.rss_before_mib),
            mib(d.rss_peak_mib),
            mib(d.rss_after_mib),
            mib(d.rss_growth_mib),
            d.daemon_cpu_s
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
    let channel = tonic::transport::Channel::from_shared(procs.server_url.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", procs.server_url))?;
    let mut client =
        ReconcileServiceClient::with_interceptor(channel, crate::cli::Bearer::default());
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
    let request = pb::ReconcileRequest {
        app: args.app.clone(),
        numbers: Vec::new(),
        dry_run: false,
    };
    let answer = crate::cli::reconcile::start_and_follow(&mut client, request, |_| {}).await;
    let wall = t0.elapsed();
    running.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    let mut r = answer.context("reconciliation run")?;
    let after = pid.as_deref().map(read_proc);
    let sim_after = if procs.has_sim {
        super::spawn::sim_stats(&procs.sim_url, &args.app_key).await
    } else {
        None
    };
    let errors = std::mem::take(&mut r.errors);
    Ok(ReconcileRun {
        wall_ms: wall.as_millis() as u64,
        errors: u64::try_from(r.error_count).unwrap_or_default(),
        counts: Counts(r),
        first_errors: errors
            .iter()
            .take(ERRORS_LISTED)
            .map(crate::cli::reconcile::error_line)
            .collect(),
        daemon: DaemonUse::between(before, after, peak_kib.load(Ordering::Relaxed)),
        sim_requests: super::report::SimDelta::between(sim_before, sim_after).map(|d| d.requests),
    })
}

#[cfg(test)]
mod tests {
    use super::ReconcileRun;

    #[test]
    fn the_json_is_one_flat_object_in_report_order() {
        let json = serde_json::to_string(&ReconcileRun::default()).unwrap();
        let expected = concat!(
            r#"{"wall_ms":0,"xs_checked":0,"orphans_adopted":0,"orphans_released":0,"#,
            r#""ghosts_freed":0,"fields_corrected":0,"pending_resolved":0,"numbers_removed":0,"#,
            r#""errors":0,"first_errors":[],"rss_before_mib":null,"rss_peak_mib":null,"#,
            r#""rss_after_mib":null,"rss_growth_mib":null,"daemon_cpu_s":null,"#,
            r#""sim_requests":null}"#
        );
        assert_eq!(json, expected);
    }
}
