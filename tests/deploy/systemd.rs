//! `deploy/xpool.service`: a hardened unit whose secrets are credentials that its config
//! (`deploy/xpool-systemd.toml`) reads, and that stops no sooner than the daemon's drain.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// The credentials directory of the unit (`$CREDENTIALS_DIRECTORY`, `%d`).
const CREDENTIALS: &str = "/run/credentials/xpool.service/";

fn unit_path() -> PathBuf {
    super::deploy_dir().join("xpool.service")
}

/// (section, key, value) of every assignment, in order.
fn assignments() -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut found = Vec::new();
    for line in super::read(&unit_path()).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("Key=value");
        assert!(
            !line.ends_with('\\'),
            "continuation lines are not parsed here: {line}"
        );
        found.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    found
}

/// Every value of `[Service] key`.
fn service(key: &str) -> Vec<String> {
    assignments()
        .into_iter()
        .filter(|(section, k, _)| section == "Service" && k == key)
        .map(|(_, _, value)| value)
        .collect()
}

fn one(key: &str) -> String {
    let values = service(key);
    assert_eq!(values.len(), 1, "[Service] {key}= once, found {values:?}");
    values[0].clone()
}

/// The config the unit's install steps put at /etc/xpool/xpool.toml.
fn config() -> toml::Value {
    let unit = super::read(&unit_path());
    assert!(
        unit.contains("deploy/xpool-systemd.toml /etc/xpool/xpool.toml"),
        "the unit installs deploy/xpool-systemd.toml as its config"
    );
    let text = super::read(&super::deploy_dir().join("xpool-systemd.toml"));
    toml::from_str(&text).expect("deploy/xpool-systemd.toml is TOML")
}

#[test]
fn the_unit_is_hardened() {
    assert_eq!(
        one("ExecStart"),
        "/usr/local/bin/xpool serve --config /etc/xpool/xpool.toml"
    );
    let dynamic = service("DynamicUser").iter().any(|v| v == "yes");
    let user = service("User");
    assert!(
        dynamic || user.iter().any(|u| u != "root" && u != "0"),
        "DynamicUser=yes or a dedicated User="
    );
    for (key, allowed) in [
        ("StateDirectory", &["xpool"][..]),
        ("ProtectSystem", &["strict"]),
        ("ProtectHome", &["yes", "read-only", "tmpfs"]),
        ("PrivateTmp", &["yes"]),
        ("NoNewPrivileges", &["yes"]),
        ("CapabilityBoundingSet", &[""]),
        ("LimitNOFILE", &["65536"]),
        ("Restart", &["on-failure"]),
    ] {
        let value = one(key);
        assert!(
            allowed.contains(&value.as_str()),
            "{key}={value}, expected one of {allowed:?}"
        );
    }
    let families: BTreeSet<String> = one("RestrictAddressFamilies")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let wanted: BTreeSet<String> = ["AF_INET", "AF_INET6", "AF_UNIX"].map(String::from).into();
    assert_eq!(families, wanted, "RestrictAddressFamilies");
    let filters = service("SystemCallFilter");
    assert!(
        filters
            .first()
            .is_some_and(|f| f.split_whitespace().any(|s| s == "@system-service"))
    );
    assert!(
        service("EnvironmentFile").is_empty(),
        "secrets come as credentials, not env files"
    );
}

#[test]
fn the_unit_waits_for_the_drain_to_end() {
    let config = config();
    let server = &config["server"];
    let seconds = |key: &str| server.get(key).and_then(toml::Value::as_integer);
    // The defaults when the config leaves them out (README "Configuration").
    let delay = seconds("shutdown_delay_seconds").unwrap_or(2);
    let grace = seconds("shutdown_grace_seconds").unwrap_or(10);
    let stop = one("TimeoutStopSec");
    let stop: i64 = stop
        .strip_suffix('s')
        .unwrap_or(&stop)
        .parse()
        .unwrap_or_else(|_| panic!("TimeoutStopSec={stop}: write it in seconds"));
    // Health NOT_SERVING for the delay, then the grace for calls and as long for tasks.
    assert!(
        stop > delay + 2 * grace,
        "TimeoutStopSec={stop} <= {delay} + 2 x {grace}"
    );
}

#[test]
fn every_file_the_config_names_is_a_loaded_credential() {
    let config = config();
    let mut named = BTreeSet::new();
    for token in config["auth"]["tokens"]
        .as_array()
        .expect("[[auth.tokens]]")
    {
        named.insert(token["token_file"].as_str().expect("token_file").to_owned());
    }
    for app in config["apps"].as_array().expect("[[apps]]") {
        assert!(
            app.get("app_secret").is_none(),
            "{app:?}: a secret in the config"
        );
        named.insert(
            app["app_secret_file"]
                .as_str()
                .expect("app_secret_file")
                .to_owned(),
        );
    }
    let loaded: BTreeSet<String> = service("LoadCredential")
        .iter()
        .map(|v| {
            format!(
                "{CREDENTIALS}{}",
                v.split_once(':').map_or(v.as_str(), |(id, _)| id)
            )
        })
        .collect();
    assert_eq!(named, loaded, "the config's files vs LoadCredential=");

    // The store is in the state directory, where ProtectSystem=strict lets it write.
    let store = config["store"]["path"].as_str().expect("store.path");
    let state = format!("/var/lib/{}/", one("StateDirectory"));
    assert!(
        store.starts_with(&state),
        "store.path {store} is outside {state}"
    );
    let env = format!(
        "XPOOL__STORE__PATH={}",
        store.replacen("/var/lib/", "%S/", 1)
    );
    assert!(service("Environment").contains(&env), "Environment={env}");
}

/// `systemd-analyze verify`, where it exists, on the unit with ExecStart pointing at the
/// binary just built (verify checks that it exists). Any complaint about the unit fails.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("note: no systemd-analyze here; skipped `systemd-analyze verify`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("xpool.service");
    let text = super::read(&unit_path());
    let built = env!("CARGO_BIN_EXE_xpool");
    assert!(text.contains("ExecStart=/usr/local/bin/xpool "));
    std::fs::write(
        &unit,
        text.replace(
            "ExecStart=/usr/local/bin/xpool ",
            &format!("ExecStart={built} "),
        ),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("running systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("xpool.service"))
        .collect();
    assert!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify: exit {:?}\n{stderr}",
        output.status.code()
    );
}
