//! The daemon's configuration: a TOML file (or the embedded default), overridden by
//! `XPOOL__SECTION__KEY` variables from an injectable environment, validated as a whole before
//! anything is opened or bound.
//!
//! Loading goes file → `toml::Table` → env overrides applied to the table (`source`) →
//! each section deserialized with `deny_unknown_fields` and checked (`resolve`). Every problem
//! found is reported at once, each naming where the value came from (the file or the variable)
//! and its key path, e.g. `deploy/xpool.toml: apps[rides].numbers[2].number: …`. No error ever
//! contains a secret value.

mod auth;
mod call_defaults;
mod callbacks;
mod cluster;
mod embedded;
mod log;
mod resolve;
mod source;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::platform::Mode;
use crate::platform::auth::Scheme;
use crate::platform::options::CallOptions;
use crate::upstream::{AppSettings, Secret};

pub use auth::{AuthConfig, ClientConfig, TokenConfig};
pub use callbacks::{CallbacksConfig, WatchConfig};
pub use cluster::{ClusterConfig, ClusterTlsConfig, EtcdCredentials};
pub use embedded::{EMBEDDED_CALLBACKS_LISTEN, EMBEDDED_SIM_URL};
pub use log::{LogConfig, LogFormat, OTLP_BUILT_IN};

/// The whole daemon configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub apps: Vec<AppConfig>,
    pub expiry: ExpiryConfig,
    pub reconcile: ReconcileConfig,
    pub admin: AdminConfig,
    pub callbacks: CallbacksConfig,
    pub watch: WatchConfig,
    /// `[auth]`; `None`: callers are not authenticated (loopback or `server.insecure` only).
    pub auth: Option<AuthConfig>,
    pub log: LogConfig,
    /// `[cluster]`; `None`: a single node on its own store (docs/cluster.md).
    pub cluster: Option<ClusterConfig>,
}

/// `[server]`: the gRPC listener and request handling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(deserialize_with = "source::de_socket_addr")]
    pub listen: SocketAddr,
    /// How long health reports NOT_SERVING after SIGTERM while calls are still accepted, so
    /// load balancers move traffic away before new calls are refused.
    pub shutdown_delay_seconds: u64,
    /// How long in-flight requests may run once new calls are refused; background tasks get
    /// as long again to stop.
    pub shutdown_grace_seconds: u64,
    /// Longest a Bind waits for the app's rate limiter when the caller set no deadline; the
    /// default for every app's `max_request_wait_ms`.
    pub max_request_wait_ms: u64,
    /// Open client connections at most; further ones are closed at once (logged, counted).
    pub max_connections: usize,
    /// A new connection must send the HTTP/2 preface within this long, or it is closed.
    pub handshake_timeout_seconds: u64,
    /// A connection with no call in flight for this long is closed; 0 turns it off.
    pub idle_timeout_seconds: u64,
    /// Interval of the HTTP/2 pings that find dead peers; 0 turns them off.
    pub http2_keepalive_interval_seconds: u64,
    /// A peer that does not answer a ping within this long is dropped.
    pub http2_keepalive_timeout_seconds: u64,
    /// Idle time before the kernel's TCP keepalive probes start; 0 turns them off.
    pub tcp_keepalive_seconds: u64,
    /// Largest request message accepted; a larger one is refused with RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Largest response message sent (a listing page, a Watch batch); a larger one fails with
    /// OUT_OF_RANGE ("encoded message length too large") rather than reach a client that
    /// would refuse it.
    pub max_response_bytes: usize,
    /// Calls one HTTP/2 connection may have in flight at once; more wait for a slot (the
    /// client sees the peer's SETTINGS and queues).
    pub max_concurrent_streams: u32,
    /// Largest header block (metadata) a request may carry.
    pub max_header_bytes: u32,
    /// Binds are refused with UNAVAILABLE (OVERLOADED, with a retry hint) while this many
    /// writes wait for the store's log: a disk that cannot keep up sheds load instead of
    /// growing memory without bound. 0: never.
    pub max_queued_writes: u64,
    /// `[server.tls]`: TLS (and with `client_ca_file` mutual TLS) on the gRPC listener.
    pub tls: Option<TlsConfig>,
    /// Serve a non-loopback `listen` without `[auth]` (anyone who reaches the port may bind,
    /// unbind and drain); without it the daemon refuses to start that way.
    pub insecure: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_delay_seconds: 2,
            shutdown_grace_seconds: 10,
            max_request_wait_ms: 5000,
            max_connections: 1000,
            handshake_timeout_seconds: 10,
            idle_timeout_seconds: 600,
            http2_keepalive_interval_seconds: 30,
            http2_keepalive_timeout_seconds: 10,
            tcp_keepalive_seconds: 60,
            max_message_bytes: 64 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 256,
            max_header_bytes: 16 * 1024,
            max_queued_writes: 20_000,
            tls: None,
            insecure: false,
        }
    }
}

