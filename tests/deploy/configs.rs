//! Every daemon config under `deploy/` — the `*.toml` files and the ConfigMap's xpool.toml —
//! passes the built binary's `serve --check-config`, with the files it names (mounted Secrets,
//! systemd credentials) replaced by dummy files in a temp dir.

use std::path::{Path, PathBuf};

use super::manifests::{self, Doc, Source};

/// Where the deploy files put the files a config names: the Kubernetes Secrets' mount and the
/// systemd unit's credentials directory. A config naming a file elsewhere fails the test.
const MOUNTED: &[&str] = &["/etc/xpool/secrets/", "/run/credentials/xpool.service/"];

/// The ConfigMap's xpool.toml, found through the StatefulSet: its `--config` argument, the
/// volume mounted there, the ConfigMap and key that volume takes the file from.
pub fn configmap_config_text(docs: &[Doc]) -> String {
    let container = super::kubernetes::daemon_container(docs);
    let args: Vec<&str> = manifests::seq(&container["args"])
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let config = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| Path::new(w[1]))
        .expect("the StatefulSet's args name --config");
    let files = manifests::mounted_files(super::kubernetes::daemon_pod(docs), container);
    let (name, key) = files
        .iter()
        .find_map(|(path, source)| match source {
            Source::ConfigMap { name, key } if path == config => Some((name, key)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap is mounted at {}", config.display()));
    let map = manifests::objects(docs)
        .find(|d| d.kind() == "ConfigMap" && d.name() == name)
        .unwrap_or_else(|| panic!("no ConfigMap {name}"));
    map.value["data"][key.as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {name} has no key {key}"))
        .to_owned()
}

pub fn configmap_config(docs: &[Doc]) -> toml::Value {
    toml::from_str(&configmap_config_text(docs)).expect("the ConfigMap's xpool.toml is TOML")
}

/// Every string value under a key ending in `_file` (`token_file`, `app_secret_file`, …).
fn named_files(value: &toml::Value, found: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                match value.as_str() {
                    Some(path) if key.ends_with("_file") => found.push(path.to_owned()),
                    _ => named_files(value, found),
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|item| named_files(item, found)),
        _ => {}
    }
}

/// A config rewritten to run here: each file it names under [`MOUNTED`] is a dummy file in
/// `dir` (a token or secret of 30 characters, each different), except those in `missing`.
pub struct Prepared {
    pub config: PathBuf,
    pub named: Vec<String>,
}

pub fn prepare(text: &str, dir: &Path, missing: &[&str]) -> Prepared {
    let parsed: toml::Value = toml::from_str(text).expect("TOML");
    let mut named = Vec::new();
    named_files(&parsed, &mut named);
    let mut rewritten = text.to_owned();
    for (i, path) in named.iter().enumerate() {
        assert!(
            MOUNTED.iter().any(|prefix| path.starts_with(prefix)),
            "{path} is in neither the Secrets' mount nor the credentials directory"
        );
        let dummy = dir.join(format!("file-{i}"));
        if !missing.contains(&path.as_str()) {
            std::fs::write(&dummy, format!("dummy-{i:02}-0123456789abcdefghij\n"))
                .expect("writing a dummy secret");
        }
        let quoted = format!("{path:?}");
        assert!(
            rewritten.contains(&quoted),
            "{path} is not written as {quoted}"
        );
        rewritten = rewritten.replace(&quoted, &format!("{:?}", dummy.display().to_string()));
    }
    let config = dir.join("xpool.toml");
    std::fs::write(&config, rewritten).expect("writing the rewritten config");
    Prepared { config, named }
}

#[test]
fn the_configmap_config_passes_check_config() {
    let docs = manifests::load_all();
    let text = configmap_config_text(&docs);
    let config = configmap_config(&docs);

    // What the ConfigMap promises: a listener for the cluster, with tokens from files, and apps
    // whose secrets are files too.
    assert_eq!(config["server"]["listen"].as_str(), Some("0.0.0.0:50051"));
    assert_ne!(
        config["server"]
            .get("insecure")
            .and_then(toml::Value::as_bool),
        Some(true)
    );
    let tokens = config["auth"]["tokens"]
        .as_array()
        .expect("[[auth.tokens]]");
    assert!(!tokens.is_empty());
    for token in tokens {
        assert!(token.get("token_file").is_some(), "{token:?}: token_file");
    }
    for app in config["apps"].as_array().expect("[[apps]]") {
        assert!(
            app.get("app_secret").is_none(),
            "{app:?}: a secret in the ConfigMap"
        );
        assert!(
            app.get("app_secret_file").is_some(),
            "{app:?}: app_secret_file"
        );
    }

    // Each file it names is a file the StatefulSet mounts from a Secret.
    let files = manifests::mounted_files(
        super::kubernetes::daemon_pod(&docs),
        super::kubernetes::daemon_container(&docs),
    );
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(&text, dir.path(), &[]);
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

    let output = super::check_config(&prepared.config, &[]);
    super::assert_success(&output, "the ConfigMap's xpool.toml");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains(&format!("auth on ({} tokens)", tokens.len())),
        "{summary}"
    );

    // As the container sees it: the image's ENV overrides the same keys with the same values.
    let image_env = super::docker::xpool_env();
    assert!(!image_env.is_empty());
    for (name, value) in &image_env {
        let key = name.trim_start_matches("XPOOL__").to_ascii_lowercase();
        let (section, key) = key.split_once("__").expect("XPOOL__SECTION__KEY");
        let ours = config[section].get(key).and_then(toml::Value::as_str);
        assert_eq!(
            ours,
            Some(value.as_str()),
            "{name} in deploy/Dockerfile vs {section}.{key}"
        );
    }
    super::assert_success(
        &super::check_config(&prepared.config, &image_env),
        "the ConfigMap's xpool.toml with the image's ENV",
    );
}

/// The check above can fail: without one of the Secret's files, the same config is refused.
#[test]
fn check_config_refuses_the_configmap_config_without_a_secret_file() {
    let docs = manifests::load_all();
    let text = configmap_config_text(&docs);
    let dir = tempfile::tempdir().unwrap();
    let all = prepare(&text, dir.path(), &[]).named;
    let missing = all.last().expect("a file named").clone();
    let other = tempfile::tempdir().unwrap();
    let prepared = prepare(&text, other.path(), &[missing.as_str()]);
    let output = super::check_config(&prepared.config, &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn every_daemon_config_file_passes_check_config() {
    let tomls = super::deploy_files(&["toml"]);
    let mut daemon_configs = 0;
    for file in &tomls {
        let text = super::read(file);
        if file.file_name().is_some_and(|n| n == "sim.toml") {
            // The simulator's config, checked by the simulator's own loader.
            xpool_sim::SimConfig::load(file)
                .unwrap_or_else(|e| panic!("{}: {e:#}", super::shown(file)));
            continue;
        }
        daemon_configs += 1;
        let dir = tempfile::tempdir().unwrap();
        let prepared = prepare(&text, dir.path(), &[]);
        let output = super::check_config(&prepared.config, &[]);
        super::assert_success(&output, &super::shown(file));
        no_literal_secrets(file, &text);
    }
    assert!(
        daemon_configs >= 2,
        "deploy/xpool.toml and deploy/xpool-systemd.toml"
    );
}

/// A literal `app_secret` is allowed only for an app of the local simulator (a loopback
/// `base_url`), whose keys are public; a real platform's secret comes from a file.
fn no_literal_secrets(file: &Path, text: &str) {
    let config: toml::Value = toml::from_str(text).expect("TOML");
    let apps = config.get("apps").and_then(toml::Value::as_array);
    for app in apps.map_or(&[][..], Vec::as_slice) {
        if app.get("app_secret").is_none() {
            continue;
        }
        let url = app
            .get("base_url")
            .and_then(toml::Value::as_str)
            .unwrap_or("");
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let local = host.is_some_and(|h| h == "localhost" || h.starts_with("127."));
        assert!(
            local,
            "{}: {app:?} has a literal app_secret",
            super::shown(file)
        );
    }
}

#[test]
fn no_secret_values_under_deploy() {
    let mut files = super::files_under(&super::deploy_dir());
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"));
    for file in files {
        let text = super::read(&file).to_ascii_lowercase();
        for placeholder in [
            "change-me",
            "changeme",
            "change_me",
            "stringdata:",
            "private key-----",
        ] {
            assert!(
                !text.contains(placeholder),
                "{}: {placeholder}",
                super::shown(&file)
            );
        }
        for line in text.lines() {
            // `XPOOL__APPS__X__APP_SECRET=value` or `XPOOL_TOKEN=value` with a value in it.
            for var in ["__app_secret=", "xpool_token="] {
                if let Some((_, value)) = line.split_once(var) {
                    let value = value.trim_matches(['"', '\'']);
                    let hidden = value.is_empty() || value.starts_with(['$', '.', '<']);
                    assert!(hidden, "{}: {}", super::shown(&file), line.trim());
                }
            }
        }
    }
}
