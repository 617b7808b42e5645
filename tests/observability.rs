//! Checks `deploy/prometheus-rules.yaml` and `deploy/grafana-dashboard.json` against the
//! metrics the daemon exports: the alerts on-call needs are there and say what to do, every
//! PromQL expression names only exported series, every dashboard panel queries something. Where
//! `promtool` is installed (Debian: `apt-get install prometheus`), it checks the rules, the
//! dashboard's queries and the rules' behaviour (`tests/observability/rules-test.yaml`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// What a metric is, which decides the series names it is exported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Exported as the name itself, which ends in `_total`.
    Counter,
    Gauge,
    /// Exported as `NAME_bucket`, `NAME_sum` and `NAME_count`; NAME alone is no series.
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric the daemon exports on `/metrics`, with its labels.
const METRICS: &[(&str, Kind, &[&str])] = &[
    ("xpool_grpc_requests_total", Counter, &["method", "code"]),
    ("xpool_grpc_request_seconds", Histogram, &["method"]),
    ("xpool_binds_total", Counter, &["app", "outcome"]),
    ("xpool_pool_numbers", Gauge, &["app", "area", "state"]),
    ("xpool_pool_size", Gauge, &["app", "area"]),
    (
        "xpool_upstream_calls_total",
        Counter,
        &["app", "operation", "result"],
    ),
    (
        "xpool_upstream_call_seconds",
        Histogram,
        &["app", "operation"],
    ),
    ("xpool_upstream_limiter_waits_total", Counter, &["app"]),
    ("xpool_upstream_limiter_refusals_total", Counter, &["app"]),
    ("xpool_upstream_circuit_open", Gauge, &["app"]),
    ("xpool_log_sync_seconds", Histogram, &[]),
    ("xpool_log_batch_records", Histogram, &[]),
    ("xpool_expiry_lag_seconds", Gauge, &[]),
    ("xpool_reconcile_runs_total", Counter, &["state"]),
    ("xpool_reconcile_drift_total", Counter, &["app", "kind"]),
    ("xpool_store_writable", Gauge, &[]),
    ("xpool_store_failures_total", Counter, &["reason"]),
    ("xpool_grpc_connections_open", Gauge, &[]),
    ("xpool_grpc_connections_refused_total", Counter, &[]),
    ("xpool_grpc_tls_handshake_failures_total", Counter, &[]),
    ("xpool_auth_refusals_total", Counter, &["reason"]),
    ("xpool_pushes_total", Counter, &["kind", "outcome"]),
    ("xpool_push_entries_total", Counter, &["kind", "outcome"]),
    ("xpool_callin_answers_total", Counter, &["operation"]),
    ("xpool_callin_answer_seconds", Histogram, &[]),
    ("xpool_retention_deleted_total", Counter, &[]),
];

/// The alerts on-call needs, each with what its expression must contain to watch the right
/// thing.
const REQUIRED_ALERTS: &[(&str, &[&str])] = &[
    (
        "XpoolPoolHeadroomLow",
        &["xpool_pool_numbers{state=\"free\"}", "< 0.10"],
    ),
    ("XpoolExpiryLagging", &["xpool_expiry_lag_seconds > 60"]),
    ("XpoolCircuitOpen", &["xpool_upstream_circuit_open"]),
    (
        "XpoolReconcileDrift",
        &["increase(xpool_reconcile_drift_total["],
    ),
    ("XpoolStoreNotWritable", &["xpool_store_writable == 0"]),
    (
        "XpoolBindErrorRatioHigh",
        &["xpool_grpc_requests_total{method=\"/xpool.v1.BindingService/Bind\""],
    ),
    (
        "XpoolTlsHandshakeFailures",
        &["xpool_grpc_tls_handshake_failures_total"],
    ),
    ("XpoolAuthRefusals", &["xpool_auth_refusals_total"]),
];

const SEVERITIES: &[&str] = &["critical", "warning", "info"];

