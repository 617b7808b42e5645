//! From text to a `toml::Table` with the environment's overrides applied, and the helpers that
//! turn table entries into typed sections while naming the key of every problem.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use toml::{Table, Value};

use super::resolve::RawApp;
use super::{
    AdminConfig, CallbacksConfig, ConfigError, ExpiryConfig, Problem, ReconcileConfig,
    ServerConfig, StoreConfig, WatchConfig,
};
use crate::platform::Mode;
use crate::platform::auth::Scheme;

/// Variables with this prefix override keys; all others are ignored.
pub(super) const ENV_PREFIX: &str = "XPOOL__";

/// The top-level keys of a config file.
pub(super) const SECTIONS: [&str; 11] = [
    "server",
    "store",
    "apps",
    "expiry",
    "reconcile",
    "admin",
    "callbacks",
    "watch",
    "auth",
    "log",
    "cluster",
];

/// Keys whose values must never be quoted back in an error message.
const SECRET_KEYS: [&str; 2] = ["app_secret", "token_sha256"];

/// Parses TOML text; a syntax error names the source, line and column but quotes no text
/// (the offending line could hold a secret).
pub(super) fn parse(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Syntax {
            origin: origin.to_owned(),
            line,
            column,
            message: e.message().trim_end().replace('\n', "; "),
        }
    })
}

/// Collects every problem of one load, each tagged with where its value came from.
#[derive(Debug)]
pub(super) struct Problems {
    source: String,
    /// Key paths set by a variable, with the variable's name.
    overridden: Vec<(String, String)>,
    list: Vec<Problem>,
}

impl Problems {
    pub(super) fn new(source: &str) -> Self {
        Problems {
            source: source.to_owned(),
            overridden: Vec::new(),
            list: Vec::new(),
        }
    }

    /// A problem with the value at `key`, blamed on the variable that set it if one did.
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let origin = self
            .overridden
            .iter()
            .rev()
            .find(|(path, _)| is_within(&key, path))
            .map_or_else(|| self.source.clone(), |(_, var)| var.clone());
        self.list.push(Problem {
            origin,
            key,
            message: message.into(),
        });
    }

    /// A problem with a variable itself (unknown section or app, malformed name).
    pub(super) fn push_env(&mut self, variable: &str, message: impl Into<String>) {
        self.list.push(Problem {
            origin: "environment".to_owned(),
            key: variable.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid(self.list))
        }
    }
}

/// True when `key` is `path` or lies inside it.
fn is_within(key: &str, path: &str) -> bool {
    key.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Deserializes `table` as `T` (a struct whose fields all have defaults). When that fails,
/// each key is checked on its own so that every bad key is reported by its path `prefix.key`.
///
/// The whole table goes first because a valid config is the common case and its tables can
/// be large (an app's 100,000 numbers): checking each key first cloned them once more, which
/// took a few hundred MiB at start-up and left much of it in the allocator.
pub(super) fn section<T: DeserializeOwned>(
    table: &Table,
    prefix: &str,
    problems: &mut Problems,
) -> Option<T> {
    let whole = match table.clone().try_into::<T>() {
        Ok(value) => return Some(value),
        Err(e) => e,
    };
    let mut clean = true;
    for (key, value) in table {
        if let Err(e) = single::<T>(key, value.clone()) {
            let message = if SECRET_KEYS.contains(&key.as_str()) {
                "must be a string".to_owned()
            } else {
                e.message().trim_end().to_owned()
            };
            problems.push(format!("{prefix}.{key}"), message);
            clean = false;
        }
    }
    if clean {
        // Every key is fine alone, so the fault is in how they go together.
        problems.push(prefix, whole.message().trim_end());
    }
    None
}

fn single<T: DeserializeOwned>(key: &str, value: Value) -> Result<T, toml::de::Error> {
    Table::from_iter([(key.to_owned(), value)]).try_into::<T>()
}

/// Applies every `XPOOL__…` variable of `env` to `table`, in name order.
pub(super) fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Problems,
) {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        apply_one(table, &name, &value, problems);
    }
}

