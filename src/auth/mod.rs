//! Who calls, and what they may do: bearer tokens from `[[auth.tokens]]`, each with scopes and
//! an optional request rate.
//!
//! - [`Authenticator`] turns a request's `authorization: Bearer <token>` into a [`Caller`]. The
//!   configuration holds only each token's SHA-256, so the daemon never stores a token in clear;
//!   the hash of the presented token is compared with every known one in constant time.
//! - [`layer::Authenticate`], a tower layer in front of every gRPC route, refuses a call
//!   without a known token (`UNAUTHENTICATED`) or over its token's rate
//!   (`RESOURCE_EXHAUSTED` with a retry hint) before it is decoded, and hands the [`Caller`] to
//!   the handlers in the request's extensions.
//! - The handlers, which know the app a call is about, ask [`Caller::require`] for the
//!   [`Access`] it needs (`PERMISSION_DENIED` naming the scope).
//!
//! Without `[auth]` every caller is [`Caller::unrestricted`]: the configuration allows that
//! only on a loopback listener, or with `server.insecure = true`.

pub mod layer;
pub(crate) mod refusals;
pub mod scope;

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use scope::{Access, Apps, Scope};

use crate::config::AuthConfig;
use crate::lifecycle::{PoolError, Reason};

/// Metadata a replica adds to a call it forwards for a caller known by its client certificate
/// (`[[auth.clients]]`, no token): the caller's `name`. The leader sees the forwarding
/// replica's certificate, not the caller's, so it takes the caller from here — only from a
/// peer whose own certificate names a replica of the cluster (`layer::Authenticate::new`).
pub const FORWARDED_CLIENT: http::HeaderName =
    http::HeaderName::from_static("xpool-forwarded-client");

/// An authenticated caller.
#[derive(Debug)]
pub struct Caller {
    /// The token's `name` (what logs and refusals call it).
    name: String,
    scopes: Vec<Scope>,
    /// No `[auth]`: everything is allowed.
    unrestricted: bool,
    /// Known by its client certificate (`[[auth.clients]]`) rather than a token.
    by_certificate: bool,
}

impl Caller {
    /// The caller when the daemon has no `[auth]`.
    pub fn unrestricted() -> Caller {
        Caller {
            name: "anonymous".to_owned(),
            scopes: Vec::new(),
            unrestricted: true,
            by_certificate: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the caller was known by its client certificate (`[[auth.clients]]`).
    pub fn by_certificate(&self) -> bool {
        self.by_certificate
    }

    /// Whether the caller may make a call needing `access`.
    pub fn may(&self, access: &Access<'_>) -> bool {
        self.unrestricted || scope::granted(&self.scopes, access)
    }

    /// `Ok` if the caller may; else `PERMISSION_DENIED` naming the scope it lacks.
    pub fn require(&self, access: Access<'_>) -> Result<(), PoolError> {
        if self.may(&access) {
            return Ok(());
        }
        let needed = access.scope();
        let message = format!(
            "the token {:?} lacks the scope {needed} (or admin) this call needs",
            self.name
        );
        Err(PoolError::refused(Reason::ScopeRequired, message)
            .with("scope", needed)
            .with("caller", &self.name))
    }
}

/// Why a call was refused before reaching its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization` metadata.
    NoToken,
    /// `authorization` is there but not `Bearer <token>`.
    Malformed,
    /// A bearer token no `[[auth.tokens]]` entry has.
    UnknownToken,
    /// [`FORWARDED_CLIENT`] from a peer whose certificate names no replica of the cluster.
    UntrustedForwarder,
    /// [`FORWARDED_CLIENT`] from a replica, naming no `[[auth.clients]]` entry.
    UnknownClient(String),
    /// The token's `rate_per_second` is used up; the call may succeed after the delay.
    RateLimited {
        caller: String,
        retry_after: Duration,
    },
}

impl Refusal {
    /// The `reason` label of the refusal counter and log line.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NoToken => "no_token",
            Refusal::Malformed => "malformed",
            Refusal::UnknownToken => "unknown_token",
            Refusal::UntrustedForwarder => "untrusted_forwarder",
            Refusal::UnknownClient(_) => "unknown_client",
            Refusal::RateLimited { .. } => "rate_limited",
        }
    }
}

