//! The store's one error type.

/// Everything that can go wrong in the store.
///
/// `Clone` because one group-commit sync answers many waiters with the same outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// sled itself failed (I/O, its own corruption checks, a bug it reports).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value or key could not be read back, or a key could not be encoded (a string
    /// longer than 65 535 bytes); `tree` names the tree and `detail` the key and what was wrong.
    #[error("corrupt entry in tree {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    /// The write-ahead log could not be read or written; `path` names the file or directory.
    /// Once a write or sync of the log failed, nothing more is acknowledged.
    #[error("write-ahead log {path}: {detail}")]
    Log {
        path: String,
        detail: String,
        /// The disk was full (`ENOSPC`, `EDQUOT`).
        full: bool,
    },
    /// The store's files say acknowledged writes may be lost (the database behind its log, the
    /// log gone after an unclean stop, sled's files damaged): it does not open, and says why and
    /// what to do.
    #[error("the store at {path} does not open: {why}")]
    Refused { path: String, why: String },
    /// Another process (or a store of this one not yet closed) holds the store's lock.
    #[error(
        "the store at {path} is in use by another process (is another xpool running on it?); \
         stop it, or point this one at another store.path"
    )]
    Locked { path: String },
    /// A write failed, so the store refuses writes until it has recovered
    /// ([`crate::store::Store::recover`], which the daemon retries on a back-off); nothing that
    /// was acknowledged is affected. `full` when the disk ran out of space.
    #[error("the store refuses writes until it recovers from a failed write: {cause}")]
    Unavailable { full: bool, cause: String },
    /// The store was closed (`Store::close`) or its flusher thread is gone.
    #[error("store closed")]
    Closed,
    /// Cluster mode: a write of app `app` that this replica cannot commit, because it does not
    /// lead the app (any more) or etcd's answer was lost; `why` says which. Nothing was
    /// acknowledged; a retry (with the same request id) on the app's leader is safe.
    #[error("this replica cannot commit app {app}'s write: {why}")]
    NotLeader { app: String, why: String },
    /// A write was refused because it contradicts what is stored (nothing was written).
    #[error("conflict: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether the error is the disk running out of space.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Log { full, .. } | StoreError::Unavailable { full, .. } => *full,
            StoreError::Sled(sled::Error::Io(e)) => is_full(e),
            _ => false,
        }
    }

    /// The error a write gets once the store has failed with `self`.
    pub(super) fn unavailable(&self) -> StoreError {
        match self {
            StoreError::Unavailable { .. } => self.clone(),
            _ => StoreError::Unavailable {
                full: self.is_disk_full(),
                cause: self.to_string(),
            },
        }
    }
}

/// `ENOSPC` or a quota exceeded.
pub(super) fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
