//! Recovery at open: check the whole log, then bring sled up to its last record and empty it.

use std::path::{Path, PathBuf};

use super::mark::Mark;
use super::record::{self, MAGIC, Next, Record};
use super::tx::Trees;
use super::{log_error, segment_files};
use crate::store::StoreError;
use crate::store::faults::{self, Point};

/// Applies every record in the log at `dir` to sled, in order, flushes sled, marks the log
/// clean and deletes it. Returns the last record applied: the log goes on after it.
///
/// sled is never ahead of the log (a change reaches sled only after its record is on disk), and
/// the log keeps every record from some point sled's flushed state has reached, so replaying all
/// of it gives the state at the last record. Replaying a record sled already holds writes the
/// same values again: nothing sled holds is rolled back.
///
/// Every segment is read and checked before anything is applied: a log that is refused has
/// changed nothing. The one damage accepted is a torn tail, a last record that a crash cut
/// short: it was never acknowledged. Anything else unreadable, a gap in the record numbers, a
/// log that starts past sled's high-water mark, or no log at all after an unclean stop is an
/// error naming the file, and the store is left as it is.
pub(in crate::store) fn recover(
    db: &sled::Db,
    trees: &Trees,
    dir: &Path,
) -> Result<u64, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| log_error(dir, "creating", &e))?;
    let Checked {
        mark,
        segments,
        records,
    } = check(trees, dir)?;
    if !records.is_empty() {
        let store = dir.parent().unwrap_or(dir);
        faults::check(store, Point::SledApply).map_err(|e| StoreError::Sled(e.into()))?;
    }
    for record in &records {
        trees.apply(&record.ops)?;
    }
    let applied = records
        .last()
        .map_or(mark.applied, |r| r.seq.max(mark.applied));
    Mark {
        applied,
        clean: true,
    }
    .write(&trees.meta)?;
    db.flush()?;
    for path in &segments {
        std::fs::remove_file(path).map_err(|e| log_error(path, "deleting", &e))?;
    }
    if let Some(last) = records.last() {
        tracing::info!(
            replayed = records.len(),
            last_record = last.seq,
            "replayed the write-ahead log"
        );
    }
    Ok(applied)
}

/// What recovery would replay, once the whole log is checked.
pub(super) struct Checked {
    /// sled's high-water mark.
    pub mark: Mark,
    pub segments: Vec<PathBuf>,
    /// Every intact record, in order (a torn tail left out).
    pub records: Vec<Record>,
}

/// Checks the log at `dir` against sled's mark without changing anything: the records to
/// replay, or why the store must not open (the error names the file, the offset and what to
/// do).
pub(super) fn check(trees: &Trees, dir: &Path) -> Result<Checked, StoreError> {
    let mark = Mark::read(&trees.meta)?;
    let segments = segment_files(dir)?;
    if segments.is_empty() && !mark.clean {
        return Err(refused(
            dir,
            "its database says it was not closed cleanly, yet its write-ahead log is gone: the \
             log was deleted after a crash, or the database lost data it had saved. Writes \
             acknowledged after its last checkpoint may be lost. Put the log's files back, or \
             restore the store from a backup"
                .into(),
        ));
    }
    let records = read_log(&segments, mark.applied)?;
    let first = records
        .first()
        .map(|r| r.seq)
        .or_else(|| segments.first().and_then(|path| first_seq(path)));
    if let Some(first) = first
        && first > mark.applied + 1
    {
        return Err(refused(
            dir,
            format!(
                "its database holds the write-ahead log's records up to {} but the log ({}) \
                 starts at record {first}: records {}..={} are missing (the database lost data \
                 it had saved, or log segments were deleted), so acknowledged writes may be \
                 lost. Restore the store from a backup",
                mark.applied,
                segments[0].display(),
                mark.applied + 1,
                first - 1
            ),
        ));
    }
    Ok(Checked {
        mark,
        segments,
        records,
    })
}

