//! The daemon's Prometheus metrics (`prometheus-client`), served on the admin listener's
//! `/metrics` with `/healthz` and `/readyz` (see `daemon::admin`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `reason` of a store failure: `full` or `failed`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every metric the daemon keeps; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while the store takes writes, 0 while it refuses them after a failed write.
    pub store_writable: Gauge,
    /// Times the store failed a write and began refusing writes, by reason.
    pub store_failures: Family<ReasonLabel, Counter>,
    /// Times the store recovered from a failure and took writes again.
    pub store_recoveries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with(Vec::new())
    }
}

impl Metrics {
    /// The daemon's metrics, and `collectors` read at each scrape.
    pub fn with(collectors: Vec<Box<dyn Collector>>) -> Self {
        let mut registry = Registry::with_prefix("xpool");
        for collector in collectors {
            registry.register_collector(collector);
        }
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
        Metrics {
            registry,
            store_writable,
            store_failures,
            store_recoveries,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