/// `[server.tls]`: PEM files, re-read on SIGHUP and when they change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates a client's certificate must be signed by; a client without one is
    /// refused at the handshake. Absent: no client certificates asked for.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `[store]`: the sled database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the database, relative to the working directory unless absolute.
    pub path: PathBuf,
    /// sled's page cache (it holds about twice this); see `store::DEFAULT_CACHE_CAPACITY_BYTES`.
    pub cache_capacity_mb: u64,
    /// Days a RELEASED or EXPIRED binding (with its real numbers) is kept after it left
    /// service; 0 deletes it at release or expiry (an AX number or AXE extension's binding is
    /// kept until its cool-down has ended, which a restart needs).
    pub released_retention_days: u64,
    /// Hours a request id is remembered after its binding left service (while the binding
    /// lives, always): a Bind repeating it in that time gets that binding, later it starts a new
    /// one.
    pub request_id_retention_hours: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("./xpool-data"),
            cache_capacity_mb: crate::store::DEFAULT_CACHE_CAPACITY_BYTES / (1024 * 1024),
            released_retention_days: 7,
            request_id_retention_hours: 24,
        }
    }
}

impl StoreConfig {
    /// How long a binding that left service is kept.
    pub fn released_retention(&self) -> Duration {
        Duration::from_secs(self.released_retention_days.saturating_mul(24 * 3600))
    }

    /// How long a request id is remembered after its binding left service.
    pub fn request_id_retention(&self) -> Duration {
        Duration::from_secs(self.request_id_retention_hours.saturating_mul(3600))
    }
}

/// `[expiry]`: the job that frees bindings at their deadline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExpiryConfig {
    /// Extra wait after a deadline before acting, for clock skew with the platform.
    pub skew_grace_seconds: u64,
    /// Unbind upstream even where the platform expires bindings itself.
    pub defensive_unbind: bool,
    pub batch_size: usize,
    /// Longest one expiry round may run before yielding.
    pub round_budget_ms: u64,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        ExpiryConfig {
            skew_grace_seconds: 5,
            defensive_unbind: true,
            batch_size: 1000,
            round_budget_ms: 200,
        }
    }
}

/// `[admin]`: the HTTP listener for Prometheus (`/metrics`) and probes (`/healthz`,
/// `/readyz`). Off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(deserialize_with = "source::de_opt_socket_addr")]
    pub listen: Option<SocketAddr>,
}

/// `[reconcile]`: comparing the local index with the platform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Seconds between scheduled runs; 0 turns the schedule off.
    pub interval_seconds: u64,
    /// How long a local-only binding must stay unseen upstream before it is freed.
    pub grace_seconds: u64,
    pub orphan_policy: OrphanPolicy,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            interval_seconds: 0,
            grace_seconds: 60,
            orphan_policy: OrphanPolicy::Adopt,
        }
    }
}

/// What reconciliation does with a binding that exists only upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanPolicy {
    /// Record it locally so it counts as used and expires on schedule.
    #[default]
    Adopt,
    /// Unbind it on the platform.
    Release,
}

