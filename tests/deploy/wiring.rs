//! `deploy/kubernetes/`: references that resolve. Every ConfigMap, Secret, claim, Service and
//! port a manifest names exists or is documented, the CronJob's token is one the daemon gives the
//! admin scope, and the PDB, ServiceMonitor and NetworkPolicy reach the daemon's pod and ports.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use super::kubernetes::{
    container_port, daemon_container, daemon_pod, daemon_pod_template, port_of, service,
};
use super::manifests::{self, Doc, Pod, Source, at, containers, only, pods, selects, seq};

#[test]
fn every_configmap_secret_and_claim_referenced_exists_or_is_documented() {
    references_resolve(&manifests::load_all());
    references_resolve(&manifests::load_cluster());
}

/// Every ConfigMap, Secret and claim the pods of `docs` take data from exists in `docs` or is
/// documented (Secrets).
fn references_resolve(docs: &[Doc]) {
    let documented = documented_secrets();
    let config_maps: BTreeMap<&str, &Doc> = manifests::objects(docs)
        .filter(|d| d.kind() == "ConfigMap")
        .map(|d| (d.name(), d))
        .collect();
    for doc in manifests::objects(docs) {
        assert_ne!(
            doc.kind(),
            "Secret",
            "{}: ship no Secret (its values); document `kubectl create secret`",
            doc.what()
        );
    }
    for pod in pods(docs) {
        for (name, key, what) in references(&pod) {
            match what {
                "configMap" => {
                    let map = config_maps
                        .get(name.as_str())
                        .unwrap_or_else(|| panic!("{}: no ConfigMap {name}", pod.owner));
                    let has = key == "*" || !map.value["data"][key.as_str()].is_null();
                    assert!(has, "{}: ConfigMap {name} has no key {key}", pod.owner);
                }
                "secret" => {
                    let keys = documented.get(&name).unwrap_or_else(|| {
                        panic!(
                            "{}: Secret {name} is neither shipped nor documented",
                            pod.owner
                        )
                    });
                    let has = key == "*" || keys.contains(&key);
                    assert!(
                        has,
                        "{}: Secret {name}: key {key} is not documented",
                        pod.owner
                    );
                }
                _ => {
                    let claims: Vec<&Value> = docs
                        .iter()
                        .flat_map(|d| seq(&d.value["spec"]["volumeClaimTemplates"]))
                        .collect();
                    let exists = claims
                        .iter()
                        .any(|c| at(c, "metadata.name") == name.as_str())
                        || manifests::objects(docs)
                            .any(|d| d.kind() == "PersistentVolumeClaim" && d.name() == name);
                    assert!(exists, "{}: no claim {name}", pod.owner);
                }
            }
        }
    }
}

