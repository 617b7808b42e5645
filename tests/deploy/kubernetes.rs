//! `deploy/kubernetes/`: the objects a production install needs, one replica with its store on a
//! claim, hardened pods, pinned images and probes. `wiring.rs` checks that they fit together.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::manifests::{self, Doc, at, containers, only, pods, selects, seq};

/// The xpool image's user (deploy/Dockerfile `USER`).
const UID: i64 = 10001;

#[test]
fn the_kustomization_lists_every_manifest() {
    let kubernetes = super::deploy_dir().join("kubernetes");
    let mut dirs = vec![kubernetes.clone()];
    dirs.extend(manifests::CLUSTER_DIRS.iter().map(|d| kubernetes.join(d)));
    for dir in dirs {
        let kustomization: Value =
            serde_yaml_ng::from_str(&super::read(&dir.join("kustomization.yaml"))).unwrap();
        let resources: Vec<&str> = seq(&kustomization["resources"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // A resource that is not a file is another kustomization's directory (../etcd).
        let (files, bases): (Vec<&str>, Vec<&str>) =
            resources.into_iter().partition(|r| r.ends_with(".yaml"));
        for base in bases {
            let path = dir.join(base).join("kustomization.yaml");
            assert!(
                path.is_file(),
                "{}: no {}",
                super::shown(&dir),
                path.display()
            );
        }
        let listed: BTreeSet<String> = files.into_iter().map(str::to_owned).collect();
        let present: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .filter(|name| name != "kustomization.yaml")
            .collect();
        assert_eq!(
            listed,
            present,
            "{}/kustomization.yaml resources vs files",
            super::shown(&dir)
        );
        assert_eq!(kustomization["namespace"].as_str(), Some("xpool"));
    }
    // The cluster's kustomization applies etcd's.
    let cluster: Value =
        serde_yaml_ng::from_str(&super::read(&kubernetes.join("cluster/kustomization.yaml")))
            .unwrap();
    assert!(seq(&cluster["resources"]).iter().any(|r| r == "../etcd"));
}

#[test]
fn every_object_has_a_kind_and_a_name() {
    let docs = manifests::load_all();
    for doc in manifests::objects(&docs).chain(manifests::objects(&manifests::load_cluster())) {
        assert!(
            doc.value["apiVersion"].is_string() && !doc.kind().is_empty() && !doc.name().is_empty(),
            "{}: apiVersion, kind and metadata.name are required",
            doc.what()
        );
    }
    for kind in [
        "StatefulSet",
        "ConfigMap",
        "CronJob",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
    ] {
        only(&docs, kind);
    }
    let monitor = only(&docs, "ServiceMonitor");
    assert_eq!(monitor.value["apiVersion"], "monitoring.coreos.com/v1");
}

#[test]
fn the_statefulset_runs_one_replica_with_its_store_on_a_claim() {
    let docs = manifests::load_all();
    let set = only(&docs, "StatefulSet");
    let spec = &set.value["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(1), "single-writer store");
    let pod = &spec["template"];
    assert!(selects(
        at(spec, "selector.matchLabels"),
        at(pod, "metadata.labels")
    ));

    // Its governing Service is headless and selects its pods.
    let service_name = spec["serviceName"].as_str().expect("spec.serviceName");
    let headless = service(&docs, service_name);
    assert_eq!(headless.value["spec"]["clusterIP"], "None");
    assert!(selects(
        &headless.value["spec"]["selector"],
        at(pod, "metadata.labels")
    ));

    // The store's directory is on a claim from volumeClaimTemplates, writable through fsGroup.
    let container = daemon_container(&docs);
    let claims: Vec<&str> = seq(&spec["volumeClaimTemplates"])
        .iter()
        .filter_map(|c| at(c, "metadata.name").as_str())
        .collect();
    let store = super::configs::configmap_config(&docs)["store"]["path"]
        .as_str()
        .expect("store.path")
        .to_owned();
    let mount = seq(&container["volumeMounts"])
        .iter()
        .find(|m| {
            let dir = m["mountPath"].as_str().unwrap_or("/nowhere");
            store.starts_with(&format!("{}/", dir.trim_end_matches('/')))
        })
        .unwrap_or_else(|| panic!("no volume mounted above store.path {store}"));
    let claim = mount["name"].as_str().unwrap_or("");
    assert!(
        claims.contains(&claim),
        "the store's volume {claim} is not a claim template"
    );
    let pod_security = at(pod, "spec.securityContext");
    assert_eq!(pod_security["fsGroup"].as_i64(), Some(UID));
}

#[test]
fn every_pod_is_hardened() {
    let docs = manifests::load_all();
    let pods = pods(&docs);
    assert!(pods.len() >= 2, "the StatefulSet and the CronJob");
    hardened(&pods);
    let cluster = manifests::load_cluster();
    let pods = manifests::pods(&cluster);
    assert!(pods.len() >= 2, "the replicas' and etcd's StatefulSets");
    hardened(&pods);
}

/// Every container runs as the image's user, read-only, with no privilege and with resources,
/// and takes no secret from a literal.
pub fn hardened(pods: &[manifests::Pod<'_>]) {
    for pod in pods {
        for container in containers(pod.spec) {
            let what = format!("{} container {:?}", pod.owner, container["name"]);
            let effective = |key: &str| {
                let own = &container["securityContext"][key];
                if own.is_null() {
                    &pod.spec["securityContext"][key]
                } else {
                    own
                }
            };
            assert_eq!(effective("runAsNonRoot").as_bool(), Some(true), "{what}");
            assert_eq!(
                effective("runAsUser").as_i64(),
                Some(UID),
                "{what}: runAsUser"
            );
            assert_eq!(
                effective("seccompProfile")["type"],
                "RuntimeDefault",
                "{what}"
            );
            let own = &container["securityContext"];
            assert_eq!(
                own["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{what}"
            );
            assert_eq!(
                own["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{what}"
            );
            let dropped = seq(at(own, "capabilities.drop"));
            assert!(dropped.iter().any(|c| c == "ALL"), "{what}: drop ALL");
            assert!(
                seq(at(own, "capabilities.add")).is_empty(),
                "{what}: adds capabilities"
            );
            for resource in [
                "requests.cpu",
                "requests.memory",
                "limits.cpu",
                "limits.memory",
            ] {
                let value = at(&container["resources"], resource);
                assert!(!value.is_null(), "{what}: resources.{resource}");
            }
            for env in seq(&container["env"]) {
                let name = env["name"].as_str().unwrap_or("");
                let secret = ["TOKEN", "SECRET", "PASSWORD", "KEY"]
                    .iter()
                    .any(|s| name.contains(s));
                assert!(
                    !secret || env["value"].is_null(),
                    "{what}: {name} has a literal value; take it from a Secret"
                );
            }
        }
    }
}

#[test]
fn images_are_pinned_to_this_version() {
    let docs = manifests::load_all();
    let mut images = BTreeSet::new();
    for pod in pods(&docs) {
        for container in containers(pod.spec) {
            let image = container["image"].as_str().expect("image").to_owned();
            let (_, tag) = image
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .unwrap_or_else(|| panic!("{}: image {image} has no tag", pod.owner));
            assert_ne!(tag, "latest", "{}: image {image}", pod.owner);
            assert_eq!(
                tag,
                env!("CARGO_PKG_VERSION"),
                "{}: image {image}",
                pod.owner
            );
            images.insert(image);
        }
    }
    assert_eq!(
        images.len(),
        1,
        "the daemon and the CronJob run one image: {images:?}"
    );
}

#[test]
fn the_daemon_has_startup_readiness_and_liveness_probes() {
    let docs = manifests::load_all();
    let container = daemon_container(&docs);
    let port = |name: &str| container_port(container, name);
    let grpc = port("grpc");
    for probe in ["startupProbe", "readinessProbe"] {
        let probe_port = at(&container[probe], "grpc.port").as_i64();
        assert_eq!(
            probe_port,
            Some(grpc),
            "{probe}: gRPC health on the gRPC port"
        );
    }
    let startup = &container["startupProbe"];
    let allowed = startup["failureThreshold"].as_i64().unwrap_or(3)
        * startup["periodSeconds"].as_i64().unwrap_or(10);
    assert!(
        allowed >= 600,
        "startupProbe allows {allowed} s for the store's recovery"
    );

    // Liveness: the admin listener's /healthz (alive), or gRPC health.
    let liveness = &container["livenessProbe"];
    let http = &liveness["httpGet"];
    if http.is_null() {
        assert_eq!(
            at(liveness, "grpc.port").as_i64(),
            Some(grpc),
            "livenessProbe"
        );
    } else {
        assert_eq!(http["path"], "/healthz");
        let probed = http["port"]
            .as_i64()
            .unwrap_or_else(|| port(http["port"].as_str().expect("livenessProbe port")));
        let admin = super::configs::configmap_config(&docs)["admin"]["listen"]
            .as_str()
            .map(|l| {
                l.rsplit_once(':')
                    .expect("host:port")
                    .1
                    .parse::<i64>()
                    .unwrap()
            });
        assert_eq!(Some(probed), admin, "livenessProbe port vs admin.listen");
    }
}

pub fn service<'a>(docs: &'a [Doc], name: &str) -> &'a Doc {
    manifests::objects(docs)
        .find(|d| d.kind() == "Service" && d.name() == name)
        .unwrap_or_else(|| panic!("no Service {name}"))
}

/// The StatefulSet `xpool` (cluster mode's manifests have etcd's too).
pub fn daemon_set(docs: &[Doc]) -> &Doc {
    manifests::objects(docs)
        .find(|d| d.kind() == "StatefulSet" && d.name() == "xpool")
        .expect("no StatefulSet xpool")
}

pub fn daemon_pod_template(docs: &[Doc]) -> &Value {
    at(&daemon_set(docs).value, "spec.template")
}

pub fn daemon_pod(docs: &[Doc]) -> &Value {
    &daemon_pod_template(docs)["spec"]
}

pub fn daemon_container(docs: &[Doc]) -> &Value {
    let containers = seq(&daemon_pod(docs)["containers"]);
    assert_eq!(containers.len(), 1, "the StatefulSet runs one container");
    &containers[0]
}

pub fn container_port(container: &Value, name: &str) -> i64 {
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

pub fn port_of(listen: &str) -> i64 {
    let (_, port) = listen.rsplit_once(':').expect("HOST:PORT");
    port.parse().expect("a port")
}
