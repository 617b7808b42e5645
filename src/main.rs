//! The `xpool` binary: parses the command line, starts tracing and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("XPOOL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => run_serve(config).await,
            Command::Sim { listen, config } => run_sim(listen, config).await,
        }
    })
}

async fn run_serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = match &path {
        Some(path) => xpool::config::Config::load(path, std::env::vars())?,
        None => xpool::config::Config::embedded_default(std::env::vars())?,
    };
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} (server.listen)"))?;
    xpool::run(config, listener, shutdown_signal()).await
}

async fn run_sim(listen: SocketAddr, config: PathBuf) -> anyhow::Result<()> {
    let config = xpool::sim::SimConfig::load(&config)
        .with_context(|| format!("loading simulator config {}", config.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    xpool::sim::serve(config, listener, shutdown_signal()).await?;
    tracing::info!("platform simulator stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}
