//! Fault injection for the store's I/O. The points are always named, but faults can be set
//! only in tests (unit tests, and integration tests through the `fault-injection` feature their
//! dev-dependency turns on); in a build the check is an empty inline function.
//!
//! Faults are set per store directory, not process-wide (as the `fail` crate's failpoints are),
//! because a test binary runs many daemons at once, each on its own store: a fault set for one
//! must not fail the others.
//!
//! A daemon in a child process (a crash test SIGKILLs it) is out of reach of `set`: for it, the
//! environment variable `XPOOL_TEST_FAULTS_FILE` (`FAULTS_FILE_ENV`) names a file of faults,
//! read again whenever its modification time changes (one `stat` per check while it is set).

#[cfg(any(test, feature = "fault-injection"))]
pub use injected::{Error, FAULTS_FILE_ENV, Times, clear, is_set, set, stall_for};

/// Where in the store's I/O a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// Writing a batch of records to the log segment.
    LogWrite,
    /// The `fdatasync` after that write.
    LogSync,
    /// Creating a log segment (at open, after recovery, on rotation).
    LogCreate,
    /// Applying synced records to sled: checked before each chunk the applier publishes
    /// alone (see the log's `apply_round`).
    SledApply,
    /// A checkpoint's sled flush.
    Checkpoint,
    /// The end of a read of every `requests` key into their filter (see the log's
    /// `request_keys`): the read fails, or (a stall) its filter is held back that long.
    RequestKeys,
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
    use std::sync::{LazyLock, Mutex, PoisonError};
    use std::time::SystemTime;

    use super::Point;

    /// What the fault returns.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Error {
        /// `ENOSPC`: the disk is full.
        Full,
        /// `EIO`: the disk failed.
        Io,
        /// The call hangs for [`STALL`] (or what [`stall_for`] set), then succeeds: a disk that
        /// stops answering (a test kills the daemon while a write waits on it).
        Stall,
    }

    /// How long a [`Error::Stall`] holds its call, unless [`stall_for`] says otherwise.
    pub const STALL: std::time::Duration = std::time::Duration::from_secs(30);

    static STALL_MS: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(STALL.as_millis() as u64);

    /// Makes every [`Error::Stall`] of this process hold its call for `d` (a test that must
    /// see the disk answer again).
    pub fn stall_for(d: std::time::Duration) {
        STALL_MS.store(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long a fault lasts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Times {
        /// The next time the point is reached, then it is cleared.
        Once,
        /// Every time, until [`clear`].
        Always,
        /// The point is passed this many times unharmed, then fails once and is cleared.
        After(u32),
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

    /// Whether a fault is set for `point` of the store at `store`: a `Once` fault that is gone
    /// has struck (a stall is under way).
    pub fn is_set(store: &Path, point: Point) -> bool {
        let faults = FAULTS.lock().unwrap_or_else(PoisonError::into_inner);
        faults
            .as_ref()
            .is_some_and(|faults| faults.contains_key(&(key(store), point)))
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
        match set_for(store, point).or_else(|| from_file(point)) {
            None => Ok(()),
            Some(Error::Full) => Err(io::Error::from(io::ErrorKind::StorageFull)),
            Some(Error::Io) => Err(io::Error::other(format!("injected I/O error at {point:?}"))),
            Some(Error::Stall) => {
                let ms = STALL_MS.load(std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            }
        }
    }

    /// The fault [`set`] for `point` of the store at `store`; a `Once` fault is used up.
    fn set_for(store: &Path, point: Point) -> Option<Error> {
        if !ANY.load(Ordering::Relaxed) {
            return None;
        }
        let mut faults = FAULTS.lock().unwrap_or_else(PoisonError::into_inner);
        let faults = faults.as_mut()?;
        let at = (key(store), point);
        let (error, times) = faults.get_mut(&at)?;
        let error = *error;
        match times {
            Times::Always => {}
            Times::Once | Times::After(0) => _ = faults.remove(&at),
            Times::After(n) => {
                *n -= 1;
                return None;
            }
        }
        Some(error)
    }

    /// Names a file of faults for every store of this process, one per line:
    /// `POINT ERROR TIMES`, e.g. `LogWrite Full Always` (the names of [`Point`], [`Error`] and
    /// [`Times`]). An empty or missing file sets none. The file is read again whenever its
    /// modification time changes, and then replaces what it set before; so that two versions
    /// written within the file system's timestamp granularity are told apart, a writer should
    /// give each version its own modification time and rename it into place.
    pub const FAULTS_FILE_ENV: &str = "XPOOL_TEST_FAULTS_FILE";

    /// [`FAULTS_FILE_ENV`], read once.
    static FILE: LazyLock<Option<PathBuf>> =
        LazyLock::new(|| std::env::var_os(FAULTS_FILE_ENV).map(PathBuf::from));

    /// One fault as the file sets it.
    type Line = (Point, Error, Times);

    /// The faults of the file as last read, and its modification time then.
    static FROM_FILE: Mutex<(Option<SystemTime>, Vec<Line>)> = Mutex::new((None, Vec::new()));

    /// The fault the file sets for `point`, reading it again if it changed; a `Once` fault is
    /// used up (until the file changes).
    fn from_file(point: Point) -> Option<Error> {
        let path = FILE.as_ref()?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut file = FROM_FILE.lock().unwrap_or_else(PoisonError::into_inner);
        if file.0 != modified {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            *file = (modified, text.lines().filter_map(parse_line).collect());
        }
        let i = file.1.iter().position(|(p, _, _)| *p == point)?;
        let (_, error, times) = file.1[i];
        if times == Times::Once {
            file.1.remove(i);
        }
        Some(error)
    }

    /// One line of the faults file; a line that does not parse is logged and skipped.
    fn parse_line(line: &str) -> Option<Line> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            return None;
        }
        let parsed = parse_words(&words);
        if parsed.is_none() {
            tracing::warn!(line, "a line of the faults file does not parse; skipped");
        }
        parsed
    }

    fn parse_words(words: &[&str]) -> Option<Line> {
        let [point, error, times] = words else {
            return None;
        };
        let point = match *point {
            "LogWrite" => Point::LogWrite,
            "LogSync" => Point::LogSync,
            "LogCreate" => Point::LogCreate,
            "SledApply" => Point::SledApply,
            "Checkpoint" => Point::Checkpoint,
            "RequestKeys" => Point::RequestKeys,
            _ => return None,
        };
        let error = match *error {
            "Full" => Error::Full,
            "Io" => Error::Io,
            "Stall" => Error::Stall,
            _ => return None,
        };
        let times = match *times {
            "Once" => Times::Once,
            "Always" => Times::Always,
            _ => return None,
        };
        Some((point, error, times))
    }

    /// The same store whichever way its path was spelled.
    fn key(store: &Path) -> PathBuf {
        std::path::absolute(store).unwrap_or_else(|_| store.to_path_buf())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_faults_file_line_names_point_error_and_times() {
            assert_eq!(
                parse_line("LogWrite Full Always"),
                Some((Point::LogWrite, Error::Full, Times::Always))
            );
            assert_eq!(
                parse_line("  Checkpoint Io   Once "),
                Some((Point::Checkpoint, Error::Io, Times::Once))
            );
            for bad in [
                "",
                "LogWrite Full",
                "LogWrite Full Always now",
                "Disk Full Once",
            ] {
                assert_eq!(parse_line(bad), None, "{bad:?}");
            }
        }
    }
}
