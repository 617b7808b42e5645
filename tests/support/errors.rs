//! Checks of the `google.rpc` details every error of the API carries: `ErrorInfo` (reason,
//! domain, metadata), `BadRequest` naming the field, and the retry hint in `RetryInfo` and the
//! headers.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// A refusal as a client reads it: the code, the `ErrorInfo` reason and metadata, the delay
/// of its `RetryInfo`.
#[derive(Debug)]
pub struct Refusal {
    pub code: Code,
    pub reason: String,
    pub meta: HashMap<String, String>,
    pub retry: Option<Duration>,
}

impl Refusal {
    /// Metadata `key`, which must be there.
    #[track_caller]
    pub fn meta(&self, key: &str) -> &str {
        self.meta
            .get(key)
            .unwrap_or_else(|| panic!("no metadata {key:?}: {self:?}"))
    }
}

/// Reads the details of `s`, checking what holds for every error: an `ErrorInfo` of domain
/// `xpool`, and retry headers that agree with `RetryInfo` (`grpc-retry-pushback-ms` is `-1`,
/// "do not retry", without one).
#[track_caller]
pub fn refusal(s: &Status) -> Refusal {
    let details = s.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo: {s:?}"));
    assert_eq!(info.domain, "xpool", "{s:?}");
    let retry = details.retry_info().map(|r| {
        r.retry_delay
            .unwrap_or_else(|| panic!("RetryInfo without a delay: {s:?}"))
    });
    let header = |name: &str| {
        s.metadata()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let pushback = header("grpc-retry-pushback-ms");
    match retry {
        Some(delay) => {
            let ms = delay.as_millis().to_string();
            assert_eq!(pushback.as_ref(), Some(&ms), "{s:?}");
            assert_eq!(header("retry-after-ms").as_ref(), Some(&ms), "{s:?}");
        }
        None => {
            assert_eq!(pushback.as_deref(), Some("-1"), "{s:?}");
            assert_eq!(header("retry-after-ms"), None, "{s:?}");
        }
    }
    assert_eq!(
        details.bad_request().is_some(),
        s.code() == Code::InvalidArgument,
        "a BadRequest exactly on INVALID_ARGUMENT: {s:?}"
    );
    Refusal {
        code: s.code(),
        reason: info.reason.clone(),
        meta: info.metadata.clone(),
        retry,
    }
}

/// `s` has `code` and reason `reason`, and metadata with at least `meta`; returns it all.
#[track_caller]
pub fn assert_reason(s: &Status, code: Code, reason: &str, meta: &[(&str, &str)]) -> Refusal {
    let r = refusal(s);
    assert_eq!((r.code, r.reason.as_str()), (code, reason), "{s:?}");
    for (key, want) in meta {
        assert_eq!(r.meta(key), *want, "metadata {key}: {s:?}");
    }
    r
}

/// INVALID_ARGUMENT whose `BadRequest` has one violation, of `field`, and whose message starts
/// with it.
#[track_caller]
pub fn assert_bad_field(s: &Status, field: &str) {
    let r = assert_reason(
        s,
        Code::InvalidArgument,
        "INVALID_FIELD",
        &[("field", field)],
    );
    assert_eq!(r.retry, None, "{s:?}");
    let details = s.get_error_details();
    let violations = &details.bad_request().unwrap().field_violations;
    assert_eq!(violations.len(), 1, "{s:?}");
    assert_eq!(violations[0].field, field, "{s:?}");
    assert!(!violations[0].description.is_empty(), "{s:?}");
    assert!(
        s.message().starts_with(&format!("{field}: ")),
        "the message does not start with {field}: {s:?}"
    );
}

/// UNAVAILABLE must tell the caller when to come back, in `RetryInfo` and the headers.
#[track_caller]
pub fn assert_retry_hint(s: &Status) {
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    let r = refusal(s);
    assert!(
        r.retry.is_some(),
        "UNAVAILABLE without a retry hint ({}): {s:?}",
        r.reason
    );
}
