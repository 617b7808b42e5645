//! The `xpool` binary: parses the command line, starts tracing and hands over to the daemon
//! library. It also composes what the library leaves out (see [`cli`]): the embedded default's
//! in-process simulator, signal handling, and the load generator.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use xpool::config::LogConfig;

/// mimalloc instead of glibc's malloc: with a million live bindings the daemon's RSS under glibc
/// was 1.6 GiB serving against 1.0 GiB right after a restart, most likely freed memory held in
/// per-thread arenas; see BENCHMARKS.md, scenario 4.
///
/// With the `system-allocator` feature the binary keeps the system's malloc instead, so that a
/// heap profiler that hooks malloc (heaptrack) sees every allocation; see BENCHMARKS.md.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "xpool",
    version,
    about = "A pool of Huawei Cloud privacy numbers behind gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon. Without --config: the embedded default (store in ./xpool-data, the
    /// platform simulator in-process, a demo app per mode).
    Serve {
        /// Daemon config (TOML); every key can be overridden by XPOOL__SECTION__KEY.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only load and validate the config (files it names included), print a summary and
        /// exit: 0 valid, 1 not.
        #[arg(long)]
        check_config: bool,
    },
    /// Ask a running daemon's health service once: exit 0 if SERVING, else 1 (for container
    /// HEALTHCHECKs).
    Health(cli::health::HealthArgs),
    /// Reconcile a running daemon with the platform once: start a run, follow it to its end,
    /// print the report, and exit non-zero if the run failed or was cancelled (1) or the daemon
    /// could not be asked (2). For cron jobs.
    Reconcile(cli::reconcile::ReconcileArgs),
    /// An app's X numbers on a running daemon: list, add, drain, undrain, remove.
    #[command(after_help = cli::admin::EXIT_CODES)]
    Numbers(cli::admin::numbers::NumbersArgs),
    /// Bindings on a running daemon: get one, list them, unbind one.
    #[command(after_help = cli::admin::EXIT_CODES)]
    Bindings(cli::admin::bindings::BindingsArgs),
    /// Each app's pool per area on a running daemon: total, free, bound, cooling, draining,
    /// held by the platform, free extensions.
    #[command(after_help = cli::admin::EXIT_CODES)]
    Stats(cli::admin::stats::StatsArgs),
    /// Follow a running daemon's changes (bindings, number status, calls, SMS), a line each
    /// with its resume token; Ctrl-C ends it (exit 0) and says where to resume.
    #[command(after_help = cli::admin::EXIT_CODES)]
    Watch(cli::admin::watch::WatchArgs),
    /// Load-test the daemon (or the simulator directly, or a Redis allocator) and report
    /// throughput, latency percentiles and errors; see BENCHMARKS.md.
    Bench(Box<cli::bench::BenchArgs>),
    /// Cluster mode on etcd: `status` shows the etcd members, the replicas and each app's
    /// leader, read with the config's [cluster] section.
    Cluster(cli::cluster::ClusterArgs),
    /// Check, repair, back up or restore a store (see README, "Reliability").
    Store(cli::store::StoreArgs),
    /// Make a token for `[[auth.tokens]]`: `new` prints a fresh token and the `token_sha256`
    /// the config holds for it; `hash` prints the hash of a token read from stdin.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run the PrivateNumber platform simulator for local development and tests.
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: SocketAddr,
        /// Simulator config (TOML with [[apps]]); see deploy/sim.toml.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Print a fresh random token and its SHA-256 (give the token to the caller, put the hash
    /// in the config).
    New,
    /// Print the SHA-256 of the token on stdin (one line).
    Hash,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Token { action } = &cli.command {
        return token(action);
    }
    // The daemon's config says how it logs, so it is read first; the rest log text at info.
    let daemon = match &cli.command {
        Command::Serve {
            config,
            check_config: false,
        } => Some(cli::serve::Loaded::load(config.as_deref())?),
        _ => None,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let default_log = LogConfig::default();
    let logging = {
        // The OTLP exporter's channel is made on the runtime.
        let _entered = runtime.enter();
        let log = daemon.as_ref().map_or(&default_log, |d| &d.config.log);
        let node_id = daemon
            .as_ref()
            .and_then(|d| d.config.cluster.as_ref())
            .map(|cluster| cluster.node_id.as_str());
        cli::logging::init(log, node_id)?
    };
    let result = runtime.block_on(async {
        if let Some(daemon) = daemon {
            return cli::serve::run(daemon).await;
        }
        match cli.command {
            Command::Serve { config, .. } => cli::serve::check(config.as_deref()),
            Command::Health(args) => std::process::exit(cli::health::run(args).await),
            Command::Reconcile(args) => std::process::exit(cli::reconcile::run(args).await),
            Command::Numbers(args) => std::process::exit(cli::admin::numbers::run(args).await),
            Command::Bindings(args) => std::process::exit(cli::admin::bindings::run(args).await),
            Command::Stats(args) => std::process::exit(cli::admin::stats::run(args).await),
            Command::Watch(args) => std::process::exit(cli::admin::watch::run(args).await),
            Command::Store(args) => std::process::exit(cli::store::run(args).await),
            Command::Cluster(args) => std::process::exit(cli::cluster::run(args).await),
            Command::Sim { listen, config } => run_sim(listen, config).await,
            Command::Bench(args) => cli::bench::run(*args).await,
            Command::Token { .. } => unreachable!("handled before the runtime starts"),
        }
    });
    // The runtime still runs here, so the exporter can send the last spans.
    logging.shutdown();
    result
}

fn token(action: &TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::New => {
            let (token, hash) = xpool::auth::new_token();
            println!("token:        {token}");
            println!("token_sha256: {hash}");
            eprintln!(
                "Give the token to the caller (it is not stored anywhere); put the hash in\n\
                 [[auth.tokens]] token_sha256, or the token itself in the file token_file names."
            );
        }
        TokenAction::Hash => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the token from stdin")?;
            let token = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!token.is_empty(), "no token on stdin");
            println!("{}", xpool::auth::sha256_hex(token.as_bytes()));
        }
    }
    Ok(())
}

async fn run_sim(listen: SocketAddr, config: PathBuf) -> anyhow::Result<()> {
    let config = xpool_sim::SimConfig::load(&config)
        .with_context(|| format!("loading simulator config {}", config.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    xpool_sim::serve(config, listener, cli::serve::Signals::install()?.shutdown()).await?;
    tracing::info!("platform simulator stopped");
    Ok(())
}
