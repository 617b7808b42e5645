//! Fault injection for the store's I/O. The points are always named, but faults can be set
//! only in tests (unit tests, and integration tests through the `fault-injection` feature their
//! dev-dependency turns on); in a build the check is an empty inline function.
//!
//! Faults are set per store directory, not process-wide (as the `fail` crate's failpoints are),
//! because a test binary runs many daemons at once, each on its own store: a fault set for one
//! must not fail the others.

#[cfg(any(test, feature = "fault-injection"))]
pub use injected::{Error, Times, clear, set};

/// Where in the store's I/O a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// Writing a batch of records to the log segment.
    LogWrite,
    /// The `fdatasync` after that write.
    LogSync,
    /// Creating a log segment (at open, after recovery, on rotation).
    LogCreate,
    /// Applying a synced batch to sled.
    SledApply,
    /// A checkpoint's sled flush.
    Checkpoint,
}

/// No fault is ever set outside tests.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(super) fn check(_store: &std::path::Path, _point: Point) -> std::io::Result<()> {
    Ok(())
}

#[cfg(any(test, feature = "fault-injection"))]
pub(super) use injected::check;

#[cfg(any(test, feature = "fault-injection"))]
mod injected {
    use std::collections::HashMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, PoisonError};

    use super::Point;

    /// What the fault returns.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Error {
        /// `ENOSPC`: the disk is full.
        Full,
        /// `EIO`: the disk failed.
        Io,
    }

    /// How long a fault lasts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Times {
        /// The next time the point is reached, then it is cleared.
        Once,
        /// Every time, until [`clear`].
        Always,
    }

    type Faults = HashMap<(PathBuf, Point), (Error, Times)>;

    static FAULTS: Mutex<Option<Faults>> = Mutex::new(None);
    /// Whether any fault is set: the check costs one atomic load otherwise.
    static ANY: AtomicBool = AtomicBool::new(false);

    /// Makes `point` fail for the store at `store` (the directory given as `store.path`).
    pub fn set(store: &Path, point: Point, error: Error, times: Times) {
        let mut faults = FAULTS.lock().unwrap_or_else(PoisonError::into_inner);
        faults
            .get_or_insert_with(HashMap::new)
            .insert((key(store), point), (error, times));
        ANY.store(true, Ordering::SeqCst);
    }

    /// Clears every fault of the store at `store`: its disk works again.
    pub fn clear(store: &Path) {
        let mut faults = FAULTS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(faults) = faults.as_mut() {
            let store = key(store);
            faults.retain(|(path, _), _| *path != store);
        }
    }

    /// The injected error for `point` of the store at `store`, if one is set.
    pub(in crate::store) fn check(store: &Path, point: Point) -> io::Result<()> {
        if !ANY.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut faults = FAULTS.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(faults) = faults.as_mut() else {
            return Ok(());
        };
        let at = (key(store), point);
        let Some(&(error, times)) = faults.get(&at) else {
            return Ok(());
        };
        if times == Times::Once {
            faults.remove(&at);
        }
        Err(match error {
            Error::Full => io::Error::from(io::ErrorKind::StorageFull),
            Error::Io => io::Error::other(format!("injected I/O error at {point:?}")),
        })
    }

    /// The same store whichever way its path was spelled.
    fn key(store: &Path) -> PathBuf {
        std::path::absolute(store).unwrap_or_else(|_| store.to_path_buf())
    }
}
