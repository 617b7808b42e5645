//! The log as an operator sees it, for `xpool store check` and `xpool store repair`: what each
//! segment holds, and what truncating the log at a damaged record would lose. Nothing here
//! changes a file except [`truncate`], which keeps every byte it takes out.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::mark::Mark;
use super::record::{self, MAGIC, Next, Record};
use super::recover::{self, first_seq};
use super::tx::Trees;
use super::{log_error, segment_files};
use crate::store::StoreError;

/// One segment file, read from its start up to its first unreadable byte.
#[derive(Debug)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub bytes: u64,
    /// Where reading stopped: past the last intact record (what follows is zeros the log
    /// prepared, or unreadable), or the end of the file.
    pub written: u64,
    /// The first and last intact records read (none if the segment holds none).
    pub records: Option<(u64, u64)>,
    /// Where reading stopped before the end of the file, and why.
    pub unreadable_at: Option<(u64, &'static str)>,
}

/// What the log holds and whether the store would open.
#[derive(Debug)]
pub struct LogReport {
    /// sled's high-water mark: the last record it holds, and whether the log was closed clean.
    pub applied: u64,
    pub clean: bool,
    pub segments: Vec<SegmentInfo>,
    /// Records recovery would replay.
    pub to_replay: usize,
    /// Why the store would not open, if it would not.
    pub refusal: Option<StoreError>,
}

/// Reads the log at `dir` against sled's mark, changing nothing.
pub fn report(trees: &Trees, dir: &Path) -> Result<LogReport, StoreError> {
    let mark = Mark::read(&trees.meta)?;
    let paths = if dir.exists() {
        segment_files(dir)?
    } else {
        Vec::new()
    };
    let mut segments = Vec::new();
    for path in paths {
        let bytes = read(&path)?;
        let (records, end, stop) = read_from_start(&bytes);
        segments.push(SegmentInfo {
            bytes: bytes.len() as u64,
            written: end as u64,
            records: records
                .first()
                .zip(records.last())
                .map(|(a, b)| (a.seq, b.seq)),
            unreadable_at: stop.map(|(at, why)| (at as u64, why)),
            path,
        });
    }
    let (to_replay, refusal) = match recover::check(trees, dir) {
        Ok(checked) => (checked.records.len(), None),
        Err(e) => (0, Some(e)),
    };
    Ok(LogReport {
        applied: mark.applied,
        clean: mark.clean,
        segments,
        to_replay,
        refusal,
    })
}

/// What truncating the log at `offset` of `segment` gives up.
#[derive(Debug)]
pub struct Loss {
    /// The last record kept.
    pub kept_through: u64,
    /// Intact records past the cut that sled does not hold: their changes are lost.
    pub lost: Vec<Record>,
    /// Intact records past the cut that sled already holds (nothing of theirs is lost).
    pub already_applied: usize,
    /// Records past the cut that cannot be read at all: `(first, last)` when the records read
    /// after them tell their numbers, and the bytes they span.
    pub unreadable: Option<(u64, u64)>,
    pub unreadable_bytes: u64,
    /// Later segments, which go with the cut.
    pub later_segments: Vec<PathBuf>,
}

/// Works out what cutting `segment` (a file of the log at `dir`) at `offset` would lose.
/// `offset` must be where a record starts, as `xpool store check` and a refused start name it.
pub fn plan_truncate(
    trees: &Trees,
    dir: &Path,
    segment: &Path,
    offset: u64,
) -> Result<Loss, StoreError> {
    let mark = Mark::read(&trees.meta)?;
    let segments = segment_files(dir)?;
    let Some(index) = segments
        .iter()
        .position(|s| s.file_name() == segment.file_name())
    else {
        return Err(StoreError::Refused {
            path: dir.display().to_string(),
            why: format!("{} is not a segment of this store's log", segment.display()),
        });
    };
    let path = &segments[index];
    let bytes = read(path)?;
    let cut = usize::try_from(offset).unwrap_or(usize::MAX);
    let (kept, _, stop) = read_from_start(&bytes[..cut.min(bytes.len())]);
    if cut < MAGIC.len() || cut > bytes.len() || stop.is_some() {
        let read_to = stop.map_or(String::new(), |(at, why)| {
            format!(" (the records read from the start stop at byte {at}: {why})")
        });
        return Err(StoreError::Refused {
            path: path.display().to_string(),
            why: format!(
                "byte {offset} is not where a record starts{read_to}; `xpool store check` \
                 names the offset to cut at"
            ),
        });
    }
    let kept_through = kept
        .last()
        .map(|r| r.seq)
        .or_else(|| first_seq(path).map(|first| first.saturating_sub(1)))
        .unwrap_or(0);

    // Past the cut: whatever can still be read, in this segment and the later ones.
    let mut past = salvage(&bytes[cut..], kept_through + 1);
    let later_segments = segments[index + 1..].to_vec();
    for later in &later_segments {
        let bytes = read(later)?;
        past.records
            .extend(salvage(&bytes, kept_through + 1).records);
    }
    let unreadable = match past.records.first() {
        Some(first) if first.seq > kept_through + 1 => Some((kept_through + 1, first.seq - 1)),
        Some(_) => None,
        None if past.unreadable_bytes > 0 => Some((kept_through + 1, kept_through + 1)),
        None => None,
    };
    let (already, lost): (Vec<Record>, Vec<Record>) = past
        .records
        .into_iter()
        .partition(|r| r.seq <= mark.applied);
    Ok(Loss {
        kept_through,
        lost,
        already_applied: already.len(),
        unreadable,
        unreadable_bytes: past.unreadable_bytes,
        later_segments,
    })
}

