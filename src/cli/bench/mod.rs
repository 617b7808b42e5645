//! `xpool bench`: a load generator for the daemon, the simulator and a Redis peer.
//!
//! One run drives N concurrent clients, each with its own connection, through a mix of Bind /
//! Unbind / GetBinding for a fixed time, either as fast as answers come back (closed loop,
//! `--rate 0`) or on a fixed schedule (`--rate R` calls per second in all; latency is counted
//! from each call's scheduled time, so a slow server cannot hide its queueing). Three targets:
//!
//! - `grpc`: the daemon's `BindingService` (`--server`);
//! - `direct`: the same AXB binds sent straight to the platform simulator's HTTP API with the
//!   signed platform client (`--sim`), the baseline for the daemon's overhead;
//! - `redis`: the open-source design, each X's parties in a Redis set and a Lua round-robin pick
//!   (`--redis`).
//!
//! With `--spawn` the run starts what it needs as child processes of this binary on 127.0.0.1
//! (`xpool sim`, `xpool serve` with a generated config, `redis-server` with AOF
//! `appendfsync always`; with `--cluster N`, a 3-member etcd cluster and N replicas, the
//! clients' connections spread over them, and with `--failovers K` the app's leader killed K
//! times after the measured window, see `failover.rs`), measures their CPU time and memory, and
//! stops them at the end. The
//! report (text, and JSON with `--json FILE`) gives throughput, latency percentiles per call,
//! errors by code (and whether each carried a retry hint), and a check of the allocation rules
//! over every binding still live at the end (no party twice on one X, no X over its cap).

mod burst;
mod callins;
mod cluster;
mod failover;
mod load;
mod preload;
mod recon;
mod redis_peer;
mod report;
mod restart;
mod spawn;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

pub use load::Mix;
pub use report::Report;

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The daemon's gRPC BindingService.
    Grpc,
    /// The platform simulator's HTTP API, signed (AXB binds only; no daemon).
    Direct,
    /// A Redis server running the round-robin Lua allocator (X-mode semantics).
    Redis,
}

/// The app's binding mode in generated configs (and what a Bind carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BenchMode {
    Ax,
    Axb,
    Axe,
    X,
}

impl BenchMode {
    fn as_config(self) -> &'static str {
        match self {
            BenchMode::Ax => "AX",
            BenchMode::Axb => "AXB",
            BenchMode::Axe => "AXE",
            BenchMode::X => "X",
        }
    }

    /// Whether a Bind names party B.
    fn has_b(self) -> bool {
        matches!(self, BenchMode::Axb | BenchMode::X)
    }
}

