//! `deploy/kubernetes/cluster/` and `deploy/kubernetes/etcd/`: cluster mode's install. Three
//! replicas, each with its node id and advertised address from its pod, spread over nodes and
//! zones, with a budget; their config passes `serve --check-config` as each pod sees it; and a
//! 3-member etcd whose members and endpoints agree with that config.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::kubernetes::{
    container_port, daemon_container, daemon_pod, daemon_set, port_of, service,
};
use super::manifests::{self, Doc, Source, at, containers, selects, seq};

/// The namespace of the kustomization.
const NAMESPACE: &str = "xpool";

/// The StatefulSet `name`.
fn stateful_set<'a>(docs: &'a [Doc], name: &str) -> &'a Doc {
    manifests::objects(docs)
        .find(|d| d.kind() == "StatefulSet" && d.name() == name)
        .unwrap_or_else(|| panic!("no StatefulSet {name}"))
}

/// The container's environment as Kubernetes gives it to pod `pod` of the namespace: literal
/// values with `$(VAR)` of earlier variables expanded, and `fieldRef`s to the pod's name and
/// namespace.
fn pod_env(container: &Value, pod: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in seq(&container["env"]) {
        let name = var["name"].as_str().expect("env name").to_owned();
        let value = if let Some(literal) = var["value"].as_str() {
            expand(literal, &env)
        } else {
            match at(var, "valueFrom.fieldRef.fieldPath").as_str() {
                Some("metadata.name") => pod.to_owned(),
                Some("metadata.namespace") => NAMESPACE.to_owned(),
                _ => continue, // from a Secret: none of the config's
            }
        };
        env.insert(name, value);
    }
    env
}

/// `$(VAR)` replaced by `env`'s value, as Kubernetes does in `value`, `command` and `args`.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    assert!(
        !out.contains("$("),
        "{text}: a variable not defined before it"
    );
    out
}

/// The pods' names: `<set>-0` … `<set>-(replicas-1)`.
fn pod_names(set: &Doc) -> Vec<String> {
    let replicas = set.value["spec"]["replicas"].as_i64().expect("replicas");
    (0..replicas)
        .map(|i| format!("{}-{i}", set.name()))
        .collect()
}

/// Anti-affinity of the pod template: a required rule per node, a preferred one per zone, each
/// selecting the template's own pods.
fn spread_over_nodes_and_zones(template: &Value, what: &str) {
    let labels = at(template, "metadata.labels");
    let anti = at(template, "spec.affinity.podAntiAffinity");
    let required = seq(&anti["requiredDuringSchedulingIgnoredDuringExecution"]);
    assert!(
        required.iter().any(|term| {
            term["topologyKey"] == "kubernetes.io/hostname"
                && selects(at(term, "labelSelector.matchLabels"), labels)
        }),
        "{what}: never two pods on one node"
    );
    let preferred = seq(&anti["preferredDuringSchedulingIgnoredDuringExecution"]);
    assert!(
        preferred.iter().any(|weighted| {
            let term = &weighted["podAffinityTerm"];
            term["topologyKey"] == "topology.kubernetes.io/zone"
                && selects(at(term, "labelSelector.matchLabels"), labels)
        }),
        "{what}: spread over zones"
    );
}

/// The PodDisruptionBudget over the template's pods lets one go at a time.
fn budget_of_one(docs: &[Doc], template: &Value, what: &str) {
    let labels = at(template, "metadata.labels");
    let budgets: Vec<&Doc> = manifests::objects(docs)
        .filter(|d| d.kind() == "PodDisruptionBudget")
        .filter(|d| selects(at(&d.value, "spec.selector.matchLabels"), labels))
        .collect();
    assert_eq!(budgets.len(), 1, "{what}: one PodDisruptionBudget");
    assert_eq!(
        budgets[0].value["spec"]["maxUnavailable"].as_i64(),
        Some(1),
        "{what}"
    );
}

/// The set's governing Service: headless, selecting its pods, publishing them before they are
/// ready (peers must reach each other to become ready).
fn headless_service<'a>(docs: &'a [Doc], set: &Doc) -> &'a Doc {
    let name = set.value["spec"]["serviceName"]
        .as_str()
        .expect("spec.serviceName");
    let headless = service(docs, name);
    let spec = &headless.value["spec"];
    assert_eq!(spec["clusterIP"], "None", "{}", headless.what());
    assert_eq!(spec["publishNotReadyAddresses"].as_bool(), Some(true));
    assert!(selects(
        &spec["selector"],
        at(&set.value, "spec.template.metadata.labels")
    ));
    headless
}

