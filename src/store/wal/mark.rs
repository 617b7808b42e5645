//! The log's high-water mark, kept in sled's `meta` tree: the last record applied to sled, and
//! whether the log was closed cleanly.
//!
//! Record numbers never restart: after recovery the log goes on from the mark. So at open the
//! store can tell whether its database and its log still meet. A log that starts past the
//! record after the mark means records are missing between them (sled lost data it had
//! flushed, or segments were deleted); an unclean stop with no log at all means the log was
//! removed. Either way acknowledged writes may be gone, and the store refuses to open rather
//! than start without them.

use crate::store::{StoreError, keys};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) struct Mark {
    /// The last record applied to sled (0: none yet).
    pub applied: u64,
    /// Whether the log was closed (or emptied by recovery) with every record in flushed sled.
    pub clean: bool,
}

impl Mark {
    /// The mark as sled holds it; a store written before marks existed reads as (0, clean).
    pub fn read(meta: &sled::Tree) -> Result<Mark, StoreError> {
        let applied = match meta.get(keys::META_WAL_APPLIED)? {
            None => 0,
            Some(bytes) => {
                u64::from_be_bytes(bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: keys::META,
                    detail: format!(
                        "{} is {} bytes, not 8",
                        keys::describe(keys::META_WAL_APPLIED),
                        bytes.len()
                    ),
                })?)
            }
        };
        let clean = meta
            .get(keys::META_WAL_CLEAN)?
            .is_none_or(|v| v.as_ref() == [1]);
        Ok(Mark { applied, clean })
    }

    /// Writes the mark to sled (durable with sled's next flush).
    pub fn write(self, meta: &sled::Tree) -> Result<(), StoreError> {
        note_applied(meta, self.applied)?;
        meta.insert(keys::META_WAL_CLEAN, &[u8::from(self.clean)])?;
        Ok(())
    }
}

/// Moves the mark's record number (the flusher, after applying a batch).
pub(super) fn note_applied(meta: &sled::Tree, applied: u64) -> Result<(), StoreError> {
    meta.insert(keys::META_WAL_APPLIED, &applied.to_be_bytes())?;
    Ok(())
}
