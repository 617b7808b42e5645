//! The one mapping from domain errors to gRPC statuses: the code of each [`Reason`], and the
//! standard `google.rpc` details every status carries — `ErrorInfo` (the reason, domain
//! [`ERROR_DOMAIN`], metadata), `BadRequest` for INVALID_ARGUMENT, `RetryInfo` when waiting
//! helps — so that clients act without parsing messages.

use std::collections::HashMap;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::lifecycle::{PoolError, Reason};

/// Status messages travel in a header; keep them well below HTTP/2 header limits.
const MAX_MESSAGE: usize = 1024;

/// Longest `ErrorInfo` metadata value: values may come from the request.
const MAX_META_VALUE: usize = 128;

fn bounded(message: String) -> String {
    cut(message, MAX_MESSAGE)
}

/// `s` cut to at most `max` bytes (at a character boundary), marked with `…` when cut.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

/// `ErrorInfo.domain` of every reason xpool gives.
pub const ERROR_DOMAIN: &str = "xpool";

/// The gRPC code of each reason, as README's "Errors" table gives it.
pub fn code(reason: Reason) -> Code {
    match reason {
        Reason::InvalidField => Code::InvalidArgument,
        Reason::Unauthenticated => Code::Unauthenticated,
        Reason::ScopeRequired => Code::PermissionDenied,
        Reason::UnknownApp
        | Reason::BindingNotFound
        | Reason::NumberNotInPool
        | Reason::RunNotFound => Code::NotFound,
        Reason::NumberExists => Code::AlreadyExists,
        Reason::UnknownArea
        | Reason::PartyAtLimit
        | Reason::NumberUnavailable
        | Reason::NumberInUse
        | Reason::RequestIdConflict
        | Reason::BindingNotActive
        | Reason::ModeUnsupported
        | Reason::PlatformRejected
        | Reason::BackupRefused => Code::FailedPrecondition,
        Reason::PoolExhausted | Reason::MessageTooLarge | Reason::CallerRateLimited => {
            Code::ResourceExhausted
        }
        Reason::WatchExpired => Code::OutOfRange,
        Reason::PlatformRateLimited
        | Reason::CircuitOpen
        | Reason::PlatformUnavailable
        | Reason::OutcomeUnknown
        | Reason::PoolOutOfSync
        | Reason::ReconcileQueueFull
        | Reason::ShuttingDown
        | Reason::Overloaded
        | Reason::LeaderUnavailable
        | Reason::StorageFull
        | Reason::StorageFailed => Code::Unavailable,
        Reason::PlatformUnexpected | Reason::Internal => Code::Internal,
    }
}

impl From<PoolError> for Status {
    fn from(e: PoolError) -> Status {
        let reason = e.reason();
        let retry = e.retry_after();
        let meta: HashMap<String, String> = e
            .meta()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), cut(v, MAX_META_VALUE)))
            .collect();
        let mut details = ErrorDetails::new();
        details.set_error_info(reason.as_str(), ERROR_DOMAIN, meta);
        if let PoolError::InvalidArgument { field, message } = &e {
            details.add_bad_request_violation(
                cut(field.clone(), MAX_META_VALUE),
                bounded(message.clone()),
            );
        }
        let mut message = e.to_string();
        if let Some(retry) = retry {
            details.set_retry_info(Some(retry));
            message = format!("{message}; retry after {} ms", retry.as_millis());
        }
        let mut status = Status::with_error_details(code(reason), bounded(message), details);
        set_retry_headers(&mut status, retry);
        status
    }
}

/// The reason a status carries (`POOL_EXHAUSTED`…), as a metric label: one of
/// [`Reason::ALL`], or `OTHER` for a status xpool did not make (e.g. a message that did not
/// decode).
pub fn reason_of(status: &Status) -> &'static str {
    let details = status.get_error_details();
    let Some(info) = details.error_info() else {
        return "OTHER";
    };
    Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .find(|name| *name == info.reason)
        .unwrap_or("OTHER")
}