#[test]
fn the_replicas_config_passes_check_config_as_each_pod_sees_it() {
    let docs = manifests::load_cluster();
    let text = super::configs::configmap_config_text(&docs);
    let config = super::configs::configmap_config(&docs);
    let container = daemon_container(&docs);
    let set = daemon_set(&docs);

    // Each file the config names is mounted from a Secret.
    let files = manifests::mounted_files(daemon_pod(&docs), container);
    let dir = tempfile::tempdir().unwrap();
    let prepared = super::configs::prepare(&text, dir.path(), &[]);
    assert!(!prepared.named.is_empty());
    for path in &prepared.named {
        let mounted = files.iter().any(|(file, source)| {
            matches!(source, Source::Secret { .. }) && file.to_str() == Some(path.as_str())
        });
        assert!(
            mounted,
            "{path}: the StatefulSet mounts no Secret item there"
        );
    }

    // node_id and advertise_addr are not in the shared file: alone, it is refused.
    let cluster = config.get("cluster").expect("[cluster]");
    assert!(cluster.get("node_id").is_none() && cluster.get("advertise_addr").is_none());
    let alone = super::check_config(&prepared.config, &[]);
    assert_eq!(alone.status.code(), Some(1), "{alone:?}");
    assert!(String::from_utf8_lossy(&alone.stderr).contains("cluster.node_id"));

    // With each pod's environment (and the image's), it passes: the pod's name is its node
    // id, and it advertises its stable DNS name under the headless Service, on the gRPC port.
    let headless = headless_service(&docs, set);
    let grpc = container_port(container, "grpc");
    assert_eq!(
        port_of(config["server"]["listen"].as_str().expect("server.listen")),
        grpc
    );
    let pods = pod_names(set);
    assert_eq!(pods.len(), 3, "three replicas");
    for pod in &pods {
        let env: Vec<(String, String)> = pod_env(container, pod)
            .into_iter()
            .filter(|(name, _)| name.starts_with("XPOOL__"))
            .chain(super::docker::xpool_env())
            .collect();
        let output = super::check_config(&prepared.config, &env);
        super::assert_success(&output, &format!("the replicas' xpool.toml in pod {pod}"));
        let summary = String::from_utf8_lossy(&output.stdout);
        let advertised = format!("{pod}.{}.{NAMESPACE}.svc:{grpc}", headless.name());
        assert!(
            summary.contains(&format!("node {pod:?} on 3 etcd endpoint(s)"))
                && summary.contains(&format!("advertised at {advertised}")),
            "{pod}: {summary}"
        );
    }
}

#[test]
fn three_replicas_spread_over_nodes_and_zones_with_a_budget_and_probes() {
    let docs = manifests::load_cluster();
    let set = daemon_set(&docs);
    let spec = &set.value["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(3));
    let template = &spec["template"];
    assert!(selects(
        at(spec, "selector.matchLabels"),
        at(template, "metadata.labels")
    ));
    spread_over_nodes_and_zones(template, &set.what());
    budget_of_one(&docs, template, &set.what());

    // Each replica's store is on a claim of its own.
    let config = super::configs::configmap_config(&docs);
    let store = config["store"]["path"].as_str().expect("store.path");
    let container = daemon_container(&docs);
    let mount = seq(&container["volumeMounts"])
        .iter()
        .find(|m| {
            let dir = m["mountPath"].as_str().unwrap_or("/nowhere");
            store.starts_with(&format!("{}/", dir.trim_end_matches('/')))
        })
        .unwrap_or_else(|| panic!("no volume mounted above store.path {store}"));
    let claimed = seq(&spec["volumeClaimTemplates"])
        .iter()
        .any(|c| at(c, "metadata.name") == &mount["name"]);
    assert!(claimed, "the store's volume is not a claim template");

    // Probes: gRPC health for startup and readiness, /healthz of admin.listen for liveness.
    let grpc = container_port(container, "grpc");
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(
            at(&container[probe], "grpc.port").as_i64(),
            Some(grpc),
            "{probe}"
        );
    }
    let liveness = at(container, "livenessProbe.httpGet");
    assert_eq!(liveness["path"], "/healthz");
    let admin = port_of(config["admin"]["listen"].as_str().expect("admin.listen"));
    let probed = liveness["port"].as_str().map_or_else(
        || liveness["port"].as_i64().unwrap(),
        |name| container_port(container, name),
    );
    assert_eq!(probed, admin, "livenessProbe port vs admin.listen");

    // Clients call the Service xpool on the gRPC port; it reaches every replica.
    let client = service(&docs, "xpool");
    assert!(selects(
        &client.value["spec"]["selector"],
        at(template, "metadata.labels")
    ));
    let served = seq(at(&client.value, "spec.ports"))
        .iter()
        .any(|p| p["targetPort"] == "grpc" || p["targetPort"].as_i64() == Some(grpc));
    assert!(served, "the Service xpool has no gRPC port");

    // The platform's pushes reach every replica through the Service xpool, on the port the
    // receiver listens on; a replica forwards a push to the app's leader on the same port.
    let listen = config["callbacks"]["listen"]
        .as_str()
        .expect("[callbacks] listen: the push receiver runs on every replica");
    let pushes = port_of(listen);
    assert_eq!(
        container_port(container, "pushes"),
        pushes,
        "the container's pushes port vs callbacks.listen"
    );
    for name in ["xpool", "xpool-headless"] {
        let ports = seq(at(&service(&docs, name).value, "spec.ports"));
        let published = ports
            .iter()
            .any(|p| p["targetPort"] == "pushes" || p["targetPort"].as_i64() == Some(pushes));
        assert!(published, "the Service {name} has no push port");
    }

    // One image, this version's, for every xpool container.
    for container in containers(&template["spec"]) {
        let image = container["image"].as_str().expect("image");
        assert!(
            image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
            "{image}"
        );
    }
}