#[test]
fn the_cronjob_reconciles_with_an_admin_token_and_a_deadline() {
    let docs = manifests::load_all();
    let cron = only(&docs, "CronJob");
    let job = at(&cron.value, "spec.jobTemplate.spec");
    assert!(job["activeDeadlineSeconds"].as_i64().is_some_and(|s| s > 0));
    let pod = &job["template"];
    let container = &seq(at(pod, "spec.containers"))[0];
    let args: Vec<&str> = seq(&container["args"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args.first(), Some(&"reconcile"), "args {args:?}");

    // --server is a Service of this deployment, on its gRPC port.
    let server = args
        .windows(2)
        .find(|w| w[0] == "--server")
        .map(|w| w[1])
        .expect("--server");
    let (host, port) = server
        .trim_start_matches("http://")
        .rsplit_once(':')
        .expect("--server http://HOST:PORT");
    let target = service(&docs, host.split('.').next().unwrap_or(host));
    let served = seq(at(&target.value, "spec.ports"))
        .iter()
        .any(|p| p["port"] == port.parse::<i64>().unwrap());
    assert!(served, "Service {host} has no port {port}");

    // XPOOL_TOKEN from a Secret: the one xpool.toml gives the admin scope.
    let token = seq(&container["env"])
        .iter()
        .find(|e| e["name"] == "XPOOL_TOKEN")
        .expect("env XPOOL_TOKEN");
    let from = at(token, "valueFrom.secretKeyRef");
    let wanted = Source::Secret {
        name: from["name"].as_str().expect("secretKeyRef.name").to_owned(),
        key: from["key"].as_str().expect("secretKeyRef.key").to_owned(),
    };
    let config = super::configs::configmap_config(&docs);
    let files = manifests::mounted_files(daemon_pod(&docs), daemon_container(&docs));
    let admin = seq_toml(&config["auth"]["tokens"]).iter().find(|t| {
        let file = t["token_file"].as_str().unwrap_or("");
        files
            .iter()
            .any(|(path, source)| path.to_str() == Some(file) && *source == wanted)
    });
    let admin = admin.unwrap_or_else(|| panic!("no [[auth.tokens]] reads {wanted:?}"));
    let scopes = admin["scopes"].as_array().expect("scopes");
    assert!(
        scopes.iter().any(|s| s.as_str() == Some("admin")),
        "{admin:?}"
    );

    // The NetworkPolicy lets its pods through to the gRPC port.
    let policy = only(&docs, "NetworkPolicy");
    let let_through = seq(at(&policy.value, "spec.ingress")).iter().any(|rule| {
        opens(rule, 50051)
            && seq(&rule["from"])
                .iter()
                .any(|f| selects(at(f, "podSelector.matchLabels"), at(pod, "metadata.labels")))
    });
    assert!(
        let_through,
        "the NetworkPolicy keeps the CronJob's pods from the gRPC port"
    );
}

#[test]
fn the_pdb_servicemonitor_and_networkpolicy_cover_the_daemon() {
    let docs = manifests::load_all();
    let labels = at(daemon_pod_template(&docs), "metadata.labels");
    let pdb = only(&docs, "PodDisruptionBudget");
    assert!(selects(at(&pdb.value, "spec.selector.matchLabels"), labels));

    // The ServiceMonitor scrapes /metrics on a Service port that leads to admin.listen.
    let config = super::configs::configmap_config(&docs);
    let admin_port = port_of(config["admin"]["listen"].as_str().expect("admin.listen"));
    let monitor = only(&docs, "ServiceMonitor");
    let endpoint = &seq(at(&monitor.value, "spec.endpoints"))[0];
    assert_eq!(endpoint["path"], "/metrics");
    let port_name = endpoint["port"].as_str().expect("endpoints[0].port");
    let services: Vec<&Doc> = manifests::objects(&docs)
        .filter(|d| d.kind() == "Service")
        .filter(|d| {
            selects(
                at(&monitor.value, "spec.selector.matchLabels"),
                at(&d.value, "metadata.labels"),
            )
        })
        .filter(|d| selects(&d.value["spec"]["selector"], labels))
        .collect();
    let target = services
        .iter()
        .flat_map(|s| seq(at(&s.value, "spec.ports")))
        .find(|p| p["name"] == port_name)
        .unwrap_or_else(|| panic!("no Service the ServiceMonitor selects has a port {port_name}"));
    let container = daemon_container(&docs);
    let target_port = target["targetPort"].as_str().map_or_else(
        || target["targetPort"].as_i64().expect("targetPort"),
        |name| container_port(container, name),
    );
    assert_eq!(target_port, admin_port, "the metrics port vs admin.listen");

    // NetworkPolicy: gRPC from labelled pods, pushes from [callbacks] allow_from, admin from
    // the monitoring namespace.
    let policy = only(&docs, "NetworkPolicy");
    assert!(selects(
        at(&policy.value, "spec.podSelector.matchLabels"),
        labels
    ));
    let rules = seq(at(&policy.value, "spec.ingress"));
    let grpc = port_of(config["server"]["listen"].as_str().expect("server.listen"));
    let grpc_rule = rules
        .iter()
        .find(|r| opens(r, grpc))
        .expect("a rule for gRPC");
    for from in seq(&grpc_rule["from"]) {
        assert!(
            !at(from, "podSelector.matchLabels").is_null(),
            "gRPC: only labelled pods"
        );
    }
    let pushes = port_of(
        config["callbacks"]["listen"]
            .as_str()
            .expect("callbacks.listen"),
    );
    let push_rule = rules
        .iter()
        .find(|r| opens(r, pushes))
        .expect("a rule for pushes");
    let cidrs: Vec<&str> = seq(&push_rule["from"])
        .iter()
        .filter_map(|f| at(f, "ipBlock.cidr").as_str())
        .collect();
    let allowed: Vec<&str> = seq_toml(&config["callbacks"]["allow_from"])
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(!cidrs.is_empty(), "pushes: only the platform's CIDRs");
    assert_eq!(cidrs, allowed, "NetworkPolicy vs [callbacks] allow_from");
    let admin_rule = rules
        .iter()
        .find(|r| opens(r, admin_port))
        .expect("a rule for /metrics");
    let monitoring = seq(&admin_rule["from"]).iter().any(|f| {
        at(f, "namespaceSelector.matchLabels")["kubernetes.io/metadata.name"] == "monitoring"
    });
    assert!(monitoring, "/metrics: from the monitoring namespace");
}

/// `kubectl create secret generic NAME --from-file=KEY=…`, in the comments of the manifests and
/// in deploy/README.md: the secrets and keys an operator is told to create. Both must agree.
fn documented_secrets() -> BTreeMap<String, BTreeSet<String>> {
    let mut comments = String::new();
    for file in super::deploy_files(&["yaml"]) {
        for line in super::read(&file).lines() {
            if let Some((_, comment)) = line.split_once('#') {
                comments.push_str(comment.trim_end_matches('\\'));
                comments.push(' ');
            }
        }
    }
    let readme = super::read(&super::deploy_dir().join("README.md")).replace("\\\n", " ");
    let in_comments = kubectl_secrets(&comments);
    assert!(
        !in_comments.is_empty(),
        "the manifests document no `kubectl create secret`"
    );
    assert_eq!(
        kubectl_secrets(&readme),
        in_comments,
        "deploy/README.md vs the manifests"
    );
    in_comments
}

fn kubectl_secrets(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut secrets = BTreeMap::new();
    for command in text.split("kubectl").skip(1) {
        let words: Vec<&str> = command.split_whitespace().collect();
        let Some(at) = words
            .windows(3)
            .position(|w| w == ["create", "secret", "generic"])
        else {
            continue;
        };
        let keys: &mut BTreeSet<String> = secrets.entry(words[at + 3].to_owned()).or_default();
        for word in &words[at + 4..] {
            assert!(
                !word.starts_with("--from-literal"),
                "`kubectl create secret … {word}` puts a secret in shell history"
            );
            if let Some(spec) = word.strip_prefix("--from-file=") {
                keys.insert(spec.split_once('=').map_or(spec, |(key, _)| key).to_owned());
            }
        }
    }
    secrets
}

/// (name, key, "configMap" | "secret" | "claim") of everything a pod takes its data from.
fn references(pod: &Pod<'_>) -> Vec<(String, String, &'static str)> {
    let mut found = Vec::new();
    for container in containers(pod.spec) {
        for (_, source) in manifests::mounted_files(pod.spec, container) {
            found.push(match source {
                Source::ConfigMap { name, key } => (name, key, "configMap"),
                Source::Secret { name, key } => (name, key, "secret"),
            });
        }
        for env in seq(&container["env"]) {
            for (field, kind) in [("secretKeyRef", "secret"), ("configMapKeyRef", "configMap")] {
                let r = &env["valueFrom"][field];
                if let (Some(name), Some(key)) = (r["name"].as_str(), r["key"].as_str()) {
                    found.push((name.to_owned(), key.to_owned(), kind));
                }
            }
        }
        for from in seq(&container["envFrom"]) {
            for (field, kind) in [("secretRef", "secret"), ("configMapRef", "configMap")] {
                if let Some(name) = from[field]["name"].as_str() {
                    found.push((name.to_owned(), "*".to_owned(), kind));
                }
            }
        }
        for mount in seq(&container["volumeMounts"]) {
            let name = mount["name"].as_str().unwrap_or("");
            let volume = seq(&pod.spec["volumes"]).iter().find(|v| v["name"] == name);
            match volume {
                Some(volume) => {
                    if let Some(claim) = at(volume, "persistentVolumeClaim.claimName").as_str() {
                        found.push((claim.to_owned(), String::new(), "claim"));
                    }
                }
                // Not a volume: a claim template of the StatefulSet.
                None => found.push((name.to_owned(), String::new(), "claim")),
            }
        }
    }
    found
}

/// `true` when a NetworkPolicy ingress rule opens TCP `port`.
fn opens(rule: &Value, port: i64) -> bool {
    seq(&rule["ports"])
        .iter()
        .any(|p| p["port"].as_i64() == Some(port))
}

fn seq_toml(value: &toml::Value) -> &[toml::Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}
