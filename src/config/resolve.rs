//! From the overridden table to a validated [`Config`]: sections, apps, and the rules that span
//! apps (unique names, keys and numbers).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::call_defaults;
use super::callbacks;
use super::source::{self, Problems, SECTIONS};
use super::{AppConfig, CallbacksConfig, Config, ConfigError, NumberConfig, ServerConfig};
use crate::platform::Mode;
use crate::platform::auth::Scheme;
use crate::platform::number::{is_area_code, is_global};
use crate::platform::options::{MAX_TONE_CHARS, is_tone_name};
use crate::upstream::Secret;

/// One `[[apps]]` entry as written; every field optional so each key can be checked alone.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawApp {
    name: Option<String>,
    #[serde(deserialize_with = "source::de_mode")]
    mode: Option<Mode>,
    base_url: Option<String>,
    app_key: Option<String>,
    app_secret: Option<Secret>,
    app_secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "source::de_scheme")]
    auth_scheme: Option<Scheme>,
    rate_per_second: Option<u32>,
    burst: Option<u32>,
    timeout_ms: Option<u64>,
    pending_recheck_ms: Option<u64>,
    max_request_wait_ms: Option<u64>,
    flow_control_backoff_ms: Option<u64>,
    auth_cool_off_seconds: Option<u64>,
    fallback_areas: Option<Vec<String>>,
    cool_down_seconds: Option<u64>,
    max_bindings_per_x: Option<u32>,
    extension_digits: Option<u8>,
    max_extensions_per_x: Option<u32>,
    numbers: Option<Vec<Table>>,
    check_numbers_on_add: Option<bool>,
    call_defaults: Option<Table>,
    verify_push_signature: Option<bool>,
    close_hint_tone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawNumber {
    number: Option<String>,
    area_code: Option<String>,
}

/// Applies `env` to `table`, then deserializes and validates everything.
pub(super) fn build(
    mut table: Table,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut problems = Problems::new(origin);
    source::apply_env(&mut table, env, &mut problems);
    let config = resolve(&table, &mut problems);
    problems.into_result(config)
}

fn resolve(table: &Table, problems: &mut Problems) -> Config {
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            problems.push(
                key,
                format!("unknown section, expected one of {SECTIONS:?}"),
            );
        }
    }
    let server: ServerConfig = typed_section(table, "server", problems);
    let store: super::StoreConfig = typed_section(table, "store", problems);
    let expiry: super::ExpiryConfig = typed_section(table, "expiry", problems);
    let reconcile = typed_section(table, "reconcile", problems);
    let admin = typed_section(table, "admin", problems);
    let callbacks: CallbacksConfig = typed_section(table, "callbacks", problems);
    let watch = typed_section(table, "watch", problems);
    let log: super::LogConfig = typed_section(table, "log", problems);
    super::log::check(&log, super::OTLP_BUILT_IN, problems);
    check_server(&server, problems);
    callbacks::check(&callbacks, &watch, problems);
    if store.path.as_os_str().is_empty() {
        problems.push("store.path", "must not be empty");
    }
    if store.cache_capacity_mb == 0 {
        problems.push("store.cache_capacity_mb", "must be at least 1");
    }
    check_retention(&store, problems);
    if expiry.batch_size == 0 {
        problems.push("expiry.batch_size", "must be at least 1");
    }
    if expiry.round_budget_ms == 0 {
        problems.push("expiry.round_budget_ms", "must be at least 1");
    }
    let apps = resolve_apps(table.get("apps"), &server, problems);
    if callbacks.listen.is_some() {
        check_push_keys(&apps, problems);
    }
    let names = apps.iter().map(|app| app.name.as_str()).collect();
    let mutual_tls = server
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_ca_file.is_some());
    let auth = super::auth::resolve(table.get("auth"), &names, mutual_tls, problems);
    check_exposure(&server, auth.is_some(), problems);
    let cluster = super::cluster::resolve(table.get("cluster"), problems);
    if let Some(cluster) = &cluster {
        super::cluster::check_peer_tls(
            cluster,
            server.tls.as_ref(),
            callbacks.tls.as_ref(),
            problems,
        );
    }
    Config {
        server,
        store,
        apps,
        expiry,
        reconcile,
        admin,
        callbacks,
        watch,
        auth,
        log,
        cluster,
    }
}

/// Without `[auth]`, anyone who reaches the gRPC port may bind, unbind and drain: allowed on
/// a loopback address, elsewhere only when `server.insecure` says so.
fn check_exposure(server: &ServerConfig, auth: bool, problems: &mut Problems) {
    if !auth && !server.insecure && !server.listen.ip().is_loopback() {
        let message = format!(
            "{} is not a loopback address and there is no [auth]: anyone reaching it could \
             bind, unbind and drain numbers; add [[auth.tokens]] (`xpool token new`), or set \
             server.insecure = true to serve without authentication",
            server.listen
        );
        problems.push("server.listen", message);
    }
}

