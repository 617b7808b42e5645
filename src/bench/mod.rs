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
//! `appendfsync always`), measures their CPU time and memory, and stops them at the end. The
//! report (text, and JSON with `--json FILE`) gives throughput, latency percentiles per call,
//! errors by code (and whether each carried a retry hint), and a check of the allocation rules
//! over every binding still live at the end (no party twice on one X, no X over its cap).

mod load;
mod report;
mod resp;
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
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Measured seconds.
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
    /// Each call's deadline (gRPC timeout header; also enforced by the client, +250 ms).
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
    if args.sim_latency_ms > 0 || args.sim_rps_limit > 0 {
        spawn::set_sim_faults(&procs.sim_url, &args)
            .await
            .context("setting simulator faults")?;
    }
    let plan = Arc::new(load::Plan::new(&args, &procs));
    let conns = target::connect_all(&args, &procs)
        .await
        .context("connecting the clients")?;
    // The simulator's counters are read at the start and the end of the measured window.
    let start = Instant::now() + Duration::from_millis(20);
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
    let cpu_before = procs.sample();
    let started = Instant::now();
    let workers = load::run(Arc::clone(&plan), conns, start).await;
    let wall = started.elapsed();
    let cpu_after = procs.sample();
    let sim = sim_window.await.ok().flatten();
    let report = Report::build(
        &args,
        &plan,
        workers,
        report::Processes::diff(&cpu_before, &cpu_after, &procs),
        sim,
        wall,
    );
    println!("{}", report.text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON report written to {}", path.display());
    }
    procs.stop().await;
    Ok(())
}

fn check(args: &BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if !args.duration.is_finite() || args.duration <= 0.0 || args.warmup < 0.0 || args.rate < 0.0 {
        bail!("--duration must be positive, --warmup and --rate not negative");
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
