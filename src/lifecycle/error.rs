//! Errors of the pool: what went wrong for the caller, in domain terms. `grpc::status` maps
//! them to gRPC codes and `google.rpc` details, once. Messages are for people: internal details
//! (store errors, the platform's own text, app keys) are logged where they happen and kept as
//! the source only. Programs act on the [`Reason`] and the metadata, never on the message.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use super::options;
use crate::platform::codes;
use crate::platform::options::CallField;
use crate::store::StoreError;
use crate::upstream::{ErrorClass, UpstreamError};

/// Why a call failed, for programs: `ErrorInfo.reason`. Stable: a reason keeps its name and its
/// gRPC code (`grpc::status`), and README's "Errors" table documents each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A request field breaks a rule ([`PoolError::InvalidArgument`]).
    InvalidField,
    /// The request message is larger than the server accepts.
    MessageTooLarge,
    /// The call carries no known bearer token (`[auth]` is on).
    Unauthenticated,
    /// The caller's token lacks the scope the call needs.
    ScopeRequired,
    /// The caller's token is over its `rate_per_second`.
    CallerRateLimited,
    /// No app of that name is configured.
    UnknownApp,
    /// No binding with that id (or app and request_id); also one the platform no longer has.
    BindingNotFound,
    /// A well-formed number that is not one of the app's.
    NumberNotInPool,
    /// No reconciliation run with that id is kept (unknown, or forgotten since).
    RunNotFound,
    /// A Watch resume token older than the change feed keeps.
    WatchExpired,
    /// The number already belongs to another app.
    NumberExists,
    /// The requested area is not one the app has numbers in at all.
    UnknownArea,
    /// The party already holds the most numbers the platform allows.
    PartyAtLimit,
    /// The pinned number (or extension) cannot take this binding now.
    NumberUnavailable,
    /// The number still carries live bindings.
    NumberInUse,
    /// The request_id was already used for a binding with other parties.
    RequestIdConflict,
    /// The binding is not ACTIVE, and the call needs it to be.
    BindingNotActive,
    /// The app's mode does not allow the call.
    ModeUnsupported,
    /// The platform refused the call with a result code that waiting does not change.
    PlatformRejected,
    /// A backup cannot start (its directory is not empty, or another one is running).
    BackupRefused,
    /// No free number where the request allowed one.
    PoolExhausted,
    /// The app's platform rate limit (ours or the platform's flow control) is reached.
    PlatformRateLimited,
    /// The platform refused the app's credentials; its calls are paused.
    CircuitOpen,
    /// The platform did not answer, or answered with a fault of its own.
    PlatformUnavailable,
    /// A change was sent but its outcome is not known yet; it goes on.
    OutcomeUnknown,
    /// The platform refused numbers the pool believed free; they await reconciliation.
    PoolOutOfSync,
    /// Too many reconciliation runs are queued already.
    ReconcileQueueFull,
    /// The daemon is shutting down.
    ShuttingDown,
    /// Too many writes wait for the store's log: Binds are shed until it catches up.
    Overloaded,
    /// Cluster mode: the app's leader is not known, cannot be reached, or did not answer.
    LeaderUnavailable,
    /// The store's disk is full; writes resume once it has recovered.
    StorageFull,
    /// The store failed a write; writes resume once it has recovered.
    StorageFailed,
    /// The platform answered something this client does not understand.
    PlatformUnexpected,
    /// A fault of the daemon.
    Internal,
}