fn apply_one(table: &mut Table, name: &str, raw: &str, problems: &mut Problems) {
    let parts: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let shape = "expected XPOOL__<SECTION>__<KEY> or XPOOL__APPS__<APP>__<KEY>";
    if parts.iter().any(String::is_empty) {
        return problems.push_env(name, shape);
    }
    let section = parts[0].as_str();
    if !SECTIONS.contains(&section) {
        let message = format!("unknown section {section:?}, expected one of {SECTIONS:?}");
        return problems.push_env(name, message);
    }
    match parts.as_slice() {
        [_, app, key] if section == "apps" => apply_to_app(table, name, app, key, raw, problems),
        [_, key] if section != "apps" => {
            let entry = table
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            let Value::Table(target) = entry else {
                return problems.push_env(name, format!("[{section}] in the file is not a table"));
            };
            target.insert(key.clone(), env_value(section, key, raw));
            problems
                .overridden
                .push((format!("{section}.{key}"), name.to_owned()));
        }
        _ => problems.push_env(name, shape),
    }
}

fn apply_to_app(
    table: &mut Table,
    name: &str,
    app: &str,
    key: &str,
    raw: &str,
    problems: &mut Problems,
) {
    let wanted = normalize(app);
    let apps = match table.get_mut("apps") {
        Some(Value::Array(apps)) => apps,
        _ => return problems.push_env(name, format!("no app is named {app:?}")),
    };
    let found: Vec<usize> = (0..apps.len())
        .filter(|&i| {
            let app_name = apps[i].get("name").and_then(Value::as_str);
            app_name.is_some_and(|n| normalize(n) == wanted)
        })
        .collect();
    match found.as_slice() {
        [index] => {
            if let Some(Value::Table(target)) = apps.get_mut(*index) {
                let path = format!("{}.{key}", app_path(target, *index));
                target.insert(key.to_owned(), env_value("apps", key, raw));
                problems.overridden.push((path, name.to_owned()));
            }
        }
        [] => problems.push_env(name, format!("no app is named {app:?}")),
        _ => problems.push_env(name, format!("more than one app matches {app:?}")),
    }
}

/// App names as variables spell them: lower case, `-` written as `_`.
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// `apps[<name>]` when the entry has a well-formed name, else `apps[<index>]`.
pub(super) fn app_path(app: &Table, index: usize) -> String {
    match app.get("name").and_then(Value::as_str) {
        Some(name) if super::resolve::is_app_name(name) => format!("apps[{name}]"),
        _ => format!("apps[{index}]"),
    }
}

/// A variable's value as TOML when it parses as a value the key accepts, else as a string: a
/// secret such as `0x1F` or `12345` stays text, `200` becomes an integer for a rate.
fn env_value(section: &str, key: &str, raw: &str) -> Value {
    let parsed = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"));
    let text = Value::String(raw.to_owned());
    match parsed {
        Some(value) if accepts(section, key, &value) => value,
        _ if accepts(section, key, &text) => text,
        Some(value) => value,
        None => text,
    }
}

fn accepts(section: &str, key: &str, value: &Value) -> bool {
    let value = value.clone();
    match section {
        "server" => single::<ServerConfig>(key, value).is_ok(),
        "store" => single::<StoreConfig>(key, value).is_ok(),
        "expiry" => single::<ExpiryConfig>(key, value).is_ok(),
        "reconcile" => single::<ReconcileConfig>(key, value).is_ok(),
        "admin" => single::<AdminConfig>(key, value).is_ok(),
        "callbacks" => single::<CallbacksConfig>(key, value).is_ok(),
        "watch" => single::<WatchConfig>(key, value).is_ok(),
        "log" => single::<super::LogConfig>(key, value).is_ok(),
        "cluster" => super::cluster::accepts(key, value),
        _ => single::<RawApp>(key, value).is_ok(),
    }
}

pub(super) fn de_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a socket address (expected ip:port, e.g. 127.0.0.1:50051)"
        ))
    })
}

/// An optional socket address (`de_socket_addr` when present).
pub(super) fn de_opt_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    de_socket_addr(d).map(Some)
}

/// A mode, any letter case.
pub(super) fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// An auth scheme, any letter case.
pub(super) fn de_scheme<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Scheme>, D::Error> {
    let text = String::deserialize(d)?;
    [Scheme::Aksk, Scheme::Wsse]
        .into_iter()
        .find(|s| s.word().eq_ignore_ascii_case(&text))
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown auth scheme {text:?} (expected AKSK or WSSE)"
            ))
        })
}