/// Longest `store.released_retention_days` accepted (ten years).
const MAX_RELEASED_RETENTION_DAYS: u64 = 3650;

/// Longest `store.request_id_retention_hours` accepted (a year).
const MAX_REQUEST_ID_RETENTION_HOURS: u64 = 8760;

fn check_retention(store: &super::StoreConfig, problems: &mut Problems) {
    if store.released_retention_days > MAX_RELEASED_RETENTION_DAYS {
        let message = format!(
            "{} is more than {MAX_RELEASED_RETENTION_DAYS} (ten years); 0 deletes at release",
            store.released_retention_days
        );
        problems.push("store.released_retention_days", message);
    }
    if store.request_id_retention_hours > MAX_REQUEST_ID_RETENTION_HOURS {
        let message = format!(
            "{} is more than {MAX_REQUEST_ID_RETENTION_HOURS} (a year)",
            store.request_id_retention_hours
        );
        problems.push("store.request_id_retention_hours", message);
    }
}

/// Largest `server.max_message_bytes` accepted (64 MiB).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

fn check_server(server: &ServerConfig, problems: &mut Problems) {
    if let Some(tls) = &server.tls
        && let Err((key, message)) = crate::tls::check(tls)
    {
        problems.push(format!("server.tls.{key}"), message);
    }
    if server.max_connections == 0 {
        problems.push("server.max_connections", "must be at least 1");
    }
    if server.handshake_timeout_seconds == 0 {
        problems.push("server.handshake_timeout_seconds", "must be at least 1");
    }
    if server.http2_keepalive_interval_seconds > 0 && server.http2_keepalive_timeout_seconds == 0 {
        let message = "must be at least 1 while http2_keepalive_interval_seconds is set";
        problems.push("server.http2_keepalive_timeout_seconds", message);
    }
    if !(1024..=MAX_MESSAGE_BYTES).contains(&server.max_response_bytes) {
        let message = format!(
            "{} is not 1024 to {MAX_MESSAGE_BYTES} (64 MiB)",
            server.max_response_bytes
        );
        problems.push("server.max_response_bytes", message);
    }
    if server.max_concurrent_streams == 0 {
        problems.push("server.max_concurrent_streams", "must be at least 1");
    }
    if !(1024..=1024 * 1024).contains(&server.max_header_bytes) {
        let message = format!("{} is not 1024 to 1048576 (1 MiB)", server.max_header_bytes);
        problems.push("server.max_header_bytes", message);
    }
    if !(1024..=MAX_MESSAGE_BYTES).contains(&server.max_message_bytes) {
        let message = format!(
            "{} is not 1024 to {MAX_MESSAGE_BYTES} (64 MiB)",
            server.max_message_bytes
        );
        problems.push("server.max_message_bytes", message);
    }
}

fn typed_section<T: DeserializeOwned + Default>(
    table: &Table,
    name: &str,
    problems: &mut Problems,
) -> T {
    match table.get(name) {
        None => T::default(),
        Some(Value::Table(section)) => source::section(section, name, problems).unwrap_or_default(),
        Some(_) => {
            problems.push(name, format!("must be a table ([{name}])"));
            T::default()
        }
    }
}

fn resolve_apps(
    value: Option<&Value>,
    server: &ServerConfig,
    problems: &mut Problems,
) -> Vec<AppConfig> {
    let entries = match value {
        None => return Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            problems.push("apps", "must be an array of tables ([[apps]])");
            return Vec::new();
        }
    };
    let mut apps = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let Value::Table(table) = entry else {
            problems.push(format!("apps[{index}]"), "must be a table");
            continue;
        };
        let path = source::app_path(table, index);
        let Some(raw) = source::section::<RawApp>(table, &path, problems) else {
            continue;
        };
        if let Some(app) = resolve_app(raw, &path, server, problems) {
            apps.push((path, app));
        }
    }
    check_across_apps(&apps, problems);
    apps.into_iter().map(|(_, app)| app).collect()
}