/// `xpool bench` options.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct BenchArgs {
    /// What to drive: the daemon (grpc), the simulator without it (direct), or the Redis peer.
    #[arg(long, value_enum, default_value = "grpc")]
    pub target: TargetKind,
    /// Start what the target needs (simulator, daemon, redis-server) as child processes on
    /// 127.0.0.1 with a generated config, and stop them at the end.
    #[arg(long)]
    pub spawn: bool,
    /// The daemon's gRPC address (without --spawn).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The simulator's base URL (without --spawn), for --target direct and --sim-* faults.
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    pub sim: String,
    /// The Redis address host:port (without --spawn). The run owns the keys `xpb:*` and clears
    /// them first.
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub redis: String,
    /// Binding mode of the generated app (--spawn) and of the Binds sent.
    #[arg(long, value_enum, default_value = "axb")]
    pub mode: BenchMode,
    /// Daemon app name.
    #[arg(long, default_value = "bench")]
    pub app: String,
    /// Platform app key and secret (direct target, simulator faults and stats).
    #[arg(long, default_value = "k-bench")]
    pub app_key: String,
    #[arg(long, default_value = "s-bench")]
    pub app_secret: String,
    /// Concurrent clients, each with its own connection unless --connections says otherwise.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// --target grpc: HTTP/2 connections the clients share, round robin (each carries several
    /// calls at once); 0 = one per client.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Measured seconds; 0 = no measured load (only --preload, --restart, --reconcile).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Calls per second offered in all, on a fixed schedule; 0 = closed loop (each client sends
    /// its next call when the last one is answered).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Weights of the calls, e.g. bind=90,unbind=5,get=5. Unbind and get fall back to bind while
    /// a client holds no binding.
    #[arg(long, default_value = "bind=100")]
    pub mix: Mix,
    /// Numbers in the generated pool (--spawn).
    #[arg(long, default_value_t = 100)]
    pub numbers: usize,
    /// Area codes the numbers are spread over (010, 011, …); each Bind asks for one at random.
    #[arg(long, default_value_t = 1)]
    pub areas: usize,
    /// Distinct parties the Binds draw A and B from at random; 0 = every Bind new parties.
    #[arg(long, default_value_t = 0)]
    pub parties: u64,
    /// With --parties 0, the index of the first new party (`+86138` and 8 digits). A run over
    /// a kept --store passes one past the parties of the runs that filled it, so that its Binds'
    /// parties are new to the store too (otherwise each one holds a second X).
    #[arg(long, default_value_t = 0)]
    pub first_party: u64,
    /// AXB / X: live bindings one X may carry (generated configs, Redis script).
    #[arg(long, default_value_t = 5000)]
    pub max_bindings_per_x: u32,
    /// The daemon app's rate_per_second to the platform (--spawn).
    #[arg(long, default_value_t = 100_000)]
    pub app_rate: u32,
    /// The daemon app's burst (--spawn); 0 = the daemon's default (a tenth of the rate).
    #[arg(long, default_value_t = 0)]
    pub app_burst: u32,
    /// Simulator fault: latency added to every platform call, ms.
    #[arg(long, default_value_t = 0)]
    pub sim_latency_ms: u64,
    /// Simulator fault: platform calls per second allowed, beyond it flow control; 0 = none.
    #[arg(long, default_value_t = 0)]
    pub sim_rps_limit: u32,
    /// Each call's deadline (gRPC timeout header; also enforced by the client, +250 ms, for
    /// gRPC and Redis calls alike).
    #[arg(long, default_value_t = 5000)]
    pub deadline_ms: u64,
    /// Send Binds without a request_id (by default each carries a unique one, as an
    /// idempotent caller would).
    #[arg(long)]
    pub no_request_id: bool,
    /// The redis-server binary (--spawn --target redis).
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    /// Keep the spawned processes' directory (configs, store, logs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// The spawned daemon's store directory (--spawn --target grpc). It is kept at the end, and
    /// a later run given the same directory starts over the bindings left in it (X mode; an
    /// upstream app's simulator starts empty).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Lifetime of every measured Bind, seconds (the request's ttl_seconds); 0 = no expiry.
    #[arg(long, default_value_t = 0)]
    pub ttl: u64,
    /// Bindings to create before the warm-up, closed loop over --concurrency clients with new
    /// parties, through the target's normal Bind path; reported on their own.
    #[arg(long, default_value_t = 0)]
    pub preload: u64,
    /// Give every preloaded binding one shared deadline, this many seconds after the preload
    /// starts (each Bind's ttl_seconds is the whole seconds left until it, so the deadlines fall
    /// within one second), and measure the expiry burst: the preload goes to the first area
    /// (010), the measured Binds to the others (needs --areas 2 or more), the measured window
    /// is placed to start --before-deadline seconds before the last deadline, and the report
    /// gives the time from the last deadline until no preloaded binding is ACTIVE, and Bind
    /// latency before the deadline against during the burst. --target grpc only.
    #[arg(long, default_value_t = 0)]
    pub preload_expire_in: u64,
    /// With --preload-expire-in: measured seconds before the last deadline (the baseline).
    #[arg(long, default_value_t = 10.0)]
    pub before_deadline: f64,
    /// The generated daemon config's `[expiry] skew_grace_seconds`: how long past the deadline
    /// the daemon waits before marking an AXB/AXE/AXYB binding EXPIRED (AX and its own
    /// unbind act at the deadline).
    #[arg(long, default_value_t = 5)]
    pub skew_grace_seconds: u64,
    /// After the measured window, stop the spawned daemon with SIGTERM, start it again over
    /// the same store and config, and report the time from spawn to its first successful
    /// Bind, and its memory then (--spawn --target grpc).
    #[arg(long)]
    pub restart: bool,
    /// After the measured window, run one full reconciliation of the app (ReconcileService,
    /// as `xpool reconcile --app`), and report its wall time, its counts and the daemon's RSS
    /// before, at its peak during, and after (--target grpc, not X mode).
    #[arg(long)]
    pub reconcile: bool,
    /// X mode: Block callins per second POSTed to the daemon's push receiver during the
    /// warm-up and the measured window (scenario 8); 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub callins: f64,
    /// The push receiver's URL for --callins (without --spawn; with it, the spawned daemon's).
    #[arg(long, default_value = "http://127.0.0.1:50052/callin")]
    pub callback_url: String,
    /// X-mode bindings made before the warm-up for the callins to dial.
    #[arg(long, default_value_t = 1000)]
    pub callin_targets: usize,
    /// --spawn --target grpc: run N replicas of the daemon (`xpool serve` with `[cluster]`, node
    /// ids r1 … rN) on a 3-member etcd cluster started from --etcd, instead of one daemon; the
    /// clients' connections go round robin over the replicas. 0 = one daemon, no etcd.
    #[arg(long, default_value_t = 0)]
    pub cluster: usize,
    /// With --cluster 2 or more: after the measured window, kill the app's leader (SIGKILL)
    /// this many times while the load goes on, timing each kill → the first successful Bind
    /// through a surviving replica, and restarting the killed replica before the next kill.
    #[arg(long, default_value_t = 0)]
    pub failovers: u32,
    /// The replicas' `[cluster] lease_ttl_seconds` (2 to 60; the daemon's default is 5): how
    /// long a killed leader keeps the app.
    #[arg(long, default_value_t = 5)]
    pub lease_ttl: u64,
    /// The etcd binary for --cluster (Debian's `etcd-server` package).
    #[arg(long, default_value = "etcd")]
    pub etcd: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A name for this run in the report (e.g. "scenario 1, daemon").
    #[arg(long)]
    pub label: Option<String>,
}

