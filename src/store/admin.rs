//! The operator's tools: [`check`] and [`repair`] a store no daemon is running on, take a
//! consistent copy of a store while it serves ([`Store::backup`]), and [`restore`] one.

use std::path::{Path, PathBuf};

use super::wal::inspect::{self, LogReport, Loss};
use super::wal::{Mark, TreeId, Trees};
use super::{
    BindingRecord, NumberRecord, Store, StoreError, StoreOptions, WAL_DIR, check_format, codec,
    keys, open_sled,
};

pub use super::wal::inspect::SegmentInfo;

/// What `xpool store check` reports.
#[derive(Debug)]
pub struct CheckReport {
    pub path: PathBuf,
    pub bindings: usize,
    pub numbers: usize,
    pub log: LogReport,
}

/// Reads the store at `path` (which no daemon may be running on), changing none of its data:
/// sled's high-water mark, each log segment, and whether the store would open or why not.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    let (_db, trees) = open_existing(path)?;
    Ok(CheckReport {
        path: path.to_path_buf(),
        bindings: trees.bindings.len(),
        numbers: trees.numbers.len(),
        log: inspect::report(&trees, &path.join(WAL_DIR))?,
    })
}

/// One change that cutting the log loses.
#[derive(Debug)]
pub enum LostChange {
    /// The binding as the lost record wrote it (`None`: the record deleted it).
    Binding {
        seq: u64,
        id: String,
        record: Option<Box<BindingRecord>>,
    },
    /// The number as the lost record wrote it (`None`: the record deleted it).
    Number {
        seq: u64,
        key: String,
        record: Option<NumberRecord>,
    },
}

/// What `xpool store repair --truncate-at` would do and lose.
#[derive(Debug)]
pub struct RepairPlan {
    pub segment: PathBuf,
    pub offset: u64,
    pub loss: Loss,
    /// Every binding and number change in the lost records, in log order.
    pub changes: Vec<LostChange>,
}

/// Works out what cutting the log of the store at `path` at `offset` of `segment` loses,
/// changing nothing.
pub fn plan_repair(path: &Path, segment: &Path, offset: u64) -> Result<RepairPlan, StoreError> {
    let (_db, trees) = open_existing(path)?;
    let loss = inspect::plan_truncate(&trees, &path.join(WAL_DIR), segment, offset)?;
    let mut changes = Vec::new();
    for record in &loss.lost {
        for op in &record.ops {
            match op.tree {
                TreeId::Bindings => changes.push(LostChange::Binding {
                    seq: record.seq,
                    id: keys::parse_binding(&op.key)
                        .map_or_else(|| keys::describe(&op.key), |id| id.to_string()),
                    record: op
                        .value
                        .as_ref()
                        .and_then(|v| codec::decode(keys::BINDINGS, &op.key, v).ok())
                        .map(Box::new),
                }),
                TreeId::Numbers => changes.push(LostChange::Number {
                    seq: record.seq,
                    key: keys::describe(&op.key),
                    record: op
                        .value
                        .as_ref()
                        .and_then(|v| codec::decode(keys::NUMBERS, &op.key, v).ok()),
                }),
                _ => {}
            }
        }
    }
    Ok(RepairPlan {
        segment: segment.to_path_buf(),
        offset,
        loss,
        changes,
    })
}

/// Carries out `plan` on the store at `path` (checked again, in case the log changed), then
/// opens the store to prove it opens. Returns where the bytes taken out of the log were kept.
pub async fn repair(path: &Path, plan: &RepairPlan) -> Result<PathBuf, StoreError> {
    let again = plan_repair(path, &plan.segment, plan.offset)?;
    if again.loss.lost != plan.loss.lost || again.loss.later_segments != plan.loss.later_segments {
        return Err(StoreError::Conflict(
            "the log changed since the repair was planned; run it again".into(),
        ));
    }
    let kept = inspect::truncate(
        &path.join(WAL_DIR),
        &plan.segment,
        plan.offset,
        &plan.loss.later_segments,
    )?;
    let store = Store::open(&StoreOptions::new(path))?;
    store.close().await?;
    Ok(kept)
}

/// A copy made by [`Store::backup`].
#[derive(Debug)]
pub struct BackupInfo {
    pub path: PathBuf,
    /// The last log record the copy holds.
    pub last_record: u64,
    pub bindings: usize,
    pub numbers: usize,
}