/// The Bind method's histogram, which the latency panel must use.
const BIND_LATENCY: &str =
    "xpool_grpc_request_seconds_bucket{method=\"/xpool.v1.BindingService/Bind\"}";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rules_path() -> PathBuf {
    root().join("deploy/prometheus-rules.yaml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn rules() -> Yaml {
    serde_yaml_ng::from_str(&read(&rules_path()))
        .unwrap_or_else(|e| panic!("deploy/prometheus-rules.yaml: not valid YAML: {e}"))
}

fn dashboard() -> Json {
    serde_json::from_str(&read(&root().join("deploy/grafana-dashboard.json")))
        .unwrap_or_else(|e| panic!("deploy/grafana-dashboard.json: not valid JSON: {e}"))
}

fn seq(value: &Yaml) -> &[Yaml] {
    value.as_sequence().map_or(&[], Vec::as_slice)
}

fn text<'a>(value: &'a Yaml, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

/// Every rule of every group, with its group's name; panics on a file without groups.
fn all_rules(rules: &Yaml) -> Vec<(String, &Yaml)> {
    let groups = seq(&rules["groups"]);
    assert!(!groups.is_empty(), "prometheus-rules.yaml: no `groups:`");
    let mut all = Vec::new();
    for group in groups {
        let name = text(group, "name");
        assert!(!name.is_empty(), "a rule group without a name");
        let group_rules = seq(&group["rules"]);
        assert!(!group_rules.is_empty(), "group {name}: no rules");
        all.extend(group_rules.iter().map(|rule| (name.to_owned(), rule)));
    }
    all
}

/// The alerting rules by name; panics on a name used twice.
fn alerts(rules: &Yaml) -> BTreeMap<String, &Yaml> {
    let mut alerts = BTreeMap::new();
    for (_, rule) in all_rules(rules) {
        let name = text(rule, "alert");
        if !name.is_empty() {
            let before = alerts.insert(name.to_owned(), rule);
            assert!(before.is_none(), "alert {name} is defined twice");
        }
    }
    alerts
}

/// Every panel, those inside collapsed rows too.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut all = Vec::new();
    let mut stack: Vec<&Json> = dashboard["panels"]
        .as_array()
        .map(|panels| panels.iter().rev().collect())
        .unwrap_or_default();
    while let Some(panel) = stack.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            stack.extend(inner.iter().rev());
        }
        all.push(panel);
    }
    all
}

fn is_row(panel: &Json) -> bool {
    panel["type"] == "row"
}

fn title(panel: &Json) -> &str {
    panel["title"].as_str().unwrap_or("(untitled)")
}

/// Every PromQL expression of both files, with where it is: the rules' `expr`, the panels'
/// targets, and the template variables' queries.
fn expressions() -> Vec<(String, String)> {
    let rules = rules();
    let mut exprs = Vec::new();
    for (group, rule) in all_rules(&rules) {
        let name = [text(rule, "alert"), text(rule, "record")].concat();
        exprs.push((
            format!("rule {group}/{name}"),
            text(rule, "expr").to_owned(),
        ));
    }
    let dashboard = dashboard();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            exprs.push((format!("panel {:?}", title(panel)), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
    {
        let query = match &variable["query"] {
            Json::String(query) => query.as_str(),
            query => query["query"].as_str().unwrap_or(""),
        };
        exprs.push((format!("variable {}", variable["name"]), query.to_owned()));
    }
    exprs
}

/// The `xpool_…` identifiers in `expr` (not those inside a longer identifier).
fn metric_names(expr: &str) -> Vec<&str> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    for (at, _) in expr.match_indices("xpool_") {
        if expr[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &expr[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        names.push(&rest[..end]);
    }
    names
}

/// Series name → the metric it belongs to.
fn exported_series() -> BTreeMap<String, &'static str> {
    let mut series = BTreeMap::new();
    for &(name, kind, _) in METRICS {
        match kind {
            Counter => {
                assert!(name.ends_with("_total"), "{name}: a counter ends in _total");
                series.insert(name.to_owned(), name);
            }
            Gauge => {
                series.insert(name.to_owned(), name);
            }
            Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    series.insert(format!("{name}{suffix}"), name);
                }
            }
        }
    }
    series
}

/// A Prometheus duration such as `5m`, `1h30m` or `0s`.
fn is_duration(value: &str) -> bool {
    let mut rest = value;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|unit| rest.starts_with(unit))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
        parts += 1;
    }
    parts > 0
}

#[test]
fn the_rules_have_every_alert_on_call_needs() {
    let rules = rules();
    let alerts = alerts(&rules);
    for &(name, needles) in REQUIRED_ALERTS {
        let rule = alerts
            .get(name)
            .unwrap_or_else(|| panic!("no alert {name}; there are {:?}", alerts.keys()));
        // Spaces do not matter to PromQL: compare without them.
        let expr: String = text(rule, "expr").split_whitespace().collect();
        for needle in needles {
            let needle: String = needle.split_whitespace().collect();
            assert!(
                expr.contains(&needle),
                "{name}: its expression does not contain {needle:?}: {expr}"
            );
        }
    }
}