/// True for `[a-z0-9_-]{1,64}`.
pub(super) fn is_app_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks one app on its own; `None` when it had any problem.
fn resolve_app(
    raw: RawApp,
    path: &str,
    server: &ServerConfig,
    problems: &mut Problems,
) -> Option<AppConfig> {
    let before = problems.len();
    let key = |name: &str| format!("{path}.{name}");
    let name = raw.name.unwrap_or_default();
    if !is_app_name(&name) {
        let message = format!("{name:?} is not an app name ([a-z0-9_-], 1 to 64 characters)");
        problems.push(key("name"), message);
    }
    let mode = raw.mode.unwrap_or_else(|| {
        problems.push(key("mode"), "is required (AX, AXB, AXE, AXYB or X)");
        Mode::X
    });
    let upstream = mode != Mode::X;
    let base_url = raw.base_url.unwrap_or_default();
    if base_url.is_empty() {
        if upstream {
            problems.push(key("base_url"), format!("is required for mode {mode}"));
        }
    } else if let Err(message) = check_url(&base_url) {
        problems.push(key("base_url"), message);
    }
    let app_key = raw.app_key.unwrap_or_default();
    if upstream && app_key.is_empty() {
        problems.push(key("app_key"), format!("is required for mode {mode}"));
    }
    let app_secret = match (raw.app_secret, raw.app_secret_file) {
        (Some(_), Some(_)) => {
            let message = "app_secret and app_secret_file are both given; use one";
            problems.push(key("app_secret_file"), message);
            None
        }
        (Some(secret), None) => Some(secret),
        (None, Some(file)) => read_secret(&file, &key("app_secret_file"), problems),
        (None, None) => Some(Secret::default()),
    };
    if upstream && app_secret.as_ref().is_some_and(Secret::is_empty) {
        let message = format!("is required for mode {mode} (or app_secret_file)");
        problems.push(key("app_secret"), message);
    }
    let rate_per_second = raw.rate_per_second.unwrap_or(50);
    // A tenth of a second's worth by default: calls go out evenly, so a platform limited at the
    // same rate still has its own burst to absorb network jitter (a full second's burst at
    // start-up would drain it and turn jitter into flow-control answers).
    let burst = raw.burst.unwrap_or((rate_per_second / 10).max(1));
    for (name, value) in [("rate_per_second", rate_per_second), ("burst", burst)] {
        if value == 0 {
            problems.push(key(name), "must be at least 1");
        }
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(10_000);
    if timeout_ms == 0 {
        problems.push(key("timeout_ms"), "must be at least 1");
    }
    let max_bindings_per_x = raw.max_bindings_per_x.unwrap_or(5000);
    if max_bindings_per_x == 0 {
        problems.push(key("max_bindings_per_x"), "must be at least 1");
    }
    let fallback_areas = raw.fallback_areas.unwrap_or_default();
    check_areas(&fallback_areas, &key("fallback_areas"), problems);
    let extension_digits = raw.extension_digits.unwrap_or(4);
    let max_extensions_per_x = raw.max_extensions_per_x;
    check_extensions(extension_digits, max_extensions_per_x, path, problems);
    if !upstream && raw.check_numbers_on_add == Some(true) {
        let message = "mode X has no platform to ask about numbers";
        problems.push(key("check_numbers_on_add"), message);
    }
    let numbers = resolve_numbers(raw.numbers.as_deref().unwrap_or_default(), path, problems);
    let call_defaults = call_defaults::resolve(raw.call_defaults.as_ref(), mode, path, problems);
    let verify_push_signature = raw.verify_push_signature.unwrap_or(false);
    // Apps with a platform require both already.
    if verify_push_signature && !upstream {
        let needs = "is required with verify_push_signature (pushes are signed with it)";
        if app_key.is_empty() {
            problems.push(key("app_key"), needs);
        }
        if app_secret.as_ref().is_some_and(Secret::is_empty) {
            problems.push(key("app_secret"), format!("{needs}; or app_secret_file"));
        }
    }
    if let Some(tone) = &raw.close_hint_tone {
        if mode != Mode::X {
            let message = format!("only X-mode apps answer callins, this one is {mode}");
            problems.push(key("close_hint_tone"), message);
        } else if !is_tone_name(tone) {
            let message = format!(
                "{tone:?} is not a tone file name (1 to {MAX_TONE_CHARS} characters, no control \
                 characters or surrounding spaces)"
            );
            problems.push(key("close_hint_tone"), message);
        }
    }
    (problems.len() == before).then(|| AppConfig {
        name,
        mode,
        base_url: base_url.trim_end_matches('/').to_owned(),
        app_key,
        app_secret: app_secret.unwrap_or_default(),
        auth_scheme: raw.auth_scheme.unwrap_or_default(),
        rate_per_second,
        burst,
        timeout_ms,
        pending_recheck_ms: raw.pending_recheck_ms.unwrap_or(timeout_ms),
        max_request_wait_ms: raw
            .max_request_wait_ms
            .unwrap_or(server.max_request_wait_ms),
        flow_control_backoff_ms: raw.flow_control_backoff_ms.unwrap_or(5000),
        auth_cool_off_seconds: raw.auth_cool_off_seconds.unwrap_or(60),
        fallback_areas,
        cool_down_seconds: raw.cool_down_seconds.unwrap_or(300),
        max_bindings_per_x,
        extension_digits,
        max_extensions_per_x,
        numbers,
        check_numbers_on_add: raw.check_numbers_on_add.unwrap_or(upstream),
        call_defaults,
        verify_push_signature,
        close_hint_tone: raw.close_hint_tone,
    })
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("{url:?} is not a URL"))?;
    let web = matches!(parsed.scheme(), "http" | "https");
    if !web || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} is not an http(s)://host URL"));
    }
    Ok(())
}

