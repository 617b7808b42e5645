//! Errors of the pool: what went wrong for the caller, in domain terms. `grpc::status` maps
//! them to gRPC codes, once. Messages are for callers: internal details (store errors, the
//! platform's own text, app keys) are logged where they happen and kept as the source only.

use std::time::Duration;

use super::options;
use crate::platform::options::CallField;
use crate::store::StoreError;
use crate::upstream::{ErrorClass, UpstreamError};

/// What went wrong for the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("no free number in {}; {free_elsewhere} free in other areas{}", areas(.tried), if *.free_elsewhere > 0 { " (set any_area to use them)" } else { "" })]
    Exhausted {
        tried: Vec<String>,
        free_elsewhere: u64,
    },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// The store refuses writes until it recovers from a failed write (`full`: the disk is
    /// full); the daemon reports that once, as a change of its health.
    #[error("{}", if *.full { "the store's disk is full" } else { "the store failed a write" })]
    StorageUnavailable { full: bool },
    /// The store failed; the details are in the source (and the log), not in the message.
    #[error("storage failure")]
    Storage(#[source] StoreError),
}

fn areas(tried: &[String]) -> String {
    if tried.is_empty() {
        "any area".to_owned()
    } else {
        format!("areas {}", tried.join(", "))
    }
}

/// A caller's value for an error message: quoted, and cut to 64 characters so that a huge
/// input cannot make an error too large for a gRPC status header.
pub fn quoted(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

impl PoolError {
    /// INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        PoolError::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    /// Whether the store refuses writes for now. The daemon reports that once, as a change of
    /// its health; background work that meets it retries without logging each attempt.
    pub fn is_store_unavailable(&self) -> bool {
        matches!(self, PoolError::StorageUnavailable { .. })
    }

    /// UNAVAILABLE with a retry hint.
    pub fn unavailable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        PoolError::Unavailable {
            message: message.into(),
            retry_after,
        }
    }
}

impl From<StoreError> for PoolError {
    /// Logs the store's error once, here, and keeps it as the source.
    fn from(e: StoreError) -> Self {
        if let StoreError::Unavailable { full, .. } = e {
            return PoolError::StorageUnavailable { full };
        }
        tracing::error!(error = %e, "store error");
        PoolError::Storage(e)
    }
}

impl PoolError {
    /// What a definite platform refusal means for the caller: the kind, and a [`reason`] with
    /// the platform's result code. The caller of this logs the details.
    pub fn from_upstream(e: &UpstreamError) -> Self {
        let message = reason(e);
        match e.class() {
            ErrorClass::RetryLater | ErrorClass::Auth => {
                PoolError::unavailable(message, e.retry_after().or(Some(Duration::from_secs(1))))
            }
            ErrorClass::InvalidRequest => match e.desc().and_then(CallField::named_in) {
                // 1010002 names the parameter: an unknown tone file, mostly (§0.5).
                Some(field) if field.is_tone() => PoolError::invalid(
                    options::path(field),
                    format!(
                        "{message}; a tone must be a file uploaded and approved in the \
                         platform's console"
                    ),
                ),
                Some(field) => PoolError::invalid(options::path(field), message),
                None => PoolError::invalid("request", message),
            },
            ErrorClass::NotFound => PoolError::NotFound(message),
            ErrorClass::Exhausted => PoolError::Exhausted {
                tried: Vec::new(),
                free_elsewhere: 0,
            },
            ErrorClass::Taken
            | ErrorClass::PartyConflict
            | ErrorClass::PartyLimit
            | ErrorClass::NumberUnusable
            | ErrorClass::Config
            | ErrorClass::AccountFrozen => PoolError::FailedPrecondition(message),
            ErrorClass::Unknown => PoolError::Internal(message),
        }
    }
}

/// What a failed call means, in words a caller may see: no operation, app key or platform
/// text, only the platform's result code when it answered one.
pub fn reason(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Platform { class, code, .. } => {
            format!("the platform refused the call: {class} (result code {code})")
        }
        UpstreamError::Http { class, status, .. } => {
            format!("the platform refused the call: {class} (HTTP {status})")
        }
        UpstreamError::CircuitOpen { .. } => {
            "the platform rejected the app's credentials; its calls are paused".to_owned()
        }
        UpstreamError::RateLimited { .. } => "the app's platform rate limit is reached".to_owned(),
        UpstreamError::Timeout { .. } | UpstreamError::Transport { .. } => {
            "the platform did not answer".to_owned()
        }
        UpstreamError::Decode { .. } => "the platform's answer could not be read".to_owned(),
    }
}
