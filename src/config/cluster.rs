//! `[cluster]`: cluster mode on etcd (docs/cluster.md). Absent: a single node on its own sled
//! store, as always. Every key is checked here, before anything connects: the endpoints, this
//! replica's id and address, the lease, the key prefix, and the TLS and password files (read
//! now, so a missing file fails the load, not the first etcd call). The password is held as a
//! [`Secret`] and never appears in `Debug`, logs or errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

use super::source::{self, Problems};
use crate::upstream::Secret;

/// `[cluster]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:port` or `https://host:port`), tried in this order.
    pub etcd_endpoints: Vec<String>,
    /// This replica's id: unique in the cluster, `[A-Za-z0-9._-]{1,64}`.
    pub node_id: String,
    /// `host:port` at which the other replicas reach this one's gRPC listener; port 0 stands
    /// for the port the listener bound.
    pub advertise_addr: String,
    /// TTL of this replica's etcd lease: how long a dead replica keeps its apps (2 to 60).
    pub lease_ttl_seconds: u64,
    /// Prefix of every key xpool writes in etcd; starts and ends with `/`.
    pub key_prefix: String,
    /// `[cluster.tls]`: TLS towards etcd; `None` with `https://` endpoints trusts the system roots.
    pub tls: Option<ClusterTlsConfig>,
    /// `[cluster.peer_tls]`: TLS towards the other replicas' gRPC listeners (forwarded calls),
    /// required with `[server.tls]`: the CA of their server certificates and, when they ask
    /// for client certificates, this replica's.
    pub peer_tls: Option<ClusterTlsConfig>,
    /// etcd user and password (from `username` and `password_file`), when etcd's auth is on.
    pub credentials: Option<EtcdCredentials>,
}

impl ClusterConfig {
    /// A `[cluster]` for reading etcd only (`xpool cluster status --etcd-endpoints`): the
    /// defaults, without a node id or address of its own, TLS or credentials.
    pub fn for_reading(etcd_endpoints: Vec<String>) -> ClusterConfig {
        let raw = RawCluster::default();
        ClusterConfig {
            etcd_endpoints,
            node_id: String::new(),
            advertise_addr: String::new(),
            lease_ttl_seconds: raw.lease_ttl_seconds,
            key_prefix: raw.key_prefix,
            tls: None,
            peer_tls: None,
            credentials: None,
        }
    }

    /// Checks what a reader of etcd uses, the endpoints and the key prefix, as given on the
    /// command line (`--etcd-endpoints`, `--key-prefix`).
    pub fn check_reading(&self) -> Result<(), String> {
        if self.etcd_endpoints.is_empty() {
            return Err("--etcd-endpoints: at least one etcd client URL is needed".into());
        }
        for url in &self.etcd_endpoints {
            check_endpoint(url).map_err(|message| format!("--etcd-endpoints: {message}"))?;
        }
        if !(self.key_prefix.starts_with('/') && self.key_prefix.ends_with('/')) {
            return Err(format!(
                "--key-prefix: {:?} must start and end with /",
                self.key_prefix
            ));
        }
        Ok(())
    }

    /// The lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_seconds)
    }
}

/// `[cluster.tls]`: PEM files for etcd's client port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// The CA that signed etcd's server certificates; absent: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for etcd's `--client-cert-auth`, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// etcd's user and password. `Debug` shows the user only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdCredentials {
    pub username: String,
    /// Read from `password_file`; prints as `***`.
    pub password: Secret,
}

/// `[cluster]` as written; optional fields so that each key is checked on its own.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCluster {
    etcd_endpoints: Option<Vec<String>>,
    node_id: Option<String>,
    advertise_addr: Option<String>,
    lease_ttl_seconds: u64,
    key_prefix: String,
    tls: Option<Table>,
    peer_tls: Option<Table>,
    username: Option<String>,
    password_file: Option<PathBuf>,
}

impl Default for RawCluster {
    fn default() -> Self {
        RawCluster {
            etcd_endpoints: None,
            node_id: None,
            advertise_addr: None,
            lease_ttl_seconds: 5,
            key_prefix: "/xpool/".to_owned(),
            tls: None,
            peer_tls: None,
            username: None,
            password_file: None,
        }
    }
}

/// Whether `value` is a value `[cluster]` takes for `key` (for environment overrides).
pub(super) fn accepts(key: &str, value: Value) -> bool {
    Table::from_iter([(key.to_owned(), value)])
        .try_into::<RawCluster>()
        .is_ok()
}

