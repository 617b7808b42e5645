//! The daemon's Prometheus metrics (`prometheus-client`), served on the admin listener's
//! `/metrics` with `/healthz` and `/readyz` (see `daemon::admin`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A counter kept elsewhere (by the domain, which knows nothing of Prometheus), read at each
/// scrape.
pub struct ReadCounter {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl ReadCounter {
    pub fn new(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        ReadCounter {
            name,
            help,
            read: Box::new(read),
        }
    }
}

impl std::fmt::Debug for ReadCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCounter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for ReadCounter {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        let counter = prometheus_client::metrics::counter::ConstCounter::new((self.read)());
        counter.encode(encoder.encode_descriptor(
            self.name,
            self.help,
            None,
            counter.metric_type(),
        )?)
    }
}

/// `reason` of a store failure: `full` or `failed`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// `kind` of a push (`callEvent`, `fee`, `numStatus`, `sms`, `unknown`) and what came of it
/// (`ok`, `duplicate`, `bad_json`, `unknown_kind`, `wrong_path`, `too_large`, `bad_signature`,
/// `forbidden`, `bad_method`, `unknown_app`, `unavailable`, and in cluster mode `forwarded`:
/// sent on to the app's leader, which counts what came of it).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

/// What came of a call that cluster mode would forward to its app's leader: `forwarded` (the
/// leader answered, whatever its status), `unreachable`, `timed_out`, `refused_loop` (it had
/// been forwarded to this replica already), `no_leader` (nobody to send it to).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// `operation` of an X-mode callin answer: `connect` or `close`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

/// What the push receiver counts (`crate::pushes`).
#[derive(Debug)]
pub struct PushMetrics {
    /// Pushes by kind and outcome.
    pub pushes: Family<PushLabels, Counter>,
    /// Entries of batched pushes (CDR records, numbers of a numStatus) by kind and outcome
    /// (`stored`, `duplicate`, `changed`, `unchanged`, `skipped`, `malformed`).
    pub entries: Family<PushLabels, Counter>,
    /// X-mode callins answered, by operation.
    pub callin_answers: Family<OperationLabel, Counter>,
    /// From a callin's arrival to its answer being ready, in seconds.
    pub callin_answer_seconds: Histogram,
}

impl PushMetrics {
    fn register(registry: &mut Declared<'_>) -> Self {
        let metrics = PushMetrics {
            pushes: Family::default(),
            entries: Family::default(),
            callin_answers: Family::default(),
            // 50 µs to ~3 s.
            callin_answer_seconds: Histogram::new(exponential_buckets(0.000_05, 4.0, 9)),
        };
        registry.register(
            "pushes",
            "Platform pushes received, by kind and outcome",
            metrics.pushes.clone(),
        );
        registry.register(
            "push_entries",
            "Entries of CDR and number status pushes, by kind and outcome",
            metrics.entries.clone(),
        );
        registry.register(
            "callin_answers",
            "X-mode callins answered, by operation (connect or close)",
            metrics.callin_answers.clone(),
        );
        registry.register(
            "callin_answer_seconds",
            "Time from an X-mode callin's arrival to its answer",
            metrics.callin_answer_seconds.clone(),
        );
        metrics
    }

    /// Counts one push of `kind` with `outcome`.
    pub fn push(&self, kind: &'static str, outcome: &'static str) {
        self.pushes
            .get_or_create(&PushLabels { kind, outcome })
            .inc();
    }

    /// Counts `n` entries of a push of `kind` with `outcome`.
    pub fn entries(&self, kind: &'static str, outcome: &'static str, n: u32) {
        if n > 0 {
            let counter = self.entries.get_or_create(&PushLabels { kind, outcome });
            counter.inc_by(u64::from(n));
        }
    }
}

/// `method` and `code` of a gRPC call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: String,
    pub code: &'static str,
}

/// `method` of a gRPC call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

/// `app` and `outcome` of a Bind: `ok`, or the reason it was refused (`POOL_EXHAUSTED`…).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BindLabels {
    pub app: String,
    pub outcome: &'static str,
}

/// `app` alone.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub app: String,
}

/// `app`, `operation` and `result` of a platform call (`ok`, or the error's class).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub app: String,
    pub operation: &'static str,
    pub result: &'static str,
}

/// `app` and `operation` of a platform call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub app: String,
    pub operation: &'static str,
}

/// `state` a reconciliation run ended in.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// `app` and `kind` of drift a reconciliation run fixed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    pub app: String,
    pub kind: &'static str,
}

/// A registry that remembers the names registered in it.
struct Declared<'a> {
    registry: &'a mut Registry,
    names: &'a mut Vec<&'static str>,
}