/// Runs one benchmark as `args` say, prints the report, and writes its JSON if asked.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    check(&args)?;
    let mut procs = if args.spawn {
        spawn::start(&args).await?
    } else {
        spawn::Spawned::external(&args)
    };
    let result = run_phases(&args, &mut procs).await;
    if result.is_err() {
        procs.keep_dir(); // its logs say what went wrong
    }
    procs.stop().await;
    let report = result?;
    println!("{}", report.text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON report written to {}", path.display());
    }
    Ok(())
}

/// Preload, measured window, then reconciliation and restart, each when asked.
async fn run_phases(args: &BenchArgs, procs: &mut spawn::Spawned) -> anyhow::Result<Report> {
    if args.sim_latency_ms > 0 || args.sim_rps_limit > 0 {
        spawn::set_sim_faults(&procs.sim_url, args)
            .await
            .context("setting simulator faults")?;
    }
    let plan = Arc::new(load::Plan::new(args));
    let preload = if args.preload > 0 {
        Some(preload::run(args, procs, &plan).await?)
    } else {
        None
    };
    let schedule = match &preload {
        Some(p) if args.preload_expire_in > 0 => Some(burst::schedule(args, p)?),
        _ => None,
    };
    let mut report = measure(args, procs, &plan, schedule).await?;
    report.preload = preload;
    if args.reconcile {
        let run = recon::run(args, procs).await?;
        eprintln!("{}", run.text());
        report.reconcile = Some(run);
    }
    if args.restart {
        let run = restart::run(args, procs).await?;
        eprintln!("{}", run.text());
        report.restart = Some(run);
    }
    if args.failovers > 0 {
        let run = failover::run(args, procs, plan.next_fresh()).await?;
        eprintln!("{}", run.text());
        report.failover = Some(run);
    }
    Ok(report)
}