/// The lease TTLs accepted: below 2 s etcd raises it anyway, above a minute failover is slow.
const LEASE_TTL: std::ops::RangeInclusive<u64> = 2..=60;

/// Resolves `[cluster]` (`None` when absent, or when it has problems: they are in `problems`).
pub(super) fn resolve(value: Option<&Value>, problems: &mut Problems) -> Option<ClusterConfig> {
    let table = match value? {
        Value::Table(table) => table,
        _ => {
            problems.push("cluster", "must be a table ([cluster])");
            return None;
        }
    };
    if table.contains_key("password") {
        let message = "is not accepted in the file: put the password in a file of its own and \
                       name it in cluster.password_file";
        problems.push("cluster.password", message);
    }
    let mut table = table.clone();
    table.remove("password");
    let raw: RawCluster = source::section(&table, "cluster", problems)?;
    let before = problems.len();
    let etcd_endpoints = endpoints(raw.etcd_endpoints, problems);
    let node_id = match raw.node_id {
        Some(id) if is_node_id(&id) => id,
        Some(id) => {
            let message = format!("{id:?} is not 1 to 64 of A-Z a-z 0-9 . _ -");
            problems.push("cluster.node_id", message);
            String::new()
        }
        None => {
            problems.push("cluster.node_id", "is required: this replica's unique id");
            String::new()
        }
    };
    let advertise_addr = match raw.advertise_addr {
        Some(addr) => match check_host_port(&addr) {
            Ok(()) => addr,
            Err(message) => {
                problems.push("cluster.advertise_addr", message);
                String::new()
            }
        },
        None => {
            let message = "is required: the host:port the other replicas reach this one's gRPC at";
            problems.push("cluster.advertise_addr", message);
            String::new()
        }
    };
    if !LEASE_TTL.contains(&raw.lease_ttl_seconds) {
        let message = format!("{} is not 2 to 60", raw.lease_ttl_seconds);
        problems.push("cluster.lease_ttl_seconds", message);
    }
    if !(raw.key_prefix.starts_with('/') && raw.key_prefix.ends_with('/')) {
        let message = format!("{:?} must start and end with /", raw.key_prefix);
        problems.push("cluster.key_prefix", message);
    }
    let tls = raw
        .tls
        .as_ref()
        .and_then(|t| resolve_tls(t, "cluster.tls", problems));
    let peer_tls = raw
        .peer_tls
        .as_ref()
        .and_then(|t| resolve_tls(t, "cluster.peer_tls", problems));
    if tls.is_some() && !etcd_endpoints.iter().any(|e| e.starts_with("https://")) {
        let message = "is set but no etcd endpoint is https://, so it would not be used";
        problems.push("cluster.tls", message);
    }
    let credentials = credentials(raw.username, raw.password_file.as_deref(), problems);
    (problems.len() == before).then_some(ClusterConfig {
        etcd_endpoints,
        node_id,
        advertise_addr,
        lease_ttl_seconds: raw.lease_ttl_seconds,
        key_prefix: raw.key_prefix,
        tls,
        peer_tls,
        credentials,
    })
}

fn endpoints(raw: Option<Vec<String>>, problems: &mut Problems) -> Vec<String> {
    let Some(endpoints) = raw.filter(|e| !e.is_empty()) else {
        let message = "is required: at least one etcd client URL, e.g. [\"http://127.0.0.1:2379\"]";
        problems.push("cluster.etcd_endpoints", message);
        return Vec::new();
    };
    for (i, url) in endpoints.iter().enumerate() {
        if let Err(message) = check_endpoint(url) {
            problems.push(format!("cluster.etcd_endpoints[{i}]"), message);
        }
    }
    endpoints
}

/// An `http(s)://host[:port]` URL with nothing after the authority.
fn check_endpoint(url: &str) -> Result<(), String> {
    let bad = || format!("{url:?} is not an http(s)://host:port URL");
    let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
    let web = matches!(parsed.scheme(), "http" | "https");
    let bare = matches!(parsed.path(), "" | "/") && parsed.query().is_none();
    if !web || !bare || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(())
}

