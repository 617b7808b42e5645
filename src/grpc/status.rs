//! The one mapping from domain errors to gRPC statuses.

use tonic::{Code, Status};

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

impl From<PoolError> for Status {
    fn from(e: PoolError) -> Status {
        let message = bounded(e.to_string());
        match e {
            PoolError::InvalidArgument { .. } => Status::invalid_argument(message),
            PoolError::NotFound(_) => Status::not_found(message),
            PoolError::AlreadyExists(_) => Status::already_exists(message),
            PoolError::Exhausted { .. } => Status::resource_exhausted(message),
            PoolError::FailedPrecondition(_) => Status::failed_precondition(message),
            PoolError::Unavailable { retry_after, .. } => {
                let retry = retry_after.unwrap_or(std::time::Duration::from_secs(1));
                let mut status = Status::new(
                    Code::Unavailable,
                    format!("{message}; retry after {} ms", retry.as_millis()),
                );
                if let Ok(value) = retry.as_millis().to_string().parse() {
                    status.metadata_mut().insert("retry-after-ms", value);
                }
                status
            }
            PoolError::Internal(_) | PoolError::Storage(_) => Status::internal(message),
        }
    }
}