impl Reason {
    /// Every reason, in the order README documents them.
    pub const ALL: [Reason; 34] = [
        Reason::InvalidField,
        Reason::MessageTooLarge,
        Reason::Unauthenticated,
        Reason::ScopeRequired,
        Reason::CallerRateLimited,
        Reason::UnknownApp,
        Reason::BindingNotFound,
        Reason::NumberNotInPool,
        Reason::RunNotFound,
        Reason::WatchExpired,
        Reason::NumberExists,
        Reason::UnknownArea,
        Reason::PartyAtLimit,
        Reason::NumberUnavailable,
        Reason::NumberInUse,
        Reason::RequestIdConflict,
        Reason::BindingNotActive,
        Reason::ModeUnsupported,
        Reason::PlatformRejected,
        Reason::BackupRefused,
        Reason::PoolExhausted,
        Reason::PlatformRateLimited,
        Reason::CircuitOpen,
        Reason::PlatformUnavailable,
        Reason::OutcomeUnknown,
        Reason::PoolOutOfSync,
        Reason::ReconcileQueueFull,
        Reason::ShuttingDown,
        Reason::Overloaded,
        Reason::LeaderUnavailable,
        Reason::StorageFull,
        Reason::StorageFailed,
        Reason::PlatformUnexpected,
        Reason::Internal,
    ];

    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidField => "INVALID_FIELD",
            Reason::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::ScopeRequired => "SCOPE_REQUIRED",
            Reason::CallerRateLimited => "CALLER_RATE_LIMITED",
            Reason::UnknownApp => "UNKNOWN_APP",
            Reason::BindingNotFound => "BINDING_NOT_FOUND",
            Reason::NumberNotInPool => "NUMBER_NOT_IN_POOL",
            Reason::RunNotFound => "RUN_NOT_FOUND",
            Reason::WatchExpired => "WATCH_EXPIRED",
            Reason::NumberExists => "NUMBER_EXISTS",
            Reason::UnknownArea => "UNKNOWN_AREA",
            Reason::PartyAtLimit => "PARTY_AT_LIMIT",
            Reason::NumberUnavailable => "NUMBER_UNAVAILABLE",
            Reason::NumberInUse => "NUMBER_IN_USE",
            Reason::RequestIdConflict => "REQUEST_ID_CONFLICT",
            Reason::BindingNotActive => "BINDING_NOT_ACTIVE",
            Reason::ModeUnsupported => "MODE_UNSUPPORTED",
            Reason::PlatformRejected => "PLATFORM_REJECTED",
            Reason::BackupRefused => "BACKUP_REFUSED",
            Reason::PoolExhausted => "POOL_EXHAUSTED",
            Reason::PlatformRateLimited => "PLATFORM_RATE_LIMITED",
            Reason::CircuitOpen => "CIRCUIT_OPEN",
            Reason::PlatformUnavailable => "PLATFORM_UNAVAILABLE",
            Reason::OutcomeUnknown => "OUTCOME_UNKNOWN",
            Reason::PoolOutOfSync => "POOL_OUT_OF_SYNC",
            Reason::ReconcileQueueFull => "RECONCILE_QUEUE_FULL",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::Overloaded => "OVERLOADED",
            Reason::LeaderUnavailable => "LEADER_UNAVAILABLE",
            Reason::StorageFull => "STORAGE_FULL",
            Reason::StorageFailed => "STORAGE_FAILED",
            Reason::PlatformUnexpected => "PLATFORM_UNEXPECTED",
            Reason::Internal => "INTERNAL",
        }
    }

    /// How long to wait before the same call may succeed, for the reasons where waiting
    /// helps; `None`: do not retry it as it is.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            // Numbers free up as bindings end and cool-downs run out.
            Reason::PoolExhausted => Some(Duration::from_secs(5)),
            Reason::StorageFull | Reason::StorageFailed => Some(Duration::from_secs(2)),
            // The limiter's own wait is given where it is known.
            Reason::CallerRateLimited => Some(Duration::from_secs(1)),
            // A queued run takes as long as the platform's answers for its numbers.
            Reason::ReconcileQueueFull => Some(Duration::from_secs(10)),
            Reason::PlatformRateLimited
            | Reason::CircuitOpen
            | Reason::PlatformUnavailable
            | Reason::OutcomeUnknown
            | Reason::PoolOutOfSync
            | Reason::ShuttingDown
            | Reason::Overloaded
            | Reason::LeaderUnavailable => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about an error a program may act on (`ErrorInfo.metadata`): `app`, `number`,
/// `platform_code`… Values come from the request or the pool, never a secret.
pub type Meta = BTreeMap<&'static str, String>;