/// The measured window (none with --duration 0), and the expiry burst's watch across it.
async fn measure(
    args: &BenchArgs,
    procs: &spawn::Spawned,
    plan: &Arc<load::Plan>,
    schedule: Option<burst::Schedule>,
) -> anyhow::Result<Report> {
    let conns = if args.duration > 0.0 {
        target::connect_all(args, procs, "")
            .await
            .context("connecting the clients")?
    } else {
        Vec::new()
    };
    // Before the schedule starts: binding them takes a second or more, and a schedule that
    // started meanwhile would open with every call already late, sent in one catch-up burst.
    let callin_targets = if args.callins > 0.0 {
        Some(Arc::new(callins::prepare(args, &procs.server_url).await?))
    } else {
        None
    };
    // The simulator's counters are read at the start and the end of the measured window.
    let start = schedule.map_or_else(|| Instant::now() + Duration::from_millis(20), |s| s.start);
    let window_start = start + plan.warmup;
    let window_end = window_start + plan.duration;
    let sim_window = {
        let (sim_url, has_sim) = (procs.sim_url.clone(), procs.has_sim);
        let app_key = args.app_key.clone();
        tokio::spawn(async move {
            if !has_sim {
                return None;
            }
            tokio::time::sleep_until(window_start.into()).await;
            let before = spawn::sim_stats(&sim_url, &app_key).await;
            tokio::time::sleep_until(window_end.into()).await;
            let after = spawn::sim_stats(&sim_url, &app_key).await;
            report::SimDelta::between(before, after)
        })
    };
    let watch = schedule.map(|at| {
        tokio::spawn(burst::watch(
            procs.server_url.clone(),
            args.app.clone(),
            at,
            window_end,
        ))
    });
    let callins = callin_targets.map(|targets| {
        let (args, url) = (args.clone(), procs.callback_url.clone());
        tokio::spawn(async move {
            callins::run(&args, &url, targets, start, window_start, window_end).await
        })
    });
    // The processes' CPU is read when the measured window opens, not before the warm-up: it is
    // divided by the window's calls (read before the warm-up, a 2 s warm-up on a 15 s window
    // added 13 % to every figure per call).
    let window_opens = async {
        tokio::time::sleep_until(window_start.into()).await;
        procs.sample()
    };
    let (mut workers, cpu_before) =
        tokio::join!(load::run(Arc::clone(plan), conns, start), window_opens);
    let cpu_after = procs.sample();
    let sim = sim_window.await.ok().flatten();
    let samples: Vec<load::BindSample> = workers
        .iter_mut()
        .flat_map(|w| std::mem::take(&mut w.binds))
        .collect();
    let mut report = Report::build(
        args,
        plan,
        workers,
        report::Processes::diff(&cpu_before, &cpu_after, procs),
        sim,
    );
    if let Some(callins) = callins {
        report.callins = Some(callins.await.context("the callin sender failed")??);
    }
    if let (Some(at), Some(watch)) = (schedule, watch) {
        eprintln!("expiry burst: waiting for the last preloaded binding to leave ACTIVE");
        let seen = watch.await.context("the expiry watch failed")?;
        report.expiry_burst = Some(burst::BurstReport::build(args, at, &samples, seen));
    }
    Ok(report)
}

fn check(args: &BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if !args.duration.is_finite()
        || args.duration < 0.0
        || args.warmup < 0.0
        || args.rate < 0.0
        || !(args.callins >= 0.0 && args.callins.is_finite())
    {
        bail!("--duration, --warmup, --rate and --callins must not be negative");
    }
    if args.duration == 0.0
        && args.preload == 0
        && !args.restart
        && !args.reconcile
        && args.failovers == 0
    {
        bail!(
            "--duration 0 measures nothing without --preload, --restart, --reconcile or \
             --failovers"
        );
    }
    if args.spawn && (args.numbers == 0 || args.areas == 0 || args.areas > 90) {
        bail!("--numbers must be at least 1 and --areas 1 to 90");
    }
    if args.parties == 1 || args.parties > 99_999_999 {
        bail!("--parties must be 0 (always new) or 2 to 99999999");
    }
    match (args.target, args.mode) {
        (TargetKind::Direct, BenchMode::Axb) => {}
        (TargetKind::Direct, _) => bail!("--target direct drives AXB binds only (--mode axb)"),
        (TargetKind::Redis, BenchMode::X | BenchMode::Axb) => {}
        (TargetKind::Redis, _) => bail!("--target redis implements the A+B allocator (--mode x)"),
        _ => {}
    }
    check_phases(args)
}

/// The options of the preload, expiry-burst, reconcile and restart phases.
fn check_phases(args: &BenchArgs) -> anyhow::Result<()> {
    let grpc = args.target == TargetKind::Grpc;
    if args.ttl > 0 && args.target == TargetKind::Redis {
        bail!("--ttl: the Redis allocator has no expiry");
    }
    if args.preload_expire_in > 0 {
        if !grpc || args.preload == 0 || args.areas < 2 {
            bail!(
                "--preload-expire-in needs --target grpc, --preload N and --areas 2 or more \
                 (the preload takes the first area, the measured Binds the others)"
            );
        }
        if !(args.before_deadline > 0.0 && args.before_deadline < args.duration) {
            bail!("--before-deadline must be positive and shorter than --duration");
        }
    }
    if args.restart && !(args.spawn && grpc) {
        bail!("--restart needs --spawn --target grpc (it restarts the daemon it started)");
    }
    if args.reconcile && (!grpc || args.mode == BenchMode::X) {
        bail!("--reconcile needs --target grpc and an upstream mode (X mode has no platform)");
    }
    if args.callins > 0.0 && !(grpc && args.mode == BenchMode::X && args.callin_targets > 0) {
        bail!("--callins needs --target grpc --mode x and --callin-targets of at least 1");
    }
    if args.store.is_some() && !(args.spawn && grpc) {
        bail!("--store is the spawned daemon's store (--spawn --target grpc)");
    }
    check_cluster(args)
}