/// One `[[apps]]` entry: a PrivateNumber application and its pool.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    /// Unique, `[a-z0-9_-]{1,64}`.
    pub name: String,
    pub mode: Mode,
    /// `http(s)://…`; empty for an X-mode app without upstream.
    pub base_url: String,
    pub app_key: String,
    /// From `app_secret` or the file named by `app_secret_file`; `Debug` prints `***`.
    pub app_secret: Secret,
    pub auth_scheme: Scheme,
    pub rate_per_second: u32,
    /// Calls that may go out at once; default a tenth of `rate_per_second` (at least 1).
    pub burst: u32,
    pub timeout_ms: u64,
    /// A Bind whose answer was lost keeps its PENDING reservation (slot and request_id) until
    /// the platform has said twice, this far apart, that it does not have the binding (0: once);
    /// defaults to `timeout_ms`.
    pub pending_recheck_ms: u64,
    /// Longest a Bind waits for this app's limiter; defaults to `server.max_request_wait_ms`.
    pub max_request_wait_ms: u64,
    pub flow_control_backoff_ms: u64,
    pub auth_cool_off_seconds: u64,
    /// Area codes tried, in order, after the requested one.
    pub fallback_areas: Vec<String>,
    /// How long a released AX number / AXE extension stays out of rotation.
    pub cool_down_seconds: u64,
    pub max_bindings_per_x: u32,
    pub extension_digits: u8,
    /// AXE: cap on extensions per X; `None` is the whole space (10^digits − 1).
    pub max_extensions_per_x: Option<u32>,
    /// Numbers added to the pool at start-up.
    pub numbers: Vec<NumberConfig>,
    /// AddNumbers asks the platform about each new number first and refuses one the platform
    /// says is not the app's; default on for apps with a platform (not X mode).
    pub check_numbers_on_add: bool,
    /// `[apps.call_defaults]`: the call options a Bind gets where it sets none; only options the
    /// app's mode takes.
    pub call_defaults: CallOptions,
    /// Refuse (401) a push for this app that is not signed with its key and secret
    /// (notifications.md §0.3); needs `app_key` and `app_secret`.
    pub verify_push_signature: bool,
    /// X mode: the tone the caller hears when a callin is answered `close` (no binding).
    pub close_hint_tone: Option<String>,
}

/// One number of an app's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberConfig {
    /// Global format, `+<country><digits>`.
    pub number: String,
    pub area_code: String,
}

impl AppConfig {
    /// The upstream client's settings for this app.
    pub fn upstream_settings(&self) -> AppSettings {
        let non_zero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        AppSettings {
            app_key: self.app_key.clone(),
            app_secret: self.app_secret.clone(),
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            scheme: self.auth_scheme,
            timeout: Duration::from_millis(self.timeout_ms),
            rate_per_second: non_zero(self.rate_per_second),
            burst: non_zero(self.burst),
            max_wait: Duration::from_millis(self.max_request_wait_ms),
            flow_control_backoff: Duration::from_millis(self.flow_control_backoff_ms),
            auth_cool_off: Duration::from_secs(self.auth_cool_off_seconds),
        }
    }

    /// False for X mode, whose bindings live only in xpool.
    pub fn has_upstream(&self) -> bool {
        self.mode != Mode::X
    }
}

impl Config {
    /// Reads `path` (TOML) and applies overrides from `env` (an injectable iterator, e.g.
    /// `std::env::vars()`), then validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), env)
    }

    /// Parses `text`, named `source` in errors, applies overrides from `env`, then validates.
    pub fn from_toml_str(
        text: &str,
        source: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let table = source::parse(text, source)?;
        resolve::build(table, source, env)
    }

    /// The embedded default a newcomer meets with no config at all: store `./xpool-data`,
    /// listen `127.0.0.1:50051`, the push receiver on [`EMBEDDED_CALLBACKS_LISTEN`], one demo
    /// app per mode (`demo-ax` … `demo-x`, numbers in areas
    /// 010 and 021), for a simulator the binary runs in-process. Every app's base URL is
    /// [`EMBEDDED_SIM_URL`] until [`Config::point_at_embedded_sim`] sets the real address.
    /// Env overrides apply too.
    pub fn embedded_default(
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        embedded::load(env)
    }

    /// The app called `name`.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|app| app.name == name)
    }

    /// Replaces the [`EMBEDDED_SIM_URL`] placeholder of every app with the address of the
    /// simulator started in-process, e.g. `http://127.0.0.1:40123`.
    pub fn point_at_embedded_sim(&mut self, base_url: &str) {
        for app in &mut self.apps {
            if app.base_url == EMBEDDED_SIM_URL {
                app.base_url = base_url.trim_end_matches('/').to_owned();
            }
        }
    }
}

/// Why a configuration was rejected. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not TOML.
    #[error("{origin}:{line}:{column}: invalid TOML: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The TOML parses but keys or values are not allowed; one line per problem.
    #[error("{}", Problem::join(.0))]
    Invalid(Vec<Problem>),
}

/// One rejected key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value came from: the file (or `embedded default`), or the `XPOOL__…` variable.
    pub origin: String,
    /// The key path, e.g. `apps[rides].numbers[2].number`, or the variable's name.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.message)
    }
}

impl Problem {
    fn join(problems: &[Problem]) -> String {
        let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
        lines.join("\n")
    }
}
