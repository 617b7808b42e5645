//! `[log] otlp_endpoint` (cargo feature `otlp`): the daemon's spans to an OpenTelemetry
//! collector over OTLP/gRPC.
//!
//! A span ends into a bounded queue that a thread of the SDK's batch processor exports from,
//! so a call never waits for the collector: when the collector is down or slow, exports fail
//! or time out, the queue fills, and spans are dropped (a warning at most once a minute says
//! how many). Only the daemon's own spans (target `xpool…`) are exported, at the log level the
//! log lines have: the HTTP/2 and gRPC libraries' spans never are, not even at `debug` (they
//! would trace the exporter's own calls too).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
use xpool::config::LogConfig;

use super::logging::BoxedLayer;

/// Longest one export may take (connect, send, the collector's answer) before it fails.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans waiting for export at most; beyond that new ones are dropped.
const MAX_QUEUED_SPANS: usize = 8192;
/// How long the exit waits for the queued spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Export failures are reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The exporter's provider: owns the batch processor's thread and its queue, until
/// [`Export::shutdown`].
#[derive(Debug)]
pub struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// Exports what is queued, waiting at most [`FLUSH_TIMEOUT`], and stops the exporter.
    pub fn shutdown(self) {
        match self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            Ok(()) => tracing::info!("OpenTelemetry span export stopped"),
            Err(e) => tracing::warn!(
                error = %e,
                "spans still queued for the OpenTelemetry collector at exit were dropped"
            ),
        }
    }
}

/// The layer that hands the daemon's spans (those `filter` passes) to the exporter of
/// `endpoint`, and the [`Export`] to shut down at exit. Call it within a tokio runtime.
pub fn layer(
    log: &LogConfig,
    endpoint: &str,
    node_id: Option<&str>,
    filter: EnvFilter,
) -> anyhow::Result<(BoxedLayer, Export)> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("log.otlp_endpoint: exporter for {endpoint:?}"))?;
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUED_SPANS)
        .build();
    let processor = BatchSpanProcessor::builder(Reported::new(exporter))
        .with_batch_config(batches)
        .build();
    let sampler = Sampler::TraceIdRatioBased(log.otlp_sample_ratio);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource(&log.otlp_service_name, node_id))
        .with_sampler(Sampler::ParentBased(Box::new(sampler)))
        .build();
    let own = filter_fn(|meta| meta.target().starts_with("xpool"));
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("xpool"))
        .with_filter(filter.and(own))
        .boxed();
    Ok((layer, Export { provider }))
}

/// `service.name`, `service.version`, and in cluster mode the node id as
/// `service.instance.id`.
fn resource(service_name: &str, node_id: Option<&str>) -> Resource {
    let mut resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(node_id) = node_id {
        resource =
            resource.with_attribute(KeyValue::new("service.instance.id", node_id.to_owned()));
    }
    resource.build()
}

/// The OTLP exporter, with its failures logged at most once per [`REPORT_EVERY`] (the SDK
/// itself says nothing without its internal logs).
#[derive(Debug)]
struct Reported<E> {
    inner: E,
    failures: Mutex<Failures>,
}

/// Export failures since the last report.
#[derive(Debug, Default)]
struct Failures {
    last_report: Option<Instant>,
    /// Spans dropped since then.
    spans: usize,
    /// True from a failed export until one succeeds.
    failing: bool,
}

impl<E> Reported<E> {
    fn new(inner: E) -> Self {
        Reported {
            inner,
            failures: Mutex::new(Failures::default()),
        }
    }

    fn record(&self, spans: usize, result: &OTelSdkResult) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        match result {
            Ok(()) if failures.failing => {
                tracing::info!(
                    dropped_spans = failures.spans,
                    "spans reach the OpenTelemetry collector again"
                );
                failures.failing = false;
                failures.spans = 0;
            }
            Ok(()) => {}
            Err(e) => {
                failures.failing = true;
                failures.spans += spans;
                let due = failures
                    .last_report
                    .is_none_or(|at| at.elapsed() >= REPORT_EVERY);
                if due {
                    report(e, failures.spans);
                    failures.spans = 0;
                    failures.last_report = Some(Instant::now());
                }
            }
        }
    }
}

fn report(error: &OTelSdkError, dropped: usize) {
    tracing::warn!(
        error = %error,
        dropped_spans = dropped,
        "spans could not be exported to the OpenTelemetry collector and were dropped; calls \
         are not affected (next report in a minute at the earliest)"
    );
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.record(spans, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::{Key, Value};

    use super::resource;

    #[test]
    fn the_resource_names_the_service_its_version_and_in_a_cluster_the_node() {
        let get = |resource: &opentelemetry_sdk::Resource, key: &'static str| {
            resource.get(&Key::from_static_str(key))
        };
        let alone = resource("xpool-eu", None);
        assert_eq!(get(&alone, "service.name"), Some(Value::from("xpool-eu")));
        assert_eq!(
            get(&alone, "service.version"),
            Some(Value::from(env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(get(&alone, "service.instance.id"), None);
        let replica = resource("xpool", Some("node-b"));
        assert_eq!(
            get(&replica, "service.instance.id"),
            Some(Value::from("node-b"))
        );
    }
}
