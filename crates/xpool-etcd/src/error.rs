//! The crate's one error type, and how etcd's gRPC statuses map onto it and onto the client's
//! retry decisions.

use std::time::Duration;

use tonic::{Code, Status};

/// Why an etcd call failed. A transaction whose compares are false is not an error:
/// [`TxnResponse::succeeded`](crate::TxnResponse::succeeded) is `false`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint could serve the call: connections refused, no leader (quorum lost), or etcd's
    /// own timeout. For a write the outcome is unknown: it may still commit. Retry later, with a
    /// compare that makes a second application harmless.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The call's deadline passed. For a write the outcome is unknown, as with `Unavailable`.
    #[error("etcd call timed out after {0:?}")]
    Timeout(Duration),
    /// The requested revision has been compacted away: read the current state, then watch from
    /// its revision + 1.
    #[error("etcd revision compacted (oldest available: {compact_revision})")]
    Compacted {
        /// The revision etcd has compacted up to, as a watch reports it (unary calls are not told:
        /// 0 there).
        compact_revision: i64,
    },
    /// Authentication failed (wrong user or password, auth not enabled) or the user lacks the
    /// permission. The password never appears here.
    #[error("etcd authentication failed: {0}")]
    AuthFailed(String),
    /// etcd rejected the request itself: empty key, a future revision, too many operations in a
    /// transaction (128 by default), a request over the size limit (1.5 MiB by default), …
    #[error("invalid etcd request: {0}")]
    InvalidArgument(String),
    /// The lease does not exist: it expired or was revoked.
    #[error("etcd lease not found (expired or revoked)")]
    LeaseNotFound,
    /// The client configuration is unusable (bad endpoint URL, unreadable TLS file).
    #[error("invalid etcd client configuration: {0}")]
    Config(String),
    /// Any other answer from etcd.
    #[error("etcd error ({code:?}): {message}")]
    Other {
        /// The gRPC status code.
        code: Code,
        /// etcd's message.
        message: String,
    },
}

impl Error {
    /// Whether the failure is transient (unavailable or timed out): worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }

    /// The error for an etcd status (a compaction without its revision reports 0).
    pub(crate) fn from_status(status: &Status) -> Error {
        let message = status.message().to_owned();
        if std::error::Error::source(status).is_some() {
            // Made by this process's transport (connection refused, broken pipe), not by etcd.
            return Error::Unavailable(message);
        }
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                Error::Unavailable(message)
            }
            Code::OutOfRange if message.contains("compacted") => Error::Compacted {
                compact_revision: 0,
            },
            Code::NotFound if message.contains("lease not found") => Error::LeaseNotFound,
            Code::Unauthenticated | Code::PermissionDenied => Error::AuthFailed(message),
            Code::InvalidArgument if message.contains("authentication failed") => {
                Error::AuthFailed(message)
            }
            Code::FailedPrecondition if message.contains("authentication is not enabled") => {
                Error::AuthFailed(message)
            }
            Code::InvalidArgument if message.contains("user name is empty") => {
                Error::AuthFailed(message)
            }
            Code::InvalidArgument | Code::OutOfRange => Error::InvalidArgument(message),
            code => Error::Other { code, message },
        }
    }
}

/// What the client does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// etcd did not process the request: retry it on the next endpoint, read or write.
    Safe,
    /// The request may have been processed: retry a read on the next endpoint, fail a write.
    ReadsOnly,
    /// The auth token expired or the auth store moved on: authenticate again, then retry.
    Reauthenticate,
    /// A definite answer: return it.
    Never,
}

/// How to go on after `status`. Only rejections that etcd makes before proposing the request
/// to raft count as `Safe`.
pub(crate) fn retry_policy(status: &Status) -> Retry {
    let message = status.message();
    match status.code() {
        // Connection refused, DNS failure: the request never left this process.
        Code::Unavailable if never_sent(status) => Retry::Safe,
        // `hasleader` interceptor, not a voting member, shutting down, applied index lagging.
        Code::Unavailable
            if message == "etcdserver: no leader"
                || message == "etcdserver: not capable"
                || message == "etcdserver: rpc not supported for learner"
                || message.contains("waiting for the applied index") =>
        {
            Retry::Safe
        }
        Code::ResourceExhausted if message == "etcdserver: too many requests" => Retry::Safe,
        Code::Unauthenticated if message.contains("invalid auth token") => Retry::Reauthenticate,
        Code::InvalidArgument if message.contains("revision of auth store is old") => {
            Retry::Reauthenticate
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Retry::ReadsOnly
        }
        _ => Retry::Never,
    }
}

/// Whether the status comes from failing to connect (tonic's `ConnectError` in its sources).
fn never_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_statuses_map_to_the_documented_variants() {
        let compacted =
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        assert!(matches!(
            Error::from_status(&compacted),
            Error::Compacted { .. }
        ));
        let auth = Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password",
        );
        assert!(matches!(Error::from_status(&auth), Error::AuthFailed(_)));
        let ops = Status::invalid_argument("etcdserver: too many operations in txn request");
        assert!(matches!(
            Error::from_status(&ops),
            Error::InvalidArgument(_)
        ));
        let lease = Status::not_found("etcdserver: requested lease not found");
        assert!(matches!(Error::from_status(&lease), Error::LeaseNotFound));
        assert!(Error::from_status(&Status::unavailable("etcdserver: no leader")).is_unavailable());
    }

    #[test]
    fn only_rejections_before_raft_are_safe_to_retry_for_writes() {
        assert_eq!(
            retry_policy(&Status::unavailable("etcdserver: no leader")),
            Retry::Safe
        );
        let timed_out = Status::unavailable("etcdserver: request timed out");
        assert_eq!(retry_policy(&timed_out), Retry::ReadsOnly);
        let token = Status::unauthenticated("etcdserver: invalid auth token");
        assert_eq!(retry_policy(&token), Retry::Reauthenticate);
        let denied = Status::permission_denied("etcdserver: permission denied");
        assert_eq!(retry_policy(&denied), Retry::Never);
    }
}
