//! Loading the YAML under `deploy/`, and reading pod templates: what they mount, where from.

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml_ng::Value;

/// One YAML document and the file it came from.
#[derive(Debug)]
pub struct Doc {
    pub file: PathBuf,
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    /// `Kind/name (file)`, for messages.
    pub fn what(&self) -> String {
        format!(
            "{}/{} ({})",
            self.kind(),
            self.name(),
            super::shown(&self.file)
        )
    }
}

/// The directories of cluster mode's manifests (`kubectl apply -k deploy/kubernetes/cluster`,
/// which takes `etcd/` too), under `deploy/kubernetes/`.
pub const CLUSTER_DIRS: [&str; 2] = ["cluster", "etcd"];

/// Whether `path` is one of cluster mode's manifests.
fn in_cluster_dirs(path: &Path) -> bool {
    let kubernetes = super::deploy_dir().join("kubernetes");
    CLUSTER_DIRS
        .iter()
        .any(|dir| path.starts_with(kubernetes.join(dir)))
}

/// Every non-empty document of every `*.yaml` / `*.yml` under `deploy/` but cluster mode's
/// manifests (the single-node install, the Prometheus rules), parsed with a YAML parser; a
/// file that does not parse fails the test.
pub fn load_all() -> Vec<Doc> {
    load(|path| !in_cluster_dirs(path))
}

/// Cluster mode's manifests: `deploy/kubernetes/cluster/` and `deploy/kubernetes/etcd/`.
pub fn load_cluster() -> Vec<Doc> {
    load(in_cluster_dirs)
}

fn load(wanted: impl Fn(&Path) -> bool) -> Vec<Doc> {
    let files: Vec<PathBuf> = super::deploy_files(&["yaml", "yml"])
        .into_iter()
        .filter(|path| wanted(path))
        .collect();
    assert!(!files.is_empty(), "no YAML under deploy/");
    let mut docs = Vec::new();
    for file in files {
        let text = super::read(&file);
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", super::shown(&file)));
            if !value.is_null() {
                docs.push(Doc {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    docs
}

/// The Kubernetes objects: every document but the kustomization and Prometheus rule files.
pub fn objects(docs: &[Doc]) -> impl Iterator<Item = &Doc> {
    docs.iter()
        .filter(|doc| doc.kind() != "Kustomization" && !is_prometheus_rules(doc))
}

/// A plain Prometheus rule file (`deploy/prometheus-rules.yaml`: top-level `groups:`, no
/// `kind`); tests/observability.rs checks it.
fn is_prometheus_rules(doc: &Doc) -> bool {
    doc.value.get("kind").is_none() && doc.value["groups"].is_sequence()
}

/// The one object of `kind`; panics if there is none or more than one.
pub fn only<'a>(docs: &'a [Doc], kind: &str) -> &'a Doc {
    let found: Vec<&Doc> = objects(docs).filter(|d| d.kind() == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// The value at a dotted path of keys (`spec.template.spec`); `Null` where absent.
pub fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |value, key| &value[key])
}

/// The items of a sequence; none where the value is absent or not a sequence.
pub fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map_or(&[], Vec::as_slice)
}

/// A pod template: its owner and its pod spec.
#[derive(Debug)]
pub struct Pod<'a> {
    pub owner: String,
    pub spec: &'a Value,
}

/// The pod templates of every workload (StatefulSet, Deployment, Job, CronJob, …).
pub fn pods(docs: &[Doc]) -> Vec<Pod<'_>> {
    objects(docs)
        .filter_map(|doc| {
            let template = match doc.kind() {
                "CronJob" => at(&doc.value, "spec.jobTemplate.spec.template"),
                "StatefulSet" | "Deployment" | "DaemonSet" | "Job" | "ReplicaSet" => {
                    at(&doc.value, "spec.template")
                }
                "Pod" => &doc.value,
                _ => return None,
            };
            Some(Pod {
                owner: doc.what(),
                spec: &template["spec"],
            })
        })
        .collect()
}

/// `true` when every label of `selector` (a `matchLabels` mapping) is among `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(selector) = selector.as_mapping() else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

/// Where a mounted file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
}

/// The files the pod's volumes put into `container`, each with its absolute path. Secrets and
/// ConfigMaps mounted without `items` are listed as the whole object (key `*`).
pub fn mounted_files(pod: &Value, container: &Value) -> Vec<(PathBuf, Source)> {
    let mut files = Vec::new();
    for mount in seq(&container["volumeMounts"]) {
        let name = mount["name"].as_str().unwrap_or("");
        let dir = Path::new(mount["mountPath"].as_str().unwrap_or(""));
        let Some(volume) = seq(&pod["volumes"]).iter().find(|v| v["name"] == name) else {
            continue;
        };
        let mut sources: Vec<&Value> = seq(at(volume, "projected.sources")).iter().collect();
        sources.push(volume);
        for source in sources {
            for (field, name_key) in [("configMap", "name"), ("secret", "secretName")] {
                let object = &source[field];
                if object.is_null() {
                    continue;
                }
                // A projected source names its object `name`; a plain secret volume `secretName`.
                let object_name = object[name_key].as_str().or(object["name"].as_str());
                let object_name = object_name.unwrap_or("").to_owned();
                let items = seq(&object["items"]);
                let keys: Vec<(String, String)> = if items.is_empty() {
                    vec![("*".to_owned(), "*".to_owned())]
                } else {
                    items
                        .iter()
                        .map(|item| {
                            let key = item["key"].as_str().unwrap_or("").to_owned();
                            (key, item["path"].as_str().unwrap_or("").to_owned())
                        })
                        .collect()
                };
                for (key, path) in keys {
                    let name = object_name.clone();
                    let source = match field {
                        "configMap" => Source::ConfigMap { name, key },
                        _ => Source::Secret { name, key },
                    };
                    files.push((dir.join(path), source));
                }
            }
        }
    }
    files
}

/// The containers of a pod spec, init containers included.
pub fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    seq(&pod["initContainers"])
        .iter()
        .chain(seq(&pod["containers"]))
}
