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
    Log { path: String, detail: String },
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
    /// The store was closed (`Store::close`) or its flusher thread is gone.
    #[error("store closed")]
    Closed,
    /// A write was refused because it contradicts what is stored (nothing was written).
    #[error("conflict: {0}")]
    Conflict(String),
}