/// Reads a secret file, trimming trailing line ends. Errors name the file, never the content.
fn read_secret(file: &Path, key: &str, problems: &mut Problems) -> Option<Secret> {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let secret = text.trim_end_matches(['\n', '\r']);
            if secret.is_empty() {
                problems.push(key, format!("secret file {} is empty", file.display()));
                return None;
            }
            Some(Secret::new(secret))
        }
        Err(e) => {
            let message = format!("cannot read secret file {}: {e}", file.display());
            problems.push(key, message);
            None
        }
    }
}

fn check_areas(areas: &[String], key: &str, problems: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, area) in areas.iter().enumerate() {
        if !is_area_code(area) {
            let message = format!("{area:?} is not an area code (2 to 6 digits)");
            problems.push(format!("{key}[{i}]"), message);
        } else if !seen.insert(area) {
            problems.push(format!("{key}[{i}]"), format!("{area:?} is listed twice"));
        }
    }
}

fn check_extensions(digits: u8, max: Option<u32>, path: &str, problems: &mut Problems) {
    if !(1..=4).contains(&digits) {
        let message = format!("{digits} is not 1 to 4");
        problems.push(format!("{path}.extension_digits"), message);
        return;
    }
    let space = 10u32.pow(u32::from(digits)) - 1;
    if let Some(max) = max
        && !(1..=space).contains(&max)
    {
        let message = format!("{max} is not 1 to {space} (10^extension_digits - 1)");
        problems.push(format!("{path}.max_extensions_per_x"), message);
    }
}

fn resolve_numbers(tables: &[Table], path: &str, problems: &mut Problems) -> Vec<NumberConfig> {
    let mut numbers = Vec::new();
    let mut seen = HashSet::new();
    for (i, table) in tables.iter().enumerate() {
        let at = format!("{path}.numbers[{i}]");
        let Some(raw) = source::section::<RawNumber>(table, &at, problems) else {
            continue;
        };
        let number = raw.number.unwrap_or_default();
        let area_code = raw.area_code.unwrap_or_default();
        let mut ok = true;
        if !is_global(&number) {
            let message =
                format!("{number:?} is not a number in global format (+<country><digits>)");
            problems.push(format!("{at}.number"), message);
            ok = false;
        } else if !seen.insert(number.clone()) {
            problems.push(
                format!("{at}.number"),
                format!("{number:?} is listed twice"),
            );
            ok = false;
        }
        if !is_area_code(&area_code) {
            let message = format!("{area_code:?} is not an area code (2 to 6 digits)");
            problems.push(format!("{at}.area_code"), message);
            ok = false;
        }
        if ok {
            numbers.push(NumberConfig { number, area_code });
        }
    }
    numbers
}

/// With the push receiver on, an app key names one app: a push is told by the key it is
/// signed with (the `Username` of its token).
fn check_push_keys(apps: &[AppConfig], problems: &mut Problems) {
    let mut keys: HashMap<&str, &str> = HashMap::new();
    for app in apps.iter().filter(|app| !app.app_key.is_empty()) {
        if let Some(other) = keys.insert(&app.app_key, &app.name) {
            let message = format!(
                "app_key {:?} is also used by app {other:?}; the push receiver (callbacks.listen) \
                 tells apps apart by their key",
                app.app_key
            );
            problems.push(format!("apps[{}].app_key", app.name), message);
        }
    }
}

/// Names are unique, an app key is used once per base URL, a number belongs to one app.
fn check_across_apps(apps: &[(String, AppConfig)], problems: &mut Problems) {
    let mut names = HashSet::new();
    let mut keys: HashMap<(String, &str), &str> = HashMap::new();
    let mut numbers: HashMap<&str, &str> = HashMap::new();
    for (path, app) in apps {
        if !names.insert(app.name.as_str()) {
            let message = format!("{:?} is the name of more than one app", app.name);
            problems.push(format!("{path}.name"), message);
        }
        if !app.app_key.is_empty() {
            let at = (app.base_url.to_ascii_lowercase(), app.app_key.as_str());
            if let Some(other) = keys.insert(at, &app.name) {
                let message = format!(
                    "app_key {:?} at {} is also used by app {other:?}",
                    app.app_key, app.base_url
                );
                problems.push(format!("{path}.app_key"), message);
            }
        }
        for (i, number) in app.numbers.iter().enumerate() {
            if let Some(other) = numbers.insert(&number.number, &app.name) {
                let message = format!("{:?} also belongs to app {other:?}", number.number);
                problems.push(format!("{path}.numbers[{i}].number"), message);
            }
        }
    }
}