/// What went wrong for the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// A request field breaks a rule; nothing changed. `field` is its path in the request
    /// message: `party_a`, `numbers[2]`, `numbers[0].area_code`.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// Any other refusal or failure: `reason` says what it is (and decides the gRPC code),
    /// `meta` holds the facts a program acts on, `retry_after` overrides the reason's delay.
    #[error("{message}")]
    Refused {
        reason: Reason,
        message: String,
        meta: Meta,
        retry_after: Option<Duration>,
    },
    /// The store refuses writes until it recovers from a failed write (`full`: the disk is
    /// full); the daemon reports that once, as a change of its health.
    #[error("{}; writes resume once it has recovered", if *.full { "the store's disk is full" } else { "the store failed a write" })]
    StorageUnavailable { full: bool },
    /// The store failed; the details are in the source (and the log), not in the message.
    #[error("storage failure")]
    Storage(#[source] StoreError),
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
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        PoolError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A refusal for `reason`; add facts with [`PoolError::with`].
    pub fn refused(reason: Reason, message: impl Into<String>) -> Self {
        PoolError::Refused {
            reason,
            message: message.into(),
            meta: Meta::new(),
            retry_after: None,
        }
    }

    /// A fault of the daemon.
    pub fn internal(message: impl Into<String>) -> Self {
        PoolError::refused(Reason::Internal, message)
    }

    /// With the fact `key` = `value` in its metadata (only a refusal carries metadata).
    pub fn with(mut self, key: &'static str, value: impl Display) -> Self {
        if let PoolError::Refused { meta, .. } = &mut self {
            meta.insert(key, value.to_string());
        }
        self
    }

    /// With a retry delay other than its reason's, when `after` is given.
    pub fn retry_in(mut self, after: Option<Duration>) -> Self {
        if let (PoolError::Refused { retry_after, .. }, Some(after)) = (&mut self, after) {
            *retry_after = Some(after);
        }
        self
    }

    /// With `app` in its metadata unless it names one already.
    pub fn in_app(mut self, app: &str) -> Self {
        if let PoolError::Refused { meta, .. } = &mut self {
            meta.entry("app").or_insert_with(|| app.to_owned());
        }
        self
    }

    pub fn reason(&self) -> Reason {
        match self {
            PoolError::InvalidArgument { .. } => Reason::InvalidField,
            PoolError::Refused { reason, .. } => *reason,
            PoolError::StorageUnavailable { full: true } => Reason::StorageFull,
            PoolError::StorageUnavailable { full: false } => Reason::StorageFailed,
            PoolError::Storage(_) => Reason::Internal,
        }
    }

    /// The facts a program acts on; an invalid argument's is the field it names.
    pub fn meta(&self) -> Meta {
        match self {
            PoolError::InvalidArgument { field, .. } => Meta::from([("field", field.clone())]),
            PoolError::Refused { meta, .. } => meta.clone(),
            PoolError::StorageUnavailable { .. } | PoolError::Storage(_) => Meta::new(),
        }
    }

    /// When to try the same call again; `None` when waiting does not help.
    pub fn retry_after(&self) -> Option<Duration> {
        let default = self.reason().retry_after()?;
        match self {
            PoolError::Refused {
                retry_after: Some(after),
                ..
            } => Some(*after),
            _ => Some(default),
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.retry_after().is_some()
    }

    /// Whether the store refuses writes for now. The daemon reports that once, as a change of
    /// its health; background work that meets it retries without logging each attempt.
    pub fn is_store_unavailable(&self) -> bool {
        matches!(self, PoolError::StorageUnavailable { .. })
    }

    /// NOT_FOUND: no app `name` is configured.
    pub fn unknown_app(name: &str) -> Self {
        PoolError::refused(Reason::UnknownApp, format!("unknown app {}", quoted(name)))
            .with("app", name)
    }

    /// NOT_FOUND: no binding `id`.
    pub fn binding_not_found(id: impl Display) -> Self {
        PoolError::refused(Reason::BindingNotFound, format!("no binding {id}"))
            .with("binding_id", id)
    }

    /// NOT_FOUND: the well-formed `number` the request's `field` gives is not one of `app`'s.
    pub fn number_not_in_pool(field: impl Into<String>, app: &str, number: &str) -> Self {
        PoolError::refused(
            Reason::NumberNotInPool,
            format!("{} is not a number of app {}", quoted(number), quoted(app)),
        )
        .with("field", field.into())
        .with("app", app)
        .with("number", number)
    }

    /// RESOURCE_EXHAUSTED: no free number in the areas `tried` (empty: any area), while
    /// `free_elsewhere` are free in the others.
    pub fn exhausted(tried: &[String], free_elsewhere: u64) -> Self {
        let areas = if tried.is_empty() {
            "any area".to_owned()
        } else {
            format!("areas {}", tried.join(", "))
        };
        let hint = if free_elsewhere > 0 {
            " (set any_area to use them)"
        } else {
            ""
        };
        PoolError::refused(
            Reason::PoolExhausted,
            format!("no free number in {areas}; {free_elsewhere} free in other areas{hint}"),
        )
        .with("areas", tried.join(","))
        .with("free_elsewhere", free_elsewhere)
    }

    /// What a failed platform call means for the caller: the reason `upstream_reason` gives,
    /// the words `describe` gives. The caller of this logs the details.
    pub fn from_upstream(e: &UpstreamError) -> Self {
        if e.class() == ErrorClass::InvalidRequest
            && let Some(field) = e.desc().and_then(CallField::named_in)
        {
            // 1010002 names the parameter: an unknown tone file, mostly (§0.5).
            let message = describe(e);
            return if field.is_tone() {
                PoolError::invalid(
                    options::path(field),
                    format!(
                        "{message}; a tone must be a file uploaded and approved in the \
                         platform's console"
                    ),
                )
            } else {
                PoolError::invalid(options::path(field), message)
            };
        }
        PoolError::upstream(upstream_reason(e), describe(e), e)
    }

    /// A refusal for `reason` with `message`, and the result code (or HTTP status) and retry
    /// hint of the failed platform call `e`.
    pub fn upstream(reason: Reason, message: impl Into<String>, e: &UpstreamError) -> Self {
        let mut err = PoolError::refused(reason, message).retry_in(e.retry_after());
        if let Some(code) = e.code() {
            err = err.with("platform_code", code);
        }
        if let UpstreamError::Http { status, .. } = e {
            err = err.with("http_status", status);
        }
        err
    }
}

impl From<StoreError> for PoolError {
    /// Logs the store's error once, here, and keeps it as the source.
    fn from(e: StoreError) -> Self {
        if let StoreError::Unavailable { full, .. } = e {
            return PoolError::StorageUnavailable { full };
        }
        if let StoreError::NotLeader { app, why } = &e {
            // Cluster mode: leadership moved while the write was on its way to etcd.
            let message = format!(
                "this replica no longer leads app {}, so the write was not acknowledged ({why}); \
                 retry (a Bind with the same request_id is idempotent on any replica)",
                quoted(app)
            );
            return PoolError::refused(Reason::LeaderUnavailable, message).with("app", app);
        }
        tracing::error!(error = %e, "store error");
        PoolError::Storage(e)
    }
}

/// What a failed platform call means for the caller, by its class (binding-api.md §3).
pub fn upstream_reason(e: &UpstreamError) -> Reason {
    let flow_control = match e {
        UpstreamError::RateLimited { .. } | UpstreamError::Http { status: 429, .. } => true,
        // With HTTP 401 the same code is a bad digest, classed Auth.
        UpstreamError::Platform { code, class, .. } => {
            code == codes::INVALID_DIGEST_OR_FLOW_CONTROL && *class == ErrorClass::RetryLater
        }
        _ => false,
    };
    if flow_control {
        return Reason::PlatformRateLimited;
    }
    match e.class() {
        ErrorClass::RetryLater => Reason::PlatformUnavailable,
        // An authentication failure opens the app's circuit at once.
        ErrorClass::Auth => Reason::CircuitOpen,
        ErrorClass::NotFound => Reason::BindingNotFound,
        ErrorClass::Exhausted => Reason::PoolExhausted,
        ErrorClass::PartyLimit => Reason::PartyAtLimit,
        ErrorClass::Taken
        | ErrorClass::PartyConflict
        | ErrorClass::NumberUnusable
        | ErrorClass::Config
        | ErrorClass::AccountFrozen
        | ErrorClass::InvalidRequest => Reason::PlatformRejected,
        ErrorClass::Unknown => Reason::PlatformUnexpected,
    }
}

/// What a failed call means, in words a caller may see: no operation, app key or platform
/// text, only the platform's result code when it answered one.
pub fn describe(e: &UpstreamError) -> String {
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
