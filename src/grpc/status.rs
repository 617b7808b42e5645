//! The one mapping from domain errors to gRPC statuses.

use std::collections::HashMap;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::lifecycle::PoolError;

/// Status messages travel in a header; keep them well below HTTP/2 header limits.
const MAX_MESSAGE: usize = 1024;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// `ErrorInfo.domain` of every reason xpool gives.
pub const ERROR_DOMAIN: &str = "xpool";

impl From<PoolError> for Status {
    fn from(e: PoolError) -> Status {
        let message = bounded(e.to_string());
        match e {
            PoolError::InvalidArgument { .. } => Status::invalid_argument(message),
            PoolError::NotFound(_) => Status::not_found(message),
            PoolError::AlreadyExists(_) => Status::already_exists(message),
            PoolError::Exhausted { .. } => Status::resource_exhausted(message),
            PoolError::FailedPrecondition(_) => Status::failed_precondition(message),
            PoolError::Unavailable { retry_after, .. } => unavailable(&message, retry_after, None),
            PoolError::StorageUnavailable { full } => unavailable(
                &format!("{message}; writes resume once it has recovered"),
                Some(STORAGE_RETRY),
                Some(if full {
                    "STORAGE_FULL"
                } else {
                    "STORAGE_FAILED"
                }),
            ),
            PoolError::Internal(_) | PoolError::Storage(_) => Status::internal(message),
        }
    }
}

/// When a caller should retry while the store recovers from a failed write.
const STORAGE_RETRY: Duration = Duration::from_secs(2);

/// UNAVAILABLE with the retry hint in every form clients read: `RetryInfo` (with `ErrorInfo`
/// when there is a `reason`), `grpc-retry-pushback-ms` (gRPC's own retry policy) and
/// `retry-after-ms`.
fn unavailable(message: &str, retry_after: Option<Duration>, reason: Option<&str>) -> Status {
    let retry = retry_after.unwrap_or(Duration::from_secs(1));
    let mut details = ErrorDetails::with_retry_info(Some(retry));
    if let Some(reason) = reason {
        details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    }
    let mut status = Status::with_error_details(
        Code::Unavailable,
        format!("{message}; retry after {} ms", retry.as_millis()),
        details,
    );
    if let Ok(value) = MetadataValue::try_from(retry.as_millis().to_string()) {
        status
            .metadata_mut()
            .insert("retry-after-ms", value.clone());
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", value);
    }
    status
}
