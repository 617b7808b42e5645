//! Gauges read from the pool at each scrape: each app's numbers by area and state, its
//! bindings by state, its circuit, and how far expiry is behind.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::lifecycle::{Clock, Pool};
use crate::store::Store;
use crate::upstream::Circuit;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NumberLabels {
    app: String,
    area: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AreaLabels {
    app: String,
    area: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    app: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabel {
    app: String,
}

/// The pool's gauges, computed at each scrape.
#[derive(Debug)]
pub struct PoolGauges {
    pub pool: Arc<Pool>,
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// `expiry.skew_grace_seconds`: a deadline is overdue only once this has passed too.
    pub skew_grace_ms: i64,
}

impl Collector for PoolGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut apps: Vec<_> = self.pool.apps().collect();
        apps.sort_by(|a, b| a.name().cmp(b.name()));
        // One pass over each app's index for both area metrics.
        let stats: Vec<_> = apps.iter().map(|app| (app.name(), app.stats())).collect();

        let mut numbers = encoder.encode_descriptor(
            "pool_numbers",
            "Numbers by app, area and state (free: a Bind could get it now; bound: it carries a \
             binding; held: the platform holds it out of rotation); states overlap",
            None,
            MetricType::Gauge,
        )?;
        for (app, areas) in &stats {
            for area in areas {
                for (state, count) in [
                    ("free", area.free),
                    ("bound", area.bound),
                    ("cooling", area.cooling_down),
                    ("draining", area.draining),
                    ("held", area.held_by_platform),
                ] {
                    let labels = NumberLabels {
                        app: (*app).to_owned(),
                        area: area.area_code.clone(),
                        state,
                    };
                    ConstGauge::new(i64::from(count)).encode(numbers.encode_family(&labels)?)?;
                }
            }
        }

        let mut size = encoder.encode_descriptor(
            "pool_size",
            "Numbers in the pool by app and area, whatever their state (the states of \
             pool_numbers overlap: an AXB or X-mode number with room is both bound and free)",
            None,
            MetricType::Gauge,
        )?;
        for (app, areas) in &stats {
            for area in areas {
                let labels = AreaLabels {
                    app: (*app).to_owned(),
                    area: area.area_code.clone(),
                };
                ConstGauge::new(i64::from(area.total)).encode(size.encode_family(&labels)?)?;
            }
        }

        let mut circuit = encoder.encode_descriptor(
            "upstream_circuit_open",
            "1 while the app's circuit breaker is open (the platform refused its credentials)",
            None,
            MetricType::Gauge,
        )?;
        for app in &apps {
            if let Some(platform) = app.info().platform {
                let open = i64::from(platform.circuit == Some(Circuit::Open));
                let labels = AppLabel {
                    app: app.name().to_owned(),
                };
                ConstGauge::new(open).encode(circuit.encode_family(&labels)?)?;
            }
        }

        // Live bindings, and of them those in doubt (PENDING: a bind whose answer was lost;
        // RELEASING: an unbind not yet confirmed), from the store's small index of open ones.
        let mut open: std::collections::BTreeMap<(String, &'static str), i64> = Default::default();
        for b in self.store.open_bindings().unwrap_or_default() {
            let state = match b.state {
                crate::store::BindingState::Pending => "pending",
                crate::store::BindingState::Releasing => "releasing",
                _ => continue,
            };
            *open.entry((b.app.clone(), state)).or_default() += 1;
        }
        let mut bindings = encoder.encode_descriptor(
            "bindings",
            "Bindings holding a slot, by app and state (active, pending, releasing)",
            None,
            MetricType::Gauge,
        )?;
        for app in &apps {
            let live = i64::try_from(app.live_bindings()).unwrap_or(i64::MAX);
            let mut in_doubt = 0;
            for state in ["pending", "releasing"] {
                let n = open
                    .get(&(app.name().to_owned(), state))
                    .copied()
                    .unwrap_or(0);
                in_doubt += n;
                let labels = StateLabels {
                    app: app.name().to_owned(),
                    state,
                };
                ConstGauge::new(n).encode(bindings.encode_family(&labels)?)?;
            }
            let labels = StateLabels {
                app: app.name().to_owned(),
                state: "active",
            };
            ConstGauge::new((live - in_doubt).max(0)).encode(bindings.encode_family(&labels)?)?;
        }

        // A store that cannot be read reports no lag rather than failing the scrape.
        let oldest = self.store.next_deadline_ms().ok().flatten();
        let lag_ms = oldest.map_or(0, |deadline| {
            (self.clock.now_ms() - deadline - self.skew_grace_ms).max(0)
        });
        let lag = ConstGauge::new(lag_ms as f64 / 1000.0);
        lag.encode(encoder.encode_descriptor(
            "expiry_lag_seconds",
            "How long the oldest deadline has been due (past the skew grace) without its \
             binding leaving ACTIVE; 0 when expiry keeps up",
            None,
            lag.metric_type(),
        )?)
    }
}