/// The options of --cluster and --failovers.
fn check_cluster(args: &BenchArgs) -> anyhow::Result<()> {
    if args.cluster > 0 {
        if !(args.spawn && args.target == TargetKind::Grpc) {
            bail!("--cluster needs --spawn --target grpc (it starts the replicas itself)");
        }
        if args.cluster > 9 {
            bail!("--cluster must be 0 (one daemon) or 1 to 9 replicas");
        }
        if args.restart || args.callins > 0.0 || args.store.is_some() {
            bail!(
                "--cluster does not combine with --restart, --callins or --store (they act on \
                 one daemon)"
            );
        }
    }
    if args.failovers > 0 && args.cluster < 2 {
        bail!("--failovers needs --cluster 2 or more (a replica to fail over to)");
    }
    if !(2..=60).contains(&args.lease_ttl) {
        bail!("--lease-ttl must be 2 to 60 seconds ([cluster] lease_ttl_seconds)");
    }
    Ok(())
}

/// The number of the i-th pool number, `+86170xxxxxxxx`.
fn pool_number(i: usize) -> String {
    format!("+86170{i:08}")
}

/// The i-th area code: 010, 011, …
fn area_code(i: usize) -> String {
    format!("0{}", 10 + i)
}

/// Waits up to `limit` for `probe` to succeed, every 20 ms.
async fn wait_until(limit: Duration, mut probe: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn checked(argv: &[&str]) -> Result<(), String> {
        let argv = std::iter::once("bench").chain(argv.iter().copied());
        let cli = <Cli as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())?;
        check(&cli.args).map_err(|e| e.to_string())
    }

    #[test]
    fn the_phase_options_are_checked_before_anything_starts() {
        let burst = [
            "--preload",
            "100",
            "--preload-expire-in",
            "30",
            "--areas",
            "2",
            "--duration",
            "30",
        ];
        assert_eq!(checked(&burst), Ok(()));
        // The preload needs an area of its own, and a window that reaches past the deadline.
        assert!(checked(&burst[..4]).is_err());
        // The default --duration (10 s) is not longer than the default --before-deadline.
        assert!(checked(&burst[..6]).is_err());
        let window = |before: &'static str| {
            let mut argv = burst[..6].to_vec();
            argv.extend(["--duration", "5", "--before-deadline", before]);
            checked(&argv)
        };
        assert_eq!(window("4"), Ok(()));
        assert!(window("5").is_err());
        assert!(checked(&["--restart"]).is_err(), "restart needs --spawn");
        assert_eq!(checked(&["--spawn", "--restart", "--mode", "x"]), Ok(()));
        assert!(checked(&["--reconcile", "--mode", "x"]).is_err());
        assert!(checked(&["--duration", "0"]).is_err());
        assert_eq!(checked(&["--duration", "0", "--reconcile"]), Ok(()));
        assert!(checked(&["--target", "redis", "--mode", "x", "--ttl", "5"]).is_err());
    }

    #[test]
    fn the_cluster_options_name_the_flag_they_need() {
        let err = |argv: &[&str]| checked(argv).unwrap_err();
        assert_eq!(
            checked(&["--spawn", "--mode", "x", "--cluster", "3"]),
            Ok(())
        );
        let failovers = [
            "--spawn",
            "--mode",
            "x",
            "--cluster",
            "3",
            "--failovers",
            "2",
        ];
        assert_eq!(checked(&failovers), Ok(()));
        let mut only_failovers = failovers.to_vec();
        only_failovers.extend(["--duration", "0"]);
        assert_eq!(checked(&only_failovers), Ok(()));
        assert!(err(&["--cluster", "3"]).contains("--spawn"));
        assert!(
            err(&[
                "--spawn",
                "--target",
                "redis",
                "--mode",
                "x",
                "--cluster",
                "3"
            ])
            .contains("--target grpc")
        );
        assert!(err(&["--spawn", "--cluster", "10"]).contains("--cluster"));
        assert!(err(&["--spawn", "--cluster", "1", "--failovers", "1"]).contains("--cluster 2"));
        assert!(err(&["--spawn", "--failovers", "1"]).contains("--failovers"));
        assert!(err(&["--spawn", "--cluster", "3", "--restart"]).contains("--restart"));
        assert!(err(&["--spawn", "--cluster", "3", "--lease-ttl", "1"]).contains("--lease-ttl"));
    }
}
