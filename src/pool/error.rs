//! Errors of the pool: what went wrong for the caller, in domain terms. `grpc::status` maps
//! them to gRPC codes, once.

use std::time::Duration;

use crate::store::StoreError;

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
    FailedPrecondition(String),
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("internal error: {0}")]
    Internal(String),
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
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        PoolError::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        PoolError::Unavailable {
            message: message.into(),
            retry_after,
        }
    }
}

impl From<StoreError> for PoolError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        PoolError::Internal("storage failure".to_owned())
    }
}
