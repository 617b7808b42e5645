//! `xpool serve`: signals first, then the embedded simulator if there is no config, then the
//! daemon — built and recovered before its port is bound.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use xpool::config::Config;

use super::embedded;

/// A loaded config: `--config FILE`, or the embedded default with its simulator's.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    sim_config: Option<xpool_sim::SimConfig>,
}

impl Loaded {
    /// Loads and validates `path`, or the embedded default without one; env overrides apply.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Loaded> {
        let (config, sim_config) = match path {
            Some(path) => (Config::load(path, std::env::vars())?, None),
            None => embedded::config(std::env::vars())?,
        };
        Ok(Loaded { config, sim_config })
    }
}

/// `xpool serve`: the daemon, and with the embedded default its simulator in-process.
pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let Loaded {
        mut config,
        sim_config,
    } = loaded;
    let sim_stop = CancellationToken::new();
    let sim = match sim_config {
        Some(sim_config) => Some(embedded::start_sim(&mut config, sim_config, &sim_stop).await?),
        None => None,
    };
    let served = serve(config, signals).await;
    sim_stop.cancel();
    if let Some(sim) = sim {
        let _ = sim.await;
    }
    served
}

/// `xpool serve --check-config`: loads and validates the config as `serve` would, opens and
/// binds nothing, and prints what it found.
pub fn check(path: Option<&Path>) -> anyhow::Result<()> {
    let Loaded { config, .. } = Loaded::load(path)?;
    let origin = path.map_or("the embedded default".to_owned(), |p| {
        p.display().to_string()
    });
    println!(
        "{origin}: valid; {} app(s), gRPC on {}{}, store {}, auth {}",
        config.apps.len(),
        config.server.listen,
        config
            .callbacks
            .listen
            .map(|l| format!(", pushes on {l}"))
            .unwrap_or_default(),
        config.store.path.display(),
        match &config.auth {
            Some(auth) => format!("on ({} tokens)", auth.tokens.len()),
            None => "off".to_owned(),
        }
    );
    if let Some(endpoint) = &config.log.otlp_endpoint {
        println!(
            "[log]: spans exported to {endpoint} (OTLP/gRPC) as service {:?}, sample ratio {}",
            config.log.otlp_service_name, config.log.otlp_sample_ratio
        );
    }
    if let Some(cluster) = &config.cluster {
        println!(
            "[cluster]: node {:?} on {} etcd endpoint(s), advertised at {}; apps are served \
             where this replica leads them (docs/cluster.md)",
            cluster.node_id,
            cluster.etcd_endpoints.len(),
            cluster.advertise_addr
        );
    }
    Ok(())
}

/// Builds and recovers first, and only then binds the port: until the daemon can answer,
/// nothing listens, so probes fail fast instead of hanging.
async fn serve(config: Config, signals: Signals) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let daemon = xpool::Daemon::build(config, Arc::new(xpool::lifecycle::SystemClock)).await?;
    daemon.recover().await;
    if signals.shutdown.is_cancelled() {
        tracing::info!("shutdown requested during start-up: not serving");
        return daemon.close().await;
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            let closed = daemon.close().await;
            let bound = anyhow::Error::new(e).context(format!("binding {listen} (server.listen)"));
            return closed.and(Err(bound));
        }
    };
    daemon.run(listener, signals.shutdown()).await
}

/// The process's signals, installed before anything starts, so that none of them ends the
/// daemon with its default action (SIGHUP used to exit with 129, skipping the drain).
#[derive(Debug)]
pub struct Signals {
    shutdown: CancellationToken,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).context("installing SIGTERM")?;
            let mut int = signal(SignalKind::interrupt()).context("installing SIGINT")?;
            let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP")?;
            tokio::spawn(async move {
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                        _ = hup.recv() => {
                            tracing::info!(
                                "SIGHUP received: [server.tls] files are re-read; the rest \
                                 of the config needs a restart; still running"
                            );
                            continue;
                        }
                    };
                    tracing::info!(signal = name, "shutdown signal received");
                    token.cancel();
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("shutdown signal received");
                token.cancel();
            }
        });
        Ok(Signals { shutdown })
    }

    /// Completes on SIGTERM or SIGINT.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shutdown.clone().cancelled_owned()
    }
}
