//! `[auth]`: the bearer tokens gRPC callers present, each with its scopes (see
//! [`crate::auth`]). The file holds a token's SHA-256 (`token_sha256`, from `xpool token new`) or
//! names a file holding the token itself (`token_file`, e.g. a mounted Kubernetes Secret);
//! never a token in clear.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::Deserialize;
use toml::{Table, Value};

use super::source::{self, Problems};
use crate::auth::Scope;

/// `[auth]`, validated. Absent: no authentication (allowed on loopback, or with
/// `server.insecure = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
    /// Callers known by their client certificate (mutual TLS).
    pub clients: Vec<ClientConfig>,
    /// `grpc.health.v1.Health` without a token (Kubernetes probes, load balancers).
    pub open_health: bool,
    /// The reflection services without a token (`grpcurl list`).
    pub open_reflection: bool,
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// Unique; what logs, metrics and refusals call the caller.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    pub scopes: Vec<Scope>,
    /// Calls a second this token may make (a burst of as many); `None`: no limit.
    pub rate_per_second: Option<NonZeroU32>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("rate_per_second", &self.rate_per_second)
            .finish_non_exhaustive()
    }
}

/// One `[[auth.clients]]` entry: a caller known by its verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Unique among tokens and clients.
    pub name: String,
    /// Matched exactly against the certificate's subject common name and its DNS, URI and
    /// e-mail subject alternative names.
    pub subject: String,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    tokens: Vec<Table>,
    #[serde(default)]
    clients: Vec<Table>,
    #[serde(default = "yes")]
    open_health: bool,
    #[serde(default = "yes")]
    open_reflection: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Option<String>,
    token_sha256: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default)]
    scopes: Vec<String>,
    rate_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Resolves `[auth]` (`None` when absent); `apps` are the configured app names a scope may
/// name; `mutual_tls`: whether clients present certificates (`server.tls.client_ca_file`).
pub(super) fn resolve(
    value: Option<&Value>,
    apps: &HashSet<&str>,
    mutual_tls: bool,
    problems: &mut Problems,
) -> Option<AuthConfig> {
    let table = match value? {
        Value::Table(table) => table,
        _ => {
            problems.push("auth", "must be a table ([auth])");
            return None;
        }
    };
    let raw: RawAuth = source::section(table, "auth", problems)?;
    if raw.tokens.is_empty() && raw.clients.is_empty() {
        problems.push(
            "auth.tokens",
            "[auth] without any [[auth.tokens]] (or [[auth.clients]]) would refuse every call; \
             add a token (`xpool token new` prints one and its hash)",
        );
    }
    let mut tokens = Vec::new();
    let mut names = HashSet::new();
    let mut hashes: HashMap<[u8; 32], String> = HashMap::new();
    for (index, entry) in raw.tokens.iter().enumerate() {
        let path = match entry.get("name").and_then(Value::as_str) {
            Some(name) if is_token_name(name) => format!("auth.tokens[{name}]"),
            _ => format!("auth.tokens[{index}]"),
        };
        let Some(token) = source::section::<RawToken>(entry, &path, problems)
            .and_then(|raw| resolve_token(raw, &path, apps, problems))
        else {
            continue;
        };
        if !names.insert(token.name.clone()) {
            problems.push(format!("{path}.name"), "another token has this name");
        }
        if let Some(other) = hashes.insert(token.sha256, token.name.clone()) {
            problems.push(
                path.clone(),
                format!("the same token as auth.tokens[{other}]; each caller needs its own"),
            );
        }
        tokens.push(token);
    }
    let mut clients = Vec::new();
    if !raw.clients.is_empty() && !mutual_tls {
        let message = "callers known by certificate need mutual TLS: set \
                       server.tls.client_ca_file";
        problems.push("auth.clients", message);
    }
    for (index, entry) in raw.clients.iter().enumerate() {
        let path = match entry.get("name").and_then(Value::as_str) {
            Some(name) if is_token_name(name) => format!("auth.clients[{name}]"),
            _ => format!("auth.clients[{index}]"),
        };
        let Some(raw) = source::section::<RawClient>(entry, &path, problems) else {
            continue;
        };
        let before = problems.len();
        let name = required_name(raw.name, &path, problems);
        let subject = match raw.subject {
            Some(subject) if !subject.trim().is_empty() => subject,
            _ => {
                let message = "is required: the certificate's common name or a DNS, URI or \
                               e-mail name it carries";
                problems.push(format!("{path}.subject"), message);
                String::new()
            }
        };
        let scopes = resolve_scopes(&raw.scopes, &path, apps, problems);
        if problems.len() > before {
            continue;
        }
        if !names.insert(name.clone()) {
            problems.push(
                format!("{path}.name"),
                "another token or client has this name",
            );
        }
        clients.push(ClientConfig {
            name,
            subject,
            scopes,
        });
    }
    Some(AuthConfig {
        tokens,
        clients,
        open_health: raw.open_health,
        open_reflection: raw.open_reflection,
    })
}