impl Declared<'_> {
    fn register(
        &mut self,
        name: &'static str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.names.push(name);
        self.registry.register(name, help, metric);
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets, 0.5 ms to ~30 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// What the platform client counts, shared by every app's client (each labels with its app).
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    pub calls: Family<UpstreamLabels, Counter>,
    pub call_seconds: Histograms<OperationLabels>,
    /// Calls that had to wait for the app's rate limiter.
    pub limiter_waits: Family<AppLabel, Counter>,
    /// Calls the limiter refused (the wait would pass the call's deadline).
    pub limiter_refusals: Family<AppLabel, Counter>,
}

impl UpstreamMetrics {
    fn register(registry: &mut Declared<'_>) -> Self {
        let metrics = UpstreamMetrics {
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency),
            limiter_waits: Family::default(),
            limiter_refusals: Family::default(),
        };
        registry.register(
            "upstream_calls",
            "Platform calls by app, operation and result (ok, or the error's class)",
            metrics.calls.clone(),
        );
        registry.register(
            "upstream_call_seconds",
            "Platform call latency by app and operation",
            metrics.call_seconds.clone(),
        );
        registry.register(
            "upstream_limiter_waits",
            "Platform calls that waited for the app's rate limiter",
            metrics.limiter_waits.clone(),
        );
        registry.register(
            "upstream_limiter_refusals",
            "Platform calls the app's rate limiter refused (the wait would pass the deadline)",
            metrics.limiter_refusals.clone(),
        );
        metrics
    }
}

/// The store's group commits.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    /// Each group commit's write and `fdatasync`, in seconds.
    pub sync_seconds: Histogram,
    /// Records per group commit.
    pub batch_records: Histogram,
}

/// Every metric the daemon keeps; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The names of the metric families registered (collectors' aside).
    declared: Vec<&'static str>,
    /// 1 while the store takes writes, 0 while it refuses them after a failed write.
    pub store_writable: Gauge,
    /// Times the store failed a write and began refusing writes, by reason.
    pub store_failures: Family<ReasonLabel, Counter>,
    /// Times the store recovered from a failure and took writes again.
    pub store_recoveries: Counter,
    /// The push receiver's counts.
    pub pushes: PushMetrics,
    /// gRPC calls refused by authentication or authorisation, by reason (`no_token`,
    /// `malformed`, `unknown_token`, `rate_limited`, `scope`).
    pub auth_refusals: Family<ReasonLabel, Counter>,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    pub grpc_request_seconds: Histograms<MethodLabel>,
    pub binds: Family<BindLabels, Counter>,
    pub upstream: UpstreamMetrics,
    pub log: LogMetrics,
    pub reconcile_runs: Family<StateLabel, Counter>,
    pub reconcile_drift: Family<DriftLabels, Counter>,
    /// Cluster mode: calls for an app led by another replica, by outcome.
    pub forwarded_calls: Family<OutcomeLabel, Counter>,
    /// 1 where this replica can serve the app's calls now (itself, or through its leader).
    pub app_serving: Family<AppLabel, Gauge>,
    /// 1 where this replica serves the app itself (on a single node, every app).
    pub app_leading: Family<AppLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with(Vec::new())
    }
}