impl Store {
    /// Writes a consistent copy of the store into `to` (which must not exist, or be empty) while
    /// it serves. Writes go on meanwhile and none waits for the copy: sled is copied as it
    /// changes, then every record applied during the copy is replayed onto it, which gives
    /// exactly the state at the last of them (a record's changes are whole values, so the last
    /// write of each key wins, and keys no record touched did not change). The copy is a
    /// closed store: `xpool store restore` puts it in place.
    pub async fn backup(&self, to: &Path) -> Result<BackupInfo, StoreError> {
        let not_empty = std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some());
        if not_empty {
            return Err(StoreError::Conflict(format!(
                "{} exists and is not empty; back up into a new directory",
                to.display()
            )));
        }
        let open = self.current()?;
        open.wal.start_capture()?;
        let source = open.trees.clone();
        let dir = to.to_path_buf();
        let copied = tokio::task::spawn_blocking(move || copy_trees(&source, &dir))
            .await
            .map_err(|_| StoreError::Closed);
        let captured = open.wal.end_capture().await;
        let (db, trees) = copied??;
        let (records, last) = captured?;
        let dir = to.to_path_buf();
        tokio::task::spawn_blocking(move || {
            records.apply_to(&trees)?;
            Mark {
                applied: last,
                clean: true,
            }
            .write(&trees.meta)?;
            db.flush()?;
            std::fs::create_dir_all(dir.join(WAL_DIR)).map_err(|e| StoreError::Log {
                path: dir.display().to_string(),
                detail: format!("creating the log directory: {e}"),
                full: super::error::is_full(&e),
            })?;
            Ok(BackupInfo {
                path: dir,
                last_record: last,
                bindings: trees.bindings.len(),
                numbers: trees.numbers.len(),
            })
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// A new sled database at `to` holding what `source` holds now (a fuzzy copy while writes go
/// on; see [`Store::backup`]).
fn copy_trees(source: &Trees, to: &Path) -> Result<(sled::Db, Trees), StoreError> {
    let db = sled::Config::new().path(to).flush_every_ms(None).open()?;
    let trees = Trees::open(&db)?;
    for id in TreeId::ALL {
        let (from, into) = (source.tree(id), trees.tree(id));
        for entry in from.iter() {
            let (key, value) = entry?;
            into.insert(key, value)?;
        }
    }
    Ok((db, trees))
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct RestoreInfo {
    pub bindings: usize,
    pub numbers: usize,
    /// Where the store that was at the target before went (kept, not deleted).
    pub previous: Option<PathBuf>,
}

/// Puts the backup at `backup` in place as the store at `target`, which no daemon may be
/// running on. The backup is copied and the copy opened (and closed) first, so a backup that
/// does not open changes nothing; a store already at `target` is moved aside, not deleted.
pub async fn restore(backup: &Path, target: &Path) -> Result<RestoreInfo, StoreError> {
    if !backup.join("conf").is_file() {
        return Err(StoreError::Refused {
            path: backup.display().to_string(),
            why: "this is not a store backup (no sled database in it)".into(),
        });
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let staging = sibling(target, &format!("restoring-{stamp}"));
    copy_dir(backup, &staging)?;
    let opened = Store::open(&StoreOptions::new(&staging));
    let counts = match opened {
        Ok(store) => {
            let counts = (store.count(TreeId::Bindings), store.count(TreeId::Numbers));
            store.close().await?;
            counts
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let previous = if target.exists() {
        // Refuses (Locked) while a daemon holds it.
        if let Err(e) = open_sled(&StoreOptions::new(target)) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let aside = sibling(target, &format!("before-restore-{stamp}"));
        std::fs::rename(target, &aside).map_err(|e| io_error(target, "moving aside", &e))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staging, target).map_err(|e| io_error(&staging, "moving", &e))?;
    Ok(RestoreInfo {
        bindings: counts.0,
        numbers: counts.1,
        previous,
    })
}

impl Store {
    fn count(&self, tree: TreeId) -> usize {
        self.current().map_or(0, |open| open.trees.tree(tree).len())
    }
}

/// Opens sled at `path` for reading, refusing a path that holds no store (sled would create
/// one) or one a daemon is running on.
fn open_existing(path: &Path) -> Result<(sled::Db, Trees), StoreError> {
    if !path.join("conf").is_file() {
        return Err(StoreError::Refused {
            path: path.display().to_string(),
            why: "there is no store here".into(),
        });
    }
    let db = open_sled(&StoreOptions::new(path))?;
    let trees = Trees::open(&db)?;
    check_format(&trees.meta)?;
    Ok((db, trees))
}

/// `<target>.<suffix>`, beside `target`.
fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    target.with_file_name(name)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(to).map_err(|e| io_error(to, "creating", &e))?;
    let entries = std::fs::read_dir(from).map_err(|e| io_error(from, "reading", &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(from, "reading", &e))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| io_error(&target, "writing", &e))?;
        }
    }
    Ok(())
}

fn io_error(path: &Path, doing: &str, e: &std::io::Error) -> StoreError {
    StoreError::Refused {
        path: path.display().to_string(),
        why: format!("{doing}: {e}"),
    }
}