/// Cuts `segment` at `offset` and moves the later segments away: every byte taken out goes to
/// a new directory `removed-<unix seconds>` beside the segments (recovery reads only `*.wal`
/// files), which is returned. Durable (files and directories synced) on return.
pub fn truncate(
    dir: &Path,
    segment: &Path,
    offset: u64,
    later: &[PathBuf],
) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let removed = dir.join(format!("removed-{stamp}"));
    std::fs::create_dir_all(&removed).map_err(|e| log_error(&removed, "creating", &e))?;
    let path = dir.join(segment.file_name().unwrap_or_default());
    let bytes = read(&path)?;
    let tail = removed.join(format!(
        "{}.from-{offset}",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let cut = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    std::fs::File::create(&tail)
        .and_then(|mut f| f.write_all(&bytes[cut..]).and_then(|()| f.sync_all()))
        .map_err(|e| log_error(&tail, "writing", &e))?;
    for later in later {
        let to = removed.join(later.file_name().unwrap_or_default());
        std::fs::rename(later, &to).map_err(|e| log_error(later, "moving", &e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(offset).and_then(|()| f.sync_all()))
        .map_err(|e| log_error(&path, "truncating", &e))?;
    for d in [&removed, dir] {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| log_error(d, "syncing", &e))?;
    }
    Ok(removed)
}

fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| log_error(path, "reading", &e))
}

/// The intact records from the start of a segment, where reading stopped, and why if that is
/// before its end (zeros after the records are its end).
fn read_from_start(bytes: &[u8]) -> (Vec<Record>, usize, Option<(usize, &'static str)>) {
    if !bytes.starts_with(MAGIC) {
        if MAGIC.starts_with(bytes) {
            return (Vec::new(), bytes.len(), None); // created, cut short before its first record
        }
        return (Vec::new(), 0, Some((0, "not a write-ahead log segment")));
    }
    let mut pos = MAGIC.len();
    let mut records = Vec::new();
    loop {
        match record::read(bytes, &mut pos) {
            Next::End => return (records, pos, None),
            Next::Record(r) => records.push(r),
            Next::Bad(why) => return (records, pos, Some((pos, why))),
        }
    }
}

/// What can still be read of damaged bytes.
struct Salvaged {
    records: Vec<Record>,
    unreadable_bytes: u64,
}

/// Every intact record in `bytes` numbered `from` or later, found by looking for record
/// numbers where a record's would stand (so this stays linear), then reading on from each.
fn salvage(bytes: &[u8], from: u64) -> Salvaged {
    const SEQ_AT: usize = 8; // a record's number follows its 8-byte header
    let mut records: Vec<Record> = Vec::new();
    let mut unreadable = 0u64;
    let mut pos = if bytes.starts_with(MAGIC) {
        MAGIC.len()
    } else {
        0
    };
    // A prepared segment's unwritten zeros are no damage: they end it.
    while !record::is_blank(&bytes[pos..]) {
        let mut at = pos;
        if let Next::Record(r) = record::read(bytes, &mut at)
            && r.seq >= from
            && records.last().is_none_or(|last| r.seq > last.seq)
        {
            records.push(r);
            pos = at;
            continue;
        }
        let next = records.last().map_or(from, |r| r.seq + 1);
        let plausible = |start: usize| {
            bytes
                .get(start + SEQ_AT..start + SEQ_AT + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
                .is_some_and(|seq| (next..next + 4096).contains(&seq))
        };
        let resume = (pos + 1..bytes.len())
            .find(|&start| plausible(start))
            .unwrap_or(bytes.len());
        unreadable += (resume - pos) as u64;
        pos = resume;
    }
    Salvaged {
        records,
        unreadable_bytes: unreadable,
    }
}