/// `[A-Za-z0-9_.-]{1,64}`.
fn is_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn resolve_token(
    raw: RawToken,
    path: &str,
    apps: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<TokenConfig> {
    let before = problems.len();
    let name = match raw.name {
        Some(name) if is_token_name(&name) => name,
        Some(_) => {
            problems.push(
                format!("{path}.name"),
                "must be 1 to 64 of A-Z a-z 0-9 _ - .",
            );
            String::new()
        }
        None => {
            problems.push(format!("{path}.name"), "is required");
            String::new()
        }
    };
    let sha256 = match (raw.token_sha256, raw.token_file) {
        (Some(hex), None) => parse_sha256(&hex).or_else(|| {
            let message = "must be 64 hex digits (the SHA-256 `xpool token new` prints)";
            problems.push(format!("{path}.token_sha256"), message);
            None
        }),
        (None, Some(file)) => read_token_file(&file, &format!("{path}.token_file"), problems),
        (Some(_), Some(_)) => {
            let message = "set token_sha256 or token_file, not both";
            problems.push(path.to_owned(), message);
            None
        }
        (None, None) => {
            let message = "needs token_sha256 (from `xpool token new`) or token_file";
            problems.push(path.to_owned(), message);
            None
        }
    };
    let scopes = resolve_scopes(&raw.scopes, path, apps, problems);
    let rate_per_second = match raw.rate_per_second {
        None => None,
        Some(rate) => {
            let rate = NonZeroU32::new(rate);
            if rate.is_none() {
                let message = "must be at least 1 (leave it out for no limit)";
                problems.push(format!("{path}.rate_per_second"), message);
            }
            rate
        }
    };
    (problems.len() == before).then_some(TokenConfig {
        name,
        sha256: sha256?,
        scopes,
        rate_per_second,
    })
}

fn required_name(name: Option<String>, path: &str, problems: &mut Problems) -> String {
    match name {
        Some(name) if is_token_name(&name) => name,
        Some(_) => {
            problems.push(
                format!("{path}.name"),
                "must be 1 to 64 of A-Z a-z 0-9 _ - .",
            );
            String::new()
        }
        None => {
            problems.push(format!("{path}.name"), "is required");
            String::new()
        }
    }
}

fn resolve_scopes(
    texts: &[String],
    path: &str,
    apps: &HashSet<&str>,
    problems: &mut Problems,
) -> Vec<Scope> {
    if texts.is_empty() {
        let message = "at least one of admin, bind:<app>, read:<app> (<app> may be *)";
        problems.push(format!("{path}.scopes"), message);
    }
    let mut scopes = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let key = format!("{path}.scopes[{i}]");
        match text.parse::<Scope>() {
            Ok(scope) => match scope.app() {
                Some(app) if !apps.contains(app) => {
                    problems.push(key, format!("{text:?} names no configured app"));
                }
                _ => scopes.push(scope),
            },
            Err(message) => problems.push(key, message),
        }
    }
    scopes
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of the token in `file` (trailing line ends trimmed). Errors name the file,
/// never its content.
fn read_token_file(file: &std::path::Path, key: &str, problems: &mut Problems) -> Option<[u8; 32]> {
    use sha2::Digest as _;
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let token = text.trim_end_matches(['\n', '\r']);
            if token.len() < 16 {
                let message = format!(
                    "the token in {} is shorter than 16 characters (use `xpool token new`)",
                    file.display()
                );
                problems.push(key, message);
                return None;
            }
            Some(sha2::Sha256::digest(token.as_bytes()).into())
        }
        Err(e) => {
            problems.push(key, format!("cannot read {}: {e}", file.display()));
            None
        }
    }
}