#[test]
fn every_alert_has_a_for_a_severity_and_says_what_to_do() {
    let rules = rules();
    for (group, rule) in all_rules(&rules) {
        let expr = text(rule, "expr");
        let name = text(rule, "alert");
        if name.is_empty() {
            assert!(
                !text(rule, "record").is_empty() && !expr.trim().is_empty(),
                "group {group}: a rule that is neither an alert nor a recording rule"
            );
            continue;
        }
        assert!(!expr.trim().is_empty(), "{name}: no expr");
        let wait = text(rule, "for");
        assert!(is_duration(wait), "{name}: `for: {wait}` is not a duration");
        let severity = text(&rule["labels"], "severity");
        assert!(
            SEVERITIES.contains(&severity),
            "{name}: severity {severity:?} is not one of {SEVERITIES:?}"
        );
        let summary = text(&rule["annotations"], "summary");
        let description = text(&rule["annotations"], "description");
        assert!(!summary.trim().is_empty(), "{name}: no summary");
        // A description says what happened and what to do: more than a restated summary.
        assert!(
            description.split_whitespace().count() >= 20,
            "{name}: the description should say what to look at and what to do: {description:?}"
        );
    }
}

#[test]
fn every_expression_names_only_exported_metrics() {
    let exported = exported_series();
    let mut wrong = Vec::new();
    for (place, expr) in expressions() {
        assert!(!expr.trim().is_empty(), "{place}: an empty expression");
        for name in metric_names(&expr) {
            if exported.contains_key(name) {
                continue;
            }
            let hint = METRICS
                .iter()
                .find(|(metric, kind, _)| *metric == name && *kind == Histogram)
                .map_or("", |_| " (a histogram: use its _bucket, _sum or _count)");
            wrong.push(format!("{place}: {name}{hint}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "metrics the daemon does not export:\n{}",
        wrong.join("\n")
    );
}

/// The label names an expression filters or groups by, on each of its xpool series: a label the
/// metric does not have matches nothing and silently empties a panel or an alert.
#[test]
fn every_selector_uses_labels_the_metric_has() {
    let exported = exported_series();
    let labels: BTreeMap<&str, &[&str]> = METRICS
        .iter()
        .map(|&(name, _, labels)| (name, labels))
        .collect();
    let mut wrong = Vec::new();
    for (place, expr) in expressions() {
        for (at, _) in expr.match_indices("xpool_") {
            let rest = &expr[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            let Some(metric) = exported.get(&rest[..end]) else {
                continue;
            };
            let Some(selector) = rest[end..].strip_prefix('{') else {
                continue;
            };
            let selector = &selector[..selector.find('}').unwrap_or(selector.len())];
            for matcher in selector.split(',') {
                let label = matcher.split(['=', '!', '~']).next().unwrap_or("").trim();
                let histogram_le = label == "le" && rest[..end].ends_with("_bucket");
                if !label.is_empty() && !histogram_le && !labels[metric].contains(&label) {
                    wrong.push(format!("{place}: {metric} has no label {label:?}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_dashboard_has_its_variables() {
    let dashboard = dashboard();
    let schema = dashboard["schemaVersion"].as_u64().unwrap_or(0);
    assert!(schema >= 36, "schemaVersion {schema}: at least 36");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let variables: BTreeMap<&str, &Json> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or(""), v))
        .collect();
    let datasource = variables.get("datasource").expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let app = variables.get("app").expect("an app variable");
    assert_eq!(app["type"], "query");
    let query = match &app["query"] {
        Json::String(query) => query.as_str(),
        query => query["query"].as_str().unwrap_or(""),
    };
    assert_eq!(query, "label_values(xpool_pool_numbers, app)");
    assert_eq!(app["datasource"]["uid"], "${datasource}");
}

#[test]
fn every_panel_has_a_datasource_and_a_query() {
    let dashboard = dashboard();
    let all = panels(&dashboard);
    assert!(all.iter().any(|p| !is_row(p)), "a dashboard without panels");
    let mut ids = BTreeSet::new();
    for panel in all {
        let title = title(panel);
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "{title}: panel id {id} is used twice");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if is_row(panel) {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: its datasource is the ${{datasource}} variable"
        );
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(!expr.trim().is_empty(), "{title}: a target without expr");
            assert!(
                !metric_names(expr).is_empty(),
                "{title}: {expr:?} queries no xpool metric"
            );
            assert!(
                target["refId"].is_string(),
                "{title}: a target without refId"
            );
            let source = &target["datasource"];
            assert!(
                source.is_null() || source["uid"] == "${datasource}",
                "{title}: a target with its own datasource {source}"
            );
        }
    }
}

#[test]
fn the_dashboard_shows_every_metric() {
    let exported = exported_series();
    let dashboard = dashboard();
    let exprs: Vec<String> = panels(&dashboard)
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    let shown: BTreeSet<&str> = exprs
        .iter()
        .flat_map(|expr| metric_names(expr))
        .filter_map(|name| exported.get(name).copied())
        .collect();
    let missing: Vec<&str> = METRICS
        .iter()
        .map(|(name, ..)| *name)
        .filter(|name| !shown.contains(name))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
    let compact: Vec<String> = exprs
        .iter()
        .map(|e| e.split_whitespace().collect())
        .collect();
    for quantile in ["0.5", "0.99"] {
        let wanted = format!("histogram_quantile({quantile},");
        assert!(
            compact
                .iter()
                .any(|e| e.starts_with(&wanted) && e.contains(BIND_LATENCY)),
            "no Bind latency p{} from {BIND_LATENCY}",
            quantile.trim_start_matches("0.")
        );
    }
}

/// The alerts send on-call to panels by title (`the dashboard's "Headroom" panel`): those
/// panels exist.
#[test]
fn the_panels_alerts_refer_to_exist() {
    let dashboard = dashboard();
    let titles: BTreeSet<&str> = panels(&dashboard).into_iter().map(title).collect();
    let rules = rules();
    let mut referred = 0;
    for (name, rule) in alerts(&rules) {
        let description = text(&rule["annotations"], "description");
        for quoted in description.split("dashboard's \"").skip(1) {
            let panel = quoted.split('"').next().unwrap_or("");
            assert!(
                titles.contains(panel),
                "{name}: no panel {panel:?}; panels: {titles:?}"
            );
            referred += 1;
        }
    }
    assert!(referred > 0, "no alert points at a dashboard panel");
}

/// The output of `promtool ARGS`, or `None` (and a note) where promtool is not installed.
fn promtool(args: &[&str], dir: &Path) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(output) => Some(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "note: promtool is not on PATH; skipped `promtool {}` (Debian: apt-get install prometheus)",
                args.join(" ")
            );
            None
        }
        Err(e) => panic!("running promtool: {e}"),
    }
}

fn assert_promtool_passed(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_checks_the_rules() {
    let Some(output) = promtool(&["check", "rules", "deploy/prometheus-rules.yaml"], root()) else {
        return;
    };
    assert_promtool_passed(&output, "promtool check rules deploy/prometheus-rules.yaml");
}

/// The dashboard's queries, with Grafana's variables given values, as recording rules that
/// `promtool check rules` parses: a query Prometheus would refuse fails here.
#[test]
fn promtool_parses_the_dashboard_queries() {
    let dashboard = dashboard();
    let mut rules = Vec::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            let expr = expr
                .replace("$__rate_interval", "2m")
                .replace("$__interval", "30s")
                .replace("$__range", "6h")
                .replace("$app", ".*");
            assert!(
                !expr.contains('$'),
                "{}: a variable this test does not know: {expr}",
                title(panel)
            );
            rules.push(format!(
                "      - record: panel_{}_{}\n        expr: {}\n",
                panel["id"],
                target["refId"].as_str().unwrap_or(""),
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(
        &file,
        format!(
            "groups:\n  - name: dashboard\n    rules:\n{}",
            rules.concat()
        ),
    )
    .unwrap();
    let Some(output) = promtool(&["check", "rules", "dashboard-queries.yaml"], dir.path()) else {
        return;
    };
    assert_promtool_passed(&output, "promtool check rules (the dashboard's queries)");
}

/// `tests/observability/rules-test.yaml` against the rules without their annotations.
#[test]
fn promtool_unit_tests_the_rules() {
    let mut rules = rules();
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            rule.as_mapping_mut()
                .expect("a rule is a mapping")
                .remove("annotations");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml_ng::to_string(&rules).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/observability/rules-test.yaml"),
        dir.path().join("rules-test.yaml"),
    )
    .unwrap();
    let Some(output) = promtool(&["test", "rules", "rules-test.yaml"], dir.path()) else {
        return;
    };
    assert_promtool_passed(
        &output,
        "promtool test rules tests/observability/rules-test.yaml",
    );
}

/// Every alert of the rules has a case in the promtool unit tests.
#[test]
fn every_alert_has_a_promtool_case() {
    let cases = read(&root().join("tests/observability/rules-test.yaml"));
    let cases: Yaml = serde_yaml_ng::from_str(&cases).unwrap();
    let tested: BTreeSet<&str> = seq(&cases["tests"])
        .iter()
        .flat_map(|case| seq(&case["alert_rule_test"]))
        .map(|test| text(test, "alertname"))
        .collect();
    let rules = rules();
    for name in alerts(&rules).keys() {
        assert!(
            tested.contains(name.as_str()),
            "{name}: no case in tests/observability/rules-test.yaml"
        );
    }
}
