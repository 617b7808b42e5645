//! The process's tracing: log lines to stderr as `[log]` says, and with the `otlp` feature and
//! `log.otlp_endpoint` set, the spans to an OpenTelemetry collector too.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};
use xpool::config::{LogConfig, LogFormat};

/// A subscriber layer of the process's one `Registry`.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// What must be done at exit for the tracing started by [`init`]: the spans still queued for
/// the collector are flushed (bounded). Dropping it skips that flush.
#[derive(Debug, Default)]
pub struct Logging {
    /// The OTLP exporter's provider; `None` without `log.otlp_endpoint`.
    #[cfg(feature = "otlp")]
    otlp: Option<super::otlp::Export>,
}

impl Logging {
    /// Flushes the spans not yet exported, waiting a bounded time (a collector that is down
    /// cannot hold up the exit).
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.otlp {
            otlp.shutdown();
        }
    }
}

/// Logs to stderr as `log` says, at the level `XPOOL_LOG` or `RUST_LOG` give, else `log.level`;
/// colour only when stderr is a terminal. With `log.otlp_endpoint` (and the `otlp` feature) the
/// daemon's spans go to that collector as well, tagged with `node_id` in cluster mode; that
/// needs a tokio runtime entered (the exporter's channel runs on it).
pub fn init(log: &LogConfig, node_id: Option<&str>) -> anyhow::Result<Logging> {
    let writer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines: BoxedLayer = match log.format {
        LogFormat::Text => writer
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter(log))
            .boxed(),
        LogFormat::Json => writer
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter(log))
            .boxed(),
    };
    let (export, logging) = export(log, node_id)?;
    let layers: Vec<BoxedLayer> = std::iter::once(lines).chain(export).collect();
    tracing_subscriber::registry().with(layers).init();
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &log.otlp_endpoint {
        tracing::info!(
            endpoint = %endpoint,
            service_name = %log.otlp_service_name,
            sample_ratio = log.otlp_sample_ratio,
            "exporting spans to an OpenTelemetry collector (OTLP/gRPC)"
        );
    }
    Ok(logging)
}

/// The layer exporting spans to `log.otlp_endpoint`, if set, and what to shut down at exit.
#[cfg(feature = "otlp")]
fn export(log: &LogConfig, node_id: Option<&str>) -> anyhow::Result<(Option<BoxedLayer>, Logging)> {
    let Some(endpoint) = &log.otlp_endpoint else {
        return Ok((None, Logging::default()));
    };
    let (layer, export) = super::otlp::layer(log, endpoint, node_id, filter(log))?;
    Ok((Some(layer), Logging { otlp: Some(export) }))
}

/// Without the `otlp` feature nothing is exported (the config refuses `log.otlp_endpoint`).
#[cfg(not(feature = "otlp"))]
fn export(
    _log: &LogConfig,
    _node_id: Option<&str>,
) -> anyhow::Result<(Option<BoxedLayer>, Logging)> {
    Ok((None, Logging::default()))
}

/// The level filter: `XPOOL_LOG` or `RUST_LOG` if set and valid, else `log.level`.
fn filter(log: &LogConfig) -> EnvFilter {
    ["XPOOL_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|var| EnvFilter::try_from_env(var).ok())
        .unwrap_or_else(|| EnvFilter::new(&log.level))
}
