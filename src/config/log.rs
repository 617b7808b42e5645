//! `[log]`: how the daemon logs, and where its spans go when `otlp_endpoint` is set.

use serde::Deserialize;

use super::source::Problems;

/// True when this build can export spans (cargo feature `otlp`); without it a config that sets
/// `log.otlp_endpoint` is refused.
pub const OTLP_BUILT_IN: bool = cfg!(feature = "otlp");

/// `[log]`: what the daemon logs, and how. `XPOOL_LOG` or `RUST_LOG` in the environment
/// override `level`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `warn`, `xpool=debug,info`.
    pub level: String,
    /// An OpenTelemetry collector's OTLP/gRPC endpoint, `http://host:port`: the daemon's spans
    /// (each gRPC call's, with the log lines it wrote as events) are exported there in
    /// batches. `None`: no export. Needs a build with the cargo feature `otlp`.
    pub otlp_endpoint: Option<String>,
    /// The exported `service.name`.
    pub otlp_service_name: String,
    /// The share of calls whose spans are exported, 0.0 to 1.0.
    pub otlp_sample_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
            otlp_endpoint: None,
            otlp_service_name: "xpool".to_owned(),
            otlp_sample_ratio: 1.0,
        }
    }
}

/// How each log line is written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields`, and the request's
    /// span (`span`, `spans`).
    Json,
}

/// Checks `[log]` as a whole; `built_in` is [`OTLP_BUILT_IN`] (a parameter, so both builds'
/// answers are tested in either).
pub(super) fn check(log: &LogConfig, built_in: bool, problems: &mut Problems) {
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log.level) {
        problems.push(
            "log.level",
            format!("{:?} is not a log filter: {e}", log.level),
        );
    }
    if let Some(endpoint) = &log.otlp_endpoint {
        if !built_in {
            let message = "is set, but this xpool was built without OpenTelemetry export: build \
                 it with the cargo feature `otlp` (cargo build --release --features otlp), or \
                 remove the key";
            problems.push("log.otlp_endpoint", message);
        } else if let Err(message) = check_endpoint(endpoint) {
            problems.push("log.otlp_endpoint", message);
        }
    }
    if log.otlp_service_name.trim().is_empty() {
        problems.push("log.otlp_service_name", "must not be empty");
    }
    if !(0.0..=1.0).contains(&log.otlp_sample_ratio) {
        let message = format!("{} is not 0.0 to 1.0", log.otlp_sample_ratio);
        problems.push("log.otlp_sample_ratio", message);
    }
}

/// An OTLP/gRPC endpoint: `http://host:port`, nothing after the port.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let shape = "(expected http://host:port, the collector's OTLP/gRPC port, usually 4317)";
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("{endpoint:?} is not a URL: {e} {shape}"))?;
    if url.scheme() == "https" {
        return Err(format!(
            "{endpoint:?}: https is not supported yet; reach the collector over http (e.g. a \
             collector or agent beside the daemon that forwards over TLS) {shape}"
        ));
    }
    if url.scheme() != "http" || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} is not an http://host URL {shape}"));
    }
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{endpoint:?} has a path, query or user; OTLP/gRPC takes none (an address ending \
             in /v1/traces is OTLP/HTTP, which this exporter does not speak) {shape}"
        ));
    }
    Ok(())
}