/// The retry hint in the headers clients read: `grpc-retry-pushback-ms` (gRPC's own retry
/// policy: a delay, or `-1` for "do not retry") and, when waiting helps, `retry-after-ms`.
fn set_retry_headers(status: &mut Status, retry: Option<Duration>) {
    let pushback = retry.map_or("-1".to_owned(), |d| d.as_millis().to_string());
    let Ok(value) = MetadataValue::try_from(pushback) else {
        return;
    };
    if retry.is_some() {
        status
            .metadata_mut()
            .insert("retry-after-ms", value.clone());
    }
    status
        .metadata_mut()
        .insert("grpc-retry-pushback-ms", value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table README documents: every reason, its code and whether waiting helps.
    const TABLE: &[(Reason, Code, bool)] = &[
        (Reason::InvalidField, Code::InvalidArgument, false),
        (Reason::MessageTooLarge, Code::ResourceExhausted, false),
        (Reason::Unauthenticated, Code::Unauthenticated, false),
        (Reason::ScopeRequired, Code::PermissionDenied, false),
        (Reason::CallerRateLimited, Code::ResourceExhausted, true),
        (Reason::UnknownApp, Code::NotFound, false),
        (Reason::BindingNotFound, Code::NotFound, false),
        (Reason::NumberNotInPool, Code::NotFound, false),
        (Reason::RunNotFound, Code::NotFound, false),
        (Reason::WatchExpired, Code::OutOfRange, false),
        (Reason::NumberExists, Code::AlreadyExists, false),
        (Reason::UnknownArea, Code::FailedPrecondition, false),
        (Reason::PartyAtLimit, Code::FailedPrecondition, false),
        (Reason::NumberUnavailable, Code::FailedPrecondition, false),
        (Reason::NumberInUse, Code::FailedPrecondition, false),
        (Reason::RequestIdConflict, Code::FailedPrecondition, false),
        (Reason::BindingNotActive, Code::FailedPrecondition, false),
        (Reason::ModeUnsupported, Code::FailedPrecondition, false),
        (Reason::PlatformRejected, Code::FailedPrecondition, false),
        (Reason::BackupRefused, Code::FailedPrecondition, false),
        (Reason::PoolExhausted, Code::ResourceExhausted, true),
        (Reason::PlatformRateLimited, Code::Unavailable, true),
        (Reason::CircuitOpen, Code::Unavailable, true),
        (Reason::PlatformUnavailable, Code::Unavailable, true),
        (Reason::OutcomeUnknown, Code::Unavailable, true),
        (Reason::PoolOutOfSync, Code::Unavailable, true),
        (Reason::ReconcileQueueFull, Code::Unavailable, true),
        (Reason::ShuttingDown, Code::Unavailable, true),
        (Reason::Overloaded, Code::Unavailable, true),
        (Reason::LeaderUnavailable, Code::Unavailable, true),
        (Reason::StorageFull, Code::Unavailable, true),
        (Reason::StorageFailed, Code::Unavailable, true),
        (Reason::PlatformUnexpected, Code::Internal, false),
        (Reason::Internal, Code::Internal, false),
    ];

    /// An error of each reason, as the pool makes them.
    fn sample(reason: Reason) -> PoolError {
        match reason {
            Reason::InvalidField => PoolError::invalid("numbers[2]", "not a number"),
            Reason::StorageFull => PoolError::StorageUnavailable { full: true },
            Reason::StorageFailed => PoolError::StorageUnavailable { full: false },
            r => PoolError::refused(r, "refused").with("app", "rides"),
        }
    }

    fn error_info(s: &Status) -> (String, String, HashMap<String, String>) {
        let info = s
            .get_error_details()
            .error_info()
            .cloned()
            .expect("ErrorInfo");
        (info.reason, info.domain, info.metadata)
    }

    fn header<'a>(s: &'a Status, name: &str) -> Option<&'a str> {
        s.metadata().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn every_reason_has_its_code_and_retry_hint() {
        assert_eq!(TABLE.len(), Reason::ALL.len());
        for (&(reason, want, retryable), listed) in TABLE.iter().zip(Reason::ALL) {
            assert_eq!(reason, listed, "TABLE follows Reason::ALL");
            let s = Status::from(sample(reason));
            assert_eq!(s.code(), want, "{reason}");
            let (got, domain, _) = error_info(&s);
            assert_eq!((got.as_str(), domain.as_str()), (reason.as_str(), "xpool"));
            let details = s.get_error_details();
            assert_eq!(details.retry_info().is_some(), retryable, "{reason}");
            let pushback = header(&s, "grpc-retry-pushback-ms").unwrap();
            if retryable {
                let ms = header(&s, "retry-after-ms").unwrap();
                assert_eq!(pushback, ms, "{reason}");
                assert!(
                    s.message().ends_with(&format!("retry after {ms} ms")),
                    "{s:?}"
                );
            } else {
                assert_eq!(pushback, "-1", "{reason}: do not retry");
                assert_eq!(header(&s, "retry-after-ms"), None, "{reason}");
            }
            assert_eq!(
                details.bad_request().is_some(),
                want == Code::InvalidArgument,
                "{reason}"
            );
        }
    }

    #[test]
    fn reasons_have_distinct_upper_snake_case_names() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        for name in &names {
            assert!(
                name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn readme_documents_every_reason_with_its_code() {
        let readme = include_str!("../../README.md");
        for &(reason, code, _) in TABLE {
            let row = format!("| `{}` | `{}` |", reason.as_str(), code_name(code));
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }

    fn code_name(code: Code) -> &'static str {
        match code {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
            other => panic!("no reason has {other:?}"),
        }
    }

    #[test]
    fn an_invalid_argument_names_its_field_in_a_bad_request() {
        let s = Status::from(PoolError::invalid("numbers[2]", "\"x\" is not a number"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "numbers[2]: \"x\" is not a number");
        let details = s.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "numbers[2]");
        assert_eq!(violations[0].description, "\"x\" is not a number");
        let (_, _, meta) = error_info(&s);
        assert_eq!(meta["field"], "numbers[2]");
    }

    #[test]
    fn metadata_and_an_explicit_delay_are_kept() {
        let e = PoolError::refused(Reason::PlatformRateLimited, "slow down")
            .with("app", "rides")
            .with("platform_code", "1010010")
            .retry_in(Some(Duration::from_millis(250)));
        let s = Status::from(e);
        let (_, _, meta) = error_info(&s);
        let want: HashMap<String, String> = [("app", "rides"), ("platform_code", "1010010")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(meta, want);
        let retry = s.get_error_details().retry_info().cloned().unwrap();
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
        assert_eq!(header(&s, "grpc-retry-pushback-ms"), Some("250"));
        assert_eq!(header(&s, "retry-after-ms"), Some("250"));
        // A delay on a reason where waiting does not help is no retry hint.
        let s = Status::from(
            PoolError::refused(Reason::PlatformRejected, "no").retry_in(Some(Duration::ZERO)),
        );
        assert!(s.get_error_details().retry_info().is_none());
        assert_eq!(header(&s, "grpc-retry-pushback-ms"), Some("-1"));
    }

    #[test]
    fn huge_values_are_cut_to_fit_a_header() {
        let huge = "ü".repeat(40_000);
        let s = Status::from(PoolError::unknown_app(&huge));
        assert!(
            s.message().len() <= MAX_MESSAGE + '…'.len_utf8(),
            "{}",
            s.message().len()
        );
        let (_, _, meta) = error_info(&s);
        assert!(meta["app"].len() <= MAX_META_VALUE + '…'.len_utf8());
        assert!(meta["app"].ends_with('…'));
        let s = Status::from(PoolError::invalid(huge.clone(), huge));
        let details = s.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert!(violation.field.len() <= MAX_META_VALUE + '…'.len_utf8());
        assert!(violation.description.len() <= MAX_MESSAGE + '…'.len_utf8());
    }

    #[test]
    fn storage_errors_say_when_writes_resume() {
        let s = Status::from(PoolError::StorageUnavailable { full: true });
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("disk is full"), "{s:?}");
        assert_eq!(header(&s, "retry-after-ms"), Some("2000"));
        let (reason, _, meta) = error_info(&s);
        assert_eq!((reason.as_str(), meta), ("STORAGE_FULL", HashMap::new()));
    }
}
