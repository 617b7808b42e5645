//! Recovery at open: bring sled up to the last intact log record, then empty the log.

use std::path::Path;

use super::record::{self, MAGIC, Next};
use super::{log_error, segment_files};
use crate::store::StoreError;
use crate::store::tx::Trees;

/// Applies every record in the log at `dir` to sled, in order, flushes sled and deletes the log.
///
/// sled is never ahead of the log (a change reaches sled only after its record is on disk), and
/// the log keeps every record from some point sled's flushed state has reached, so replaying all
/// of it gives the state at the last record. A record cut short at the end of the last segment
/// is a write the crash interrupted; it was never acknowledged and is ignored. Anything else
/// unreadable, or a gap in the sequence numbers, is an error naming the file: the store does not
/// open on a log it cannot trust, and the log is left as it is.
pub(in crate::store) fn recover(
    db: &sled::Db,
    trees: &Trees,
    dir: &Path,
) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| log_error(dir, "creating", &e))?;
    let segments = segment_files(dir)?;
    let mut last: Option<u64> = None;
    let mut replayed = 0u64;
    for (i, path) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let bytes = std::fs::read(path).map_err(|e| log_error(path, "reading", &e))?;
        if !bytes.starts_with(MAGIC) {
            if is_last && MAGIC.starts_with(&bytes) {
                continue; // created, cut short before its first record
            }
            return Err(corrupt(path, 0, "not a write-ahead log segment"));
        }
        let mut pos = MAGIC.len();
        loop {
            match record::read(&bytes, &mut pos) {
                Next::End => break,
                Next::Record(record) => {
                    if let Some(previous) = last
                        && record.seq != previous + 1
                    {
                        let why = format!(
                            "record {} follows {previous}: records are missing",
                            record.seq
                        );
                        return Err(corrupt(path, pos, &why));
                    }
                    trees.apply(&record.ops)?;
                    last = Some(record.seq);
                    replayed += 1;
                }
                Next::Bad(why) if is_last => {
                    tracing::warn!(
                        path = %path.display(),
                        offset = pos,
                        ignored_bytes = bytes.len() - pos,
                        why,
                        "the write-ahead log ends in an incomplete record (a write cut short); \
                         ignoring it"
                    );
                    break;
                }
                Next::Bad(why) => return Err(corrupt(path, pos, why)),
            }
        }
    }
    db.flush()?;
    for path in &segments {
        std::fs::remove_file(path).map_err(|e| log_error(path, "deleting", &e))?;
    }
    if let Some(last) = last {
        tracing::info!(replayed, last_record = last, "replayed the write-ahead log");
    }
    Ok(())
}

fn corrupt(path: &Path, offset: usize, why: &str) -> StoreError {
    StoreError::Log {
        path: path.display().to_string(),
        detail: format!("at byte {offset}: {why}"),
    }
}