/// The first record number a segment's name gives.
pub(super) fn first_seq(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Every intact record of the log, in order, or the first reason not to trust it. `applied` is
/// the last record sled holds (see [`is_torn_tail`]).
fn read_log(segments: &[PathBuf], applied: u64) -> Result<Vec<Record>, StoreError> {
    let mut records: Vec<Record> = Vec::new();
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
        // The record reading resumed at after skipping damage sled already holds.
        let mut resumed_at = None;
        loop {
            match record::read(&bytes, &mut pos) {
                Next::End => break,
                Next::Record(record) => {
                    if let Some(previous) = records.last()
                        && record.seq != previous.seq + 1
                        && resumed_at.take() != Some(record.seq)
                    {
                        let why = format!(
                            "record {} follows {}: records are missing",
                            record.seq, previous.seq
                        );
                        return Err(corrupt(path, pos, &why));
                    }
                    records.push(record);
                }
                Next::Bad(why)
                    if is_last && is_torn_tail(&bytes, pos, next_seq(&records, path), applied) =>
                {
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
                Next::Bad(why) => {
                    let next = next_seq(&records, path);
                    let Some((at, seq)) =
                        next.and_then(|next| resync_within_applied(&bytes, pos, next, applied))
                    else {
                        return Err(corrupt(path, pos, why));
                    };
                    tracing::warn!(
                        path = %path.display(),
                        offset = pos,
                        why,
                        damaged_records = next.map_or(String::new(), |next| format!("{next}..={}", seq - 1)),
                        "damaged write-ahead log records that the database already holds; \
                         skipping them"
                    );
                    pos = at;
                    resumed_at = Some(seq);
                }
            }
        }
    }
    Ok(records)
}

/// Past damage at `pos` where record `next` should start: the offset and number of the first
/// intact record numbered `next..=applied + 1`, if there is one. Every record before it is
/// then at most `applied`, which sled already holds, so skipping the damage loses nothing; the
/// log is read on from there. Only offsets where such a number stands are tried.
fn resync_within_applied(
    segment: &[u8],
    pos: usize,
    next: u64,
    applied: u64,
) -> Option<(usize, u64)> {
    const SEQ_AT: usize = 8; // a record's seq follows its 8-byte header
    let wanted = next..=applied.checked_add(1)?;
    if wanted.is_empty() {
        return None;
    }
    (pos + 1..segment.len().saturating_sub(SEQ_AT + 8)).find_map(|start| {
        let seq = u64::from_le_bytes(
            segment[start + SEQ_AT..start + SEQ_AT + 8]
                .try_into()
                .ok()?,
        );
        if !wanted.contains(&seq) {
            return None;
        }
        let mut at = start;
        match record::read(segment, &mut at) {
            Next::Record(r) if r.seq == seq => Some((start, seq)),
            _ => None,
        }
    })
}

/// Whether the unreadable bytes at `pos` can only be a last write cut short: the record they
/// start runs to the end of the file, or everything past its claimed end is zeros (space the
/// file system allocated but the crash left unwritten), no intact later record follows, and sled
/// does not hold it yet (`applied`: a record sled got was written whole once, after its sync).
/// A bad record followed by more data is damage, not a torn write.
fn is_torn_tail(segment: &[u8], pos: usize, next: Option<u64>, applied: u64) -> bool {
    if next.is_some_and(|next| next <= applied) {
        return false;
    }
    let rest = &segment[pos..];
    let ends_the_file = match record::claimed_len(rest) {
        None => true, // not even a whole header
        Some(claimed) => rest.get(claimed..).is_none_or(record::is_blank),
    };
    ends_the_file && !next.is_some_and(|next| intact_record_follows(segment, pos, next))
}

/// Whether an intact record numbered `next` or a little later starts anywhere after `pos` (a
/// damaged length field can make a torn tail of the rest of the file). Only offsets where such a
/// sequence number stands are tried, so this stays linear.
fn intact_record_follows(segment: &[u8], pos: usize, next: u64) -> bool {
    const SEQ_AT: usize = 8; // a record's seq follows its 8-byte header
    let wanted: Vec<[u8; 8]> = (next..next + 4).map(u64::to_le_bytes).collect();
    (pos + 1..segment.len().saturating_sub(SEQ_AT + 8)).any(|start| {
        let seq = &segment[start + SEQ_AT..start + SEQ_AT + 8];
        wanted.iter().any(|w| w == seq) && {
            let mut at = start;
            matches!(record::read(segment, &mut at), Next::Record(r) if r.seq >= next)
        }
    })
}

/// The sequence number the next record must carry: one past the last read, or for the first
/// record, the one the segment's name gives.
fn next_seq(records: &[Record], path: &Path) -> Option<u64> {
    match records.last() {
        Some(last) => Some(last.seq + 1),
        None => first_seq(path),
    }
}

/// The store's directory is the one above the log's.
fn refused(dir: &Path, why: String) -> StoreError {
    let store = dir.parent().unwrap_or(dir);
    StoreError::Refused {
        path: store.display().to_string(),
        why,
    }
}

fn corrupt(path: &Path, offset: usize, why: &str) -> StoreError {
    StoreError::Log {
        full: false,
        path: path.display().to_string(),
        detail: format!(
            "at byte {offset}: {why}; the store did not open and changed nothing. This is not \
             a write cut short by a crash. `xpool store check` reports what the log holds past \
             it; restore the store from a backup, or accept losing the log from there with \
             `xpool store repair --segment {} --truncate-at {offset}`, which lists every \
             binding whose change is lost",
            path.display()
        ),
    }
}
