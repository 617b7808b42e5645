//! Errors of the platform client. None of them carries a secret, a header or a full URL.

use std::time::Duration;

use super::result::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The platform answered with a result code other than `"0"`.
    #[error("{op}: platform answered {code} \"{desc}\" (HTTP {status}, {class})")]
    Platform {
        op: &'static str,
        status: u16,
        code: String,
        desc: String,
        class: ErrorClass,
        /// For [`ErrorClass::RetryLater`]: how long this app's calls are held back.
        retry_after: Option<Duration>,
    },
    /// An HTTP answer without a platform result body (gateway error page, empty body).
    #[error("{op}: HTTP {status} without a platform result ({class})")]
    Http {
        op: &'static str,
        status: u16,
        class: ErrorClass,
    },
    /// The app's circuit is open after an authentication failure: the call was not sent.
    #[error(
        "{op}: not sent: app {app_key}'s circuit is open after an authentication failure \
         (check its app_secret, auth scheme and clock); next try in {}s",
        retry_after.as_secs()
    )]
    CircuitOpen {
        op: &'static str,
        app_key: String,
        retry_after: Duration,
    },
    /// The app's rate limiter (or a flow-control pause) would hold the call past its deadline.
    #[error("{op}: not sent: app {app_key} is rate limited; next slot in {}ms", retry_after.as_millis())]
    RateLimited {
        op: &'static str,
        app_key: String,
        retry_after: Duration,
    },
    /// The platform did not answer in time. A bind may have been committed all the same.
    #[error("{op}: no answer within {}ms", timeout.as_millis())]
    Timeout { op: &'static str, timeout: Duration },
    /// Connecting or talking to the platform failed.
    #[error("{op}: transport error: {source}")]
    Transport {
        op: &'static str,
        #[source]
        source: reqwest::Error,
        /// Whether the request may have reached the platform.
        maybe_sent: bool,
    },
    /// A success answer whose body did not have the expected shape.
    #[error("{op}: undecodable answer: {detail}")]
    Decode { op: &'static str, detail: String },
}

impl UpstreamError {
    /// What the caller should do.
    pub fn class(&self) -> ErrorClass {
        match self {
            UpstreamError::Platform { class, .. } | UpstreamError::Http { class, .. } => *class,
            UpstreamError::CircuitOpen { .. } => ErrorClass::Auth,
            UpstreamError::RateLimited { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::Transport { .. } => ErrorClass::RetryLater,
            UpstreamError::Decode { .. } => ErrorClass::Unknown,
        }
    }

    /// The `result` label of the call-count metric: what went wrong, in a few words.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamError::CircuitOpen { .. } => "circuit_open",
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Transport { .. } => "transport",
            UpstreamError::Decode { .. } => "undecodable",
            UpstreamError::Platform { class, .. } | UpstreamError::Http { class, .. } => {
                match class {
                    ErrorClass::RetryLater => "retry_later",
                    ErrorClass::Taken => "taken",
                    ErrorClass::PartyConflict => "party_conflict",
                    ErrorClass::PartyLimit => "party_limit",
                    ErrorClass::NotFound => "not_found",
                    ErrorClass::Exhausted => "exhausted",
                    ErrorClass::NumberUnusable => "number_unusable",
                    ErrorClass::Auth => "auth",
                    ErrorClass::Config => "config",
                    ErrorClass::InvalidRequest => "invalid_request",
                    ErrorClass::AccountFrozen => "account_frozen",
                    ErrorClass::Unknown => "unknown",
                }
            }
        }
    }

    /// The platform's result code, when it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            UpstreamError::Platform { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The platform's result description, when it answered one (for classifying only: it is
    /// the platform's text, not for callers).
    pub fn desc(&self) -> Option<&str> {
        match self {
            UpstreamError::Platform { desc, .. } => Some(desc),
            _ => None,
        }
    }

    /// How long to wait before trying again, when waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Platform { retry_after, .. } => *retry_after,
            UpstreamError::CircuitOpen { retry_after, .. }
            | UpstreamError::RateLimited { retry_after, .. } => Some(*retry_after),
            UpstreamError::Http {
                class: ErrorClass::RetryLater,
                ..
            } => Some(Duration::from_secs(1)),
            UpstreamError::Timeout { .. } | UpstreamError::Transport { .. } => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// True when the request may have been carried out although no answer arrived: the
    /// outcome of a bind must then be resolved by a query, never guessed.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            UpstreamError::Timeout { .. } => true,
            UpstreamError::Transport { maybe_sent, .. } => *maybe_sent,
            // A 5xx gateway page may hide a committed change as well.
            UpstreamError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// True when the call never left this process.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            UpstreamError::CircuitOpen { .. } | UpstreamError::RateLimited { .. }
        )
    }
}