#[test]
fn etcd_is_three_members_that_the_replicas_config_names() {
    let docs = manifests::load_cluster();
    let set = stateful_set(&docs, "xpool-etcd");
    let spec = &set.value["spec"];
    assert_eq!(
        spec["replicas"].as_i64(),
        Some(3),
        "a quorum survives one loss"
    );
    // All members start at once: none is ready before a quorum is.
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    let template = &spec["template"];
    spread_over_nodes_and_zones(template, &set.what());
    budget_of_one(&docs, template, &set.what());
    let headless = headless_service(&docs, set);

    let containers: Vec<&Value> = seq(at(template, "spec.containers")).iter().collect();
    assert_eq!(containers.len(), 1);
    let container = containers[0];
    let image = container["image"].as_str().expect("image");
    let (repo, tag) = image.rsplit_once(':').expect("a tagged image");
    assert!(
        repo.ends_with("/etcd") && tag.starts_with("v3.") && tag != "latest",
        "the official etcd image, pinned: {image}"
    );
    let client = container_port(container, "client");
    let peer = container_port(container, "peer");

    // Each member, as its pod starts it: its name, its peer URL in --initial-cluster, its data
    // on its claim.
    let pods = pod_names(set);
    let peer_url = |pod: &str| format!("http://{pod}.{}.{NAMESPACE}.svc:{peer}", headless.name());
    let initial: Vec<String> = pods
        .iter()
        .map(|p| format!("{p}={}", peer_url(p)))
        .collect();
    for pod in &pods {
        let env = pod_env(container, pod);
        let args: BTreeMap<String, String> = seq(&container["args"])
            .iter()
            .map(|a| expand(a.as_str().expect("args are strings"), &env))
            .map(|a| {
                let (flag, value) = a.split_once('=').expect("--flag=value");
                (flag.to_owned(), value.to_owned())
            })
            .collect();
        assert_eq!(args["--name"], *pod);
        assert_eq!(args["--initial-advertise-peer-urls"], peer_url(pod));
        assert_eq!(args["--initial-cluster"], initial.join(","), "{pod}");
        assert_eq!(args["--initial-cluster-state"], "new");
        let data = &args["--data-dir"];
        let on_claim = seq(&container["volumeMounts"]).iter().any(|m| {
            let dir = m["mountPath"].as_str().unwrap_or("/nowhere");
            data.starts_with(&format!("{dir}/"))
                && seq(&spec["volumeClaimTemplates"])
                    .iter()
                    .any(|c| at(c, "metadata.name") == &m["name"])
        });
        assert!(on_claim, "{pod}: --data-dir {data} is not on a claim");
    }

    // The replicas' etcd_endpoints are these members' client URLs.
    let config = super::configs::configmap_config(&docs);
    let endpoints: Vec<&str> = config["cluster"]["etcd_endpoints"]
        .as_array()
        .expect("etcd_endpoints")
        .iter()
        .filter_map(toml::Value::as_str)
        .collect();
    let members: Vec<String> = pods
        .iter()
        .map(|p| format!("http://{p}.{}:{client}", headless.name()))
        .collect();
    assert_eq!(
        endpoints, members,
        "[cluster] etcd_endpoints vs the etcd members"
    );

    // Probes on etcd's own health endpoints.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
        assert_eq!(at(&container[probe], "httpGet.path"), path, "{probe}");
    }
    assert_eq!(manifests::pods(&docs).len(), 2, "the replicas and etcd");
}