impl From<Refusal> for PoolError {
    fn from(refusal: Refusal) -> PoolError {
        let unauthenticated = |message: &str| PoolError::refused(Reason::Unauthenticated, message);
        match refusal {
            Refusal::NoToken => unauthenticated(
                "no token: send the metadata `authorization: Bearer <token>` (see [[auth.tokens]])",
            ),
            Refusal::Malformed => {
                unauthenticated("the authorization metadata is not `Bearer <token>`")
            }
            Refusal::UnknownToken => unauthenticated("the bearer token is not known"),
            Refusal::UntrustedForwarder => unauthenticated(
                "xpool-forwarded-client is taken only from another replica of the cluster, \
                 known by its client certificate",
            ),
            Refusal::UnknownClient(name) => unauthenticated(&format!(
                "the forwarded caller {name:?} is not in [[auth.clients]] here"
            )),
            Refusal::RateLimited {
                caller,
                retry_after,
            } => PoolError::refused(
                Reason::CallerRateLimited,
                format!("the token {caller:?} is over its rate_per_second"),
            )
            .with("caller", caller)
            .retry_in(Some(retry_after)),
        }
    }
}

/// A configured token: its hash, its caller and its rate.
#[derive(Debug)]
struct Known {
    sha256: [u8; 32],
    caller: Arc<Caller>,
    limiter: Option<DefaultDirectRateLimiter>,
}

/// Checks bearer tokens against `[[auth.tokens]]`, and client certificates' names against
/// `[[auth.clients]]`.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Vec<Known>,
    /// Each `[[auth.clients]]` subject and its caller.
    clients: Vec<(String, Arc<Caller>)>,
    open_health: bool,
    open_reflection: bool,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Authenticator {
        let tokens = config
            .tokens
            .iter()
            .map(|token| Known {
                sha256: token.sha256,
                caller: Arc::new(Caller {
                    name: token.name.clone(),
                    scopes: token.scopes.clone(),
                    unrestricted: false,
                    by_certificate: false,
                }),
                limiter: token
                    .rate_per_second
                    .map(|rate| RateLimiter::direct(Quota::per_second(rate))),
            })
            .collect();
        let clients = config
            .clients
            .iter()
            .map(|client| {
                let caller = Caller {
                    name: client.name.clone(),
                    scopes: client.scopes.clone(),
                    unrestricted: false,
                    by_certificate: true,
                };
                (client.subject.clone(), Arc::new(caller))
            })
            .collect();
        Authenticator {
            tokens,
            clients,
            open_health: config.open_health,
            open_reflection: config.open_reflection,
        }
    }

    /// The `[[auth.clients]]` caller named `name` (a forwarded call's, see
    /// [`FORWARDED_CLIENT`]).
    pub fn client_named(&self, name: &str) -> Result<Arc<Caller>, Refusal> {
        self.clients
            .iter()
            .find(|(_, caller)| caller.name == name)
            .map(|(_, caller)| Arc::clone(caller))
            .ok_or_else(|| Refusal::UnknownClient(name.to_owned()))
    }

    /// Whether a call to `path` (`/package.Service/Method`) needs no token.
    pub fn is_open(&self, path: &str) -> bool {
        (self.open_health && path.starts_with("/grpc.health.v1.Health/"))
            || (self.open_reflection
                && (path.starts_with("/grpc.reflection.v1.ServerReflection/")
                    || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")))
    }

    /// The caller whose token `authorization` carries, within its rate; without a token, the
    /// caller whose `subject` is one of the names on the client's verified certificate
    /// (`client_names`, with mutual TLS).
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        client_names: Option<&[String]>,
    ) -> Result<Arc<Caller>, Refusal> {
        let Some(value) = authorization else {
            let names = client_names.unwrap_or_default();
            return self
                .clients
                .iter()
                .find(|(subject, _)| names.contains(subject))
                .map(|(_, caller)| Arc::clone(caller))
                .ok_or(Refusal::NoToken);
        };
        let token = bearer(value).ok_or(Refusal::Malformed)?;
        let presented: [u8; 32] = Sha256::digest(token).into();
        // Every entry is compared, in constant time, so the time taken says nothing about
        // which (if any) matched.
        let mut found = None;
        for known in &self.tokens {
            if bool::from(known.sha256.ct_eq(&presented)) {
                found = Some(known);
            }
        }
        let known = found.ok_or(Refusal::UnknownToken)?;
        if let Some(limiter) = &known.limiter
            && let Err(not_until) = limiter.check()
        {
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            return Err(Refusal::RateLimited {
                caller: known.caller.name.clone(),
                retry_after: retry_after.max(Duration::from_millis(1)),
            });
        }
        Ok(Arc::clone(&known.caller))
    }
}

/// The token of `Bearer <token>` (the scheme in any case, as RFC 7235 has it).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// A fresh token, and the `token_sha256` the configuration holds for it.
pub fn new_token() -> (String, String) {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "xpool_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = sha256_hex(token.as_bytes());
    (token, hash)
}

/// Lower-case hex SHA-256 of `token`, as `token_sha256` takes it.
pub fn sha256_hex(token: &[u8]) -> String {
    Sha256::digest(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