impl Metrics {
    /// The daemon's metrics, and `collectors` read at each scrape.
    pub fn with(collectors: Vec<Box<dyn Collector>>) -> Self {
        let mut inner = Registry::with_prefix("xpool");
        for collector in collectors {
            inner.register_collector(collector);
        }
        let mut declared = Vec::new();
        let mut registry = Declared {
            registry: &mut inner,
            names: &mut declared,
        };
        let store_writable = Gauge::default();
        store_writable.set(1);
        registry.register(
            "store_writable",
            "1 while the store takes writes, 0 while it refuses them after a failed write",
            store_writable.clone(),
        );
        let store_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "store_failures",
            "Times the store failed a write (reason full or failed) and began refusing writes",
            store_failures.clone(),
        );
        let store_recoveries = Counter::default();
        registry.register(
            "store_recoveries",
            "Times the store recovered from a failed write and took writes again",
            store_recoveries.clone(),
        );
        let pushes = PushMetrics::register(&mut registry);
        let auth_refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "auth_refusals",
            "gRPC calls refused by authentication or authorisation, by reason",
            auth_refusals.clone(),
        );
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC calls by method and status code",
            grpc_requests.clone(),
        );
        let grpc_request_seconds: Histograms<MethodLabel> = Family::new_with_constructor(latency);
        registry.register(
            "grpc_request_seconds",
            "gRPC call latency by method (a streaming call: until its stream ends)",
            grpc_request_seconds.clone(),
        );
        let binds = Family::<BindLabels, Counter>::default();
        registry.register(
            "binds",
            "Binds by app and outcome (ok, or the reason they were refused)",
            binds.clone(),
        );
        let upstream = UpstreamMetrics::register(&mut registry);
        let log = LogMetrics {
            // 50 µs to ~3 s.
            sync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        };
        registry.register(
            "log_sync_seconds",
            "Each group commit's write and fdatasync of the store's log",
            log.sync_seconds.clone(),
        );
        registry.register(
            "log_batch_records",
            "Records made durable by one group commit",
            log.batch_records.clone(),
        );
        let reconcile_runs = Family::<StateLabel, Counter>::default();
        registry.register(
            "reconcile_runs",
            "Reconciliation runs by the state they ended in",
            reconcile_runs.clone(),
        );
        let reconcile_drift = Family::<DriftLabels, Counter>::default();
        registry.register(
            "reconcile_drift",
            "Differences with the platform that reconciliation fixed, by app and kind",
            reconcile_drift.clone(),
        );
        let forwarded_calls = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "forwarded_calls",
            "Cluster mode: calls for an app another replica leads, sent to it or refused, by outcome",
            forwarded_calls.clone(),
        );
        let app_serving = Family::<AppLabel, Gauge>::default();
        registry.register(
            "app_serving",
            "1 where this replica can serve the app's calls now (itself, or forwarded to its leader)",
            app_serving.clone(),
        );
        let app_leading = Family::<AppLabel, Gauge>::default();
        registry.register(
            "app_leading",
            "1 where this replica serves the app itself (in cluster mode: leads it)",
            app_leading.clone(),
        );
        Metrics {
            registry: inner,
            declared,
            store_writable,
            store_failures,
            store_recoveries,
            pushes,
            auth_refusals,
            grpc_requests,
            grpc_request_seconds,
            binds,
            upstream,
            log,
            reconcile_runs,
            reconcile_drift,
            forwarded_calls,
            app_serving,
            app_leading,
        }
    }

    /// Every metric family registered, by its full name (`xpool_binds`), whether or not it has
    /// a series yet (a labelled family shows in a scrape only once it has one); the collectors'
    /// families are always in a scrape.
    pub fn declared(&self) -> impl Iterator<Item = String> + '_ {
        self.declared.iter().map(|name| format!("xpool_{name}"))
    }

    /// Adds a collector read at each scrape (before the metrics are shared).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// Counts a gRPC call of `method` that ended with `code` after `took`.
    pub fn grpc_request(&self, method: String, code: &'static str, took: std::time::Duration) {
        self.grpc_request_seconds
            .get_or_create(&MethodLabel {
                method: method.clone(),
            })
            .observe(took.as_secs_f64());
        self.grpc_requests
            .get_or_create(&GrpcLabels { method, code })
            .inc();
    }

    /// Counts a Bind of `app` with `outcome`.
    pub fn bind(&self, app: &str, outcome: &'static str) {
        self.binds
            .get_or_create(&BindLabels {
                app: app.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts a call for an app another replica leads, by what came of it.
    pub fn forwarded_call(&self, outcome: &'static str) {
        self.forwarded_calls
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a call refused for `reason`.
    pub fn auth_refusal(&self, reason: &'static str) {
        self.auth_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn a_read_counter_is_read_at_each_scrape() {
        let kept = Arc::new(AtomicU64::new(0));
        let read = Arc::clone(&kept);
        let metrics = Metrics::with(vec![Box::new(ReadCounter::new(
            "retention_deleted",
            "Deleted",
            move || read.load(Ordering::Relaxed),
        ))]);
        assert!(
            metrics
                .render()
                .contains("xpool_retention_deleted_total 0\n")
        );
        kept.store(3, Ordering::Relaxed);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE xpool_retention_deleted counter\n"),
            "{text}"
        );
        assert!(text.contains("xpool_retention_deleted_total 3\n"), "{text}");
    }

    #[test]
    fn pushes_are_counted_by_kind_and_outcome() {
        let metrics = Metrics::default();
        metrics.pushes.push("fee", "ok");
        metrics.pushes.push("fee", "ok");
        metrics.pushes.push("unknown", "bad_json");
        metrics.pushes.entries("fee", "malformed", 3);
        metrics.pushes.entries("fee", "skipped", 0);
        metrics.pushes.callin_answer_seconds.observe(0.001);
        let text = metrics.render();
        for line in [
            "xpool_pushes_total{kind=\"fee\",outcome=\"ok\"} 2\n",
            "xpool_pushes_total{kind=\"unknown\",outcome=\"bad_json\"} 1\n",
            "xpool_push_entries_total{kind=\"fee\",outcome=\"malformed\"} 3\n",
            "xpool_callin_answer_seconds_count 1\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(
            !text.contains("outcome=\"skipped\""),
            "no series for nothing: {text}"
        );
    }
}