/// Checks `[cluster.peer_tls]` against the listeners the replicas reach each other on: the
/// gRPC one (`[server.tls]`, forwarded calls) and the push receiver (`[callbacks.tls]`,
/// forwarded pushes). Each that uses TLS needs the CA of the other replicas' certificates,
/// and, when it asks for client certificates, this replica's.
pub(super) fn check_peer_tls(
    cluster: &ClusterConfig,
    server_tls: Option<&super::TlsConfig>,
    callbacks_tls: Option<&super::TlsConfig>,
    problems: &mut Problems,
) {
    let peer = cluster.peer_tls.as_ref();
    if server_tls.is_none() && callbacks_tls.is_none() {
        if peer.is_some() {
            let message = "is set but [server.tls] is not, nor [callbacks.tls]: the replicas \
                           talk to each other in plaintext";
            problems.push("cluster.peer_tls", message);
        }
        return;
    }
    let listeners = [
        ("[server.tls]", "server.tls", server_tls, "forwarded calls"),
        (
            "[callbacks.tls]",
            "callbacks.tls",
            callbacks_tls,
            "forwarded pushes",
        ),
    ];
    let (mut ca_missing, mut cert_missing) = (true, true);
    for (section, key, tls, what) in listeners {
        let Some(tls) = tls else { continue };
        if ca_missing && peer.is_none_or(|p| p.ca_file.is_none()) {
            let message = format!(
                "is required with {section}: the CA that signed the other replicas' \
                 certificates ({what} go over TLS)"
            );
            problems.push("cluster.peer_tls.ca_file", message);
            ca_missing = false;
        }
        if cert_missing
            && tls.client_ca_file.is_some()
            && peer.is_none_or(|p| p.cert_file.is_none())
        {
            let message = format!(
                "is required with {key}.client_ca_file: the replicas ask each other for a \
                 client certificate (with key_file)"
            );
            problems.push("cluster.peer_tls.cert_file", message);
            cert_missing = false;
        }
    }
}

/// `[A-Za-z0-9._-]{1,64}`.
pub(crate) fn is_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `host:port` (`[v6]:port` for IPv6) that another machine can dial: not an unspecified address.
fn check_host_port(addr: &str) -> Result<(), String> {
    let bad = |why: &str| format!("{addr:?} {why}");
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("is not host:port (e.g. xpool-0.xpool:50051)"))?;
    // Port 0: the port the gRPC listener bound (with `server.listen` on port 0, in tests).
    if port.parse::<u16>().is_err() {
        return Err(bad("has no valid port (0 to 65535)"));
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(bad("is not host:port (e.g. xpool-0.xpool:50051)"));
    }
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(bad(
            "is an unspecified address the other replicas cannot dial",
        ));
    }
    Ok(())
}

/// `[cluster.tls]` or `[cluster.peer_tls]` (`name`).
fn resolve_tls(table: &Table, name: &str, problems: &mut Problems) -> Option<ClusterTlsConfig> {
    let tls: ClusterTlsConfig = source::section(table, name, problems)?;
    let files = [
        ("ca_file", &tls.ca_file),
        ("cert_file", &tls.cert_file),
        ("key_file", &tls.key_file),
    ];
    for (key, file) in files {
        if let Some(path) = file
            && let Err(message) = check_pem(path)
        {
            problems.push(format!("{name}.{key}"), message);
        }
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        let missing = if tls.cert_file.is_some() {
            "key_file"
        } else {
            "cert_file"
        };
        let message = "is required with the other: cert_file and key_file go together";
        problems.push(format!("{name}.{missing}"), message);
    }
    Some(tls)
}

/// A readable file holding PEM; the message names the file, never its content.
fn check_pem(path: &Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{} holds no PEM block", path.display()));
    }
    Ok(())
}

fn credentials(
    username: Option<String>,
    password_file: Option<&Path>,
    problems: &mut Problems,
) -> Option<EtcdCredentials> {
    match (username, password_file) {
        (None, None) => None,
        (Some(_), None) => {
            let message = "is required with cluster.username (the file holding the password)";
            problems.push("cluster.password_file", message);
            None
        }
        (None, Some(_)) => {
            problems.push("cluster.username", "is required with cluster.password_file");
            None
        }
        (Some(username), Some(file)) => {
            if username.trim().is_empty() {
                problems.push("cluster.username", "must not be empty");
                return None;
            }
            let password = read_password(file, problems)?;
            Some(EtcdCredentials { username, password })
        }
    }
}

/// Reads the password file, trimming trailing line ends. Errors name the file, never the content.
fn read_password(file: &Path, problems: &mut Problems) -> Option<Secret> {
    let key = "cluster.password_file";
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let password = text.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                problems.push(key, format!("password file {} is empty", file.display()));
                return None;
            }
            Some(Secret::new(password))
        }
        Err(e) => {
            let message = format!("cannot read password file {}: {e}", file.display());
            problems.push(key, message);
            None
        }
    }
}
