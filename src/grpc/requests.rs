//! Shorthands for building requests in Rust clients (the CLI, benchmarks, tests).

use super::pb;

impl pb::GetBindingRequest {
    /// Looks binding `id` up.
    pub fn by_id(id: impl Into<String>) -> Self {
        pb::GetBindingRequest {
            binding: Some(pb::get_binding_request::Binding::BindingId(id.into())),
            app: String::new(),
        }
    }

    /// Looks up the binding that `request_id` of `app` created.
    pub fn by_request(app: impl Into<String>, request_id: impl Into<String>) -> Self {
        pb::GetBindingRequest {
            binding: Some(pb::get_binding_request::Binding::RequestId(
                request_id.into(),
            )),
            app: app.into(),
        }
    }
}

impl pb::UnbindRequest {
    /// Releases binding `id`.
    pub fn by_id(id: impl Into<String>) -> Self {
        pb::UnbindRequest {
            binding: Some(pb::unbind_request::Binding::BindingId(id.into())),
            app: String::new(),
        }
    }

    /// Releases the binding that `request_id` of `app` created.
    pub fn by_request(app: impl Into<String>, request_id: impl Into<String>) -> Self {
        pb::UnbindRequest {
            binding: Some(pb::unbind_request::Binding::RequestId(request_id.into())),
            app: app.into(),
        }
    }
}

/// A lifetime of `seconds` for a request's `ttl`; 0 is none (no expiry).
pub fn ttl(seconds: u64) -> Option<prost_types::Duration> {
    (seconds > 0).then(|| prost_types::Duration {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    })
}

/// Milliseconds since the epoch of a message's timestamp.
pub fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}
