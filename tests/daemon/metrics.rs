//! `/metrics` as Prometheus reads it: parsed by a Prometheus text parser, the series the
//! operator's dashboards and alerts use are there, and they move after Binds, a refusal and a
//! reconciliation. Every `xpool_*` metric the shipped dashboard and alert rules name exists.

use std::collections::BTreeSet;

use prometheus_parse::{Sample, Scrape, Value};
use tonic::Code;
use xpool::grpc::pb;

use crate::support::*;

struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

async fn scrape(port: u16) -> Metrics {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
    Metrics {
        text,
        samples: scrape.samples,
    }
}

impl Metrics {
    /// The sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(_) | Value::Summary(_) => 0.0,
            })
            .sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples
            .iter()
            .any(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// The metric families in the scrape (`# TYPE name …`).
    fn families(&self) -> BTreeSet<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

const BIND: &str = "/xpool.v1.BindingService/Bind";

#[tokio::test]
async fn the_series_operators_use_are_there_and_move() {
    let d = Daemon::start_with(
        Setup::standard()
            .only(&["rides", "local"])
            .daemon_section("[admin]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .await;
    let admin = d.admin.expect("the admin listener");
    let before = scrape(admin).await;
    assert_eq!(before.sum("xpool_store_writable", &[]), 1.0);
    assert_eq!(before.sum("xpool_expiry_lag_seconds", &[]), 0.0);
    assert_eq!(
        before.sum("xpool_upstream_circuit_open", &[("app", "rides")]),
        0.0
    );
    assert!(
        before.has("xpool_upstream_circuit_open", &[("app", "rides")])
            && !before.has("xpool_upstream_circuit_open", &[("app", "local")]),
        "a circuit for each app with a platform"
    );
    let free_before = before.sum("xpool_pool_numbers", &[("app", "rides"), ("state", "free")]);
    assert_eq!(
        before.sum("xpool_pool_size", &[("app", "rides")]),
        4.0,
        "rides' four numbers:\n{}",
        before.text
    );
    assert_eq!(free_before, 4.0, "all free before any Bind");
    assert!(before.has(
        "xpool_pool_numbers",
        &[("app", "rides"), ("area", "0755"), ("state", "free")]
    ));

    d.bind_ok(bind("rides", &party(1), Some(&party(2)))).await;
    d.bind_ok(bind("local", &party(3), Some(&party(4)))).await;
    d.bind_refused(bind("nope", &party(5), Some(&party(6))), Code::NotFound)
        .await;
    let run = d.reconcile("rides").await;
    assert_eq!(run.state(), pb::ReconcileRunState::Succeeded);

    let after = scrape(admin).await;
    let binds =
        |app, outcome| after.sum("xpool_binds_total", &[("app", app), ("outcome", outcome)]);
    assert_eq!(binds("rides", "ok"), 1.0, "{}", after.text);
    assert_eq!(binds("local", "ok"), 1.0);
    assert_eq!(
        binds("unknown", "UNKNOWN_APP"),
        1.0,
        "an unknown app is not a label"
    );
    assert!(!after.text.contains("app=\"nope\""));
    assert_eq!(
        after.sum(
            "xpool_grpc_requests_total",
            &[("method", BIND), ("code", "OK")]
        ),
        2.0
    );
    assert_eq!(
        after.sum(
            "xpool_grpc_requests_total",
            &[("method", BIND), ("code", "NOT_FOUND")]
        ),
        1.0
    );
    assert_eq!(
        after.sum("xpool_grpc_request_seconds_count", &[("method", BIND)]),
        3.0
    );
    assert!(
        after.sum(
            "xpool_upstream_calls_total",
            &[("app", "rides"), ("result", "ok")]
        ) >= 2.0,
        "the bind and the reconciliation's queries:\n{}",
        after.text
    );
    assert!(after.sum("xpool_upstream_call_seconds_count", &[("app", "rides")]) >= 2.0);
    assert!(
        after.sum("xpool_log_sync_seconds_count", &[])
            > before.sum("xpool_log_sync_seconds_count", &[]),
        "group commits are measured"
    );
    assert!(
        after.sum("xpool_log_batch_records_sum", &[])
            >= before.sum("xpool_log_batch_records_sum", &[]) + 2.0
    );
    assert_eq!(
        after.sum(
            "xpool_pool_numbers",
            &[("app", "rides"), ("state", "bound")]
        ),
        1.0
    );
    assert_eq!(
        after.sum("xpool_pool_numbers", &[("app", "rides"), ("state", "free")]),
        free_before,
        "an AXB number with room stays free"
    );
    assert_eq!(
        after.sum("xpool_reconcile_runs_total", &[("state", "succeeded")]),
        1.0
    );
    for app in ["rides", "local"] {
        let state = |state| after.sum("xpool_bindings", &[("app", app), ("state", state)]);
        assert_eq!(
            (state("active"), state("pending"), state("releasing")),
            (1.0, 0.0, 0.0),
            "{app}:\n{}",
            after.text
        );
    }

    // Every metric the shipped dashboard and alert rules use is one the daemon exports (a
    // labelled family shows only once it has a series: those are taken from the registry).
    let mut families = after.families();
    families.extend(xpool::metrics::Metrics::default().declared());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for file in [
        "deploy/prometheus-rules.yaml",
        "deploy/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for name in metric_names(&text) {
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| families.contains(*f)))
                .unwrap_or(&name);
            if !families.contains(family) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}\n{families:?}"
    );
    d.stop().await;
}

/// The `xpool_…` identifiers in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("xpool_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..at].chars().last();
        if end > "xpool_".len() && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}
