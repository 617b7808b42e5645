//! The sled store: bindings, their indexes, and the number pool, on one sled database.
//!
//! Trees (key layouts in [`keys`], values behind a version byte in `codec`):
//! - `bindings`: every [`BindingRecord`] by id (UUID v7, so creation order);
//! - `requests`: (app, request_id) → binding id, for idempotent Binds;
//! - `expiry`: (deadline, id) for Active bindings with a deadline, earliest first;
//! - `slots`: (app, x, id) → what the allocation index needs ([`SlotRecord`]) for bindings
//!   holding a slot, so start-up need not decode every record; `open`: PENDING and RELEASING
//!   ids;
//! - `numbers`: every [`NumberRecord`] by (app, number);
//! - `released`: (left service at, id) for RELEASED and EXPIRED bindings without a request id,
//!   oldest first, and `remembered`: the same for those whose request id is still remembered,
//!   and tombstones for those deleted while it is (each binding in one of the two; retention
//!   deletes them in time, see [`Tx::purge_binding`] and [`Tx::forget_request`]);
//! - `meta`: the store's format version and job progress.
//!
//! Every write is a transaction ([`Tx`]) that becomes one write-ahead-log record, so a record
//! and its index entries change together, in crashes too. There are two ways to write, and
//! neither acknowledges anything before it is durable:
//! - [`Store::commit`] runs a transaction and resolves once it is on disk (group commit: writers
//!   that wait together share one `fdatasync`, see `wal`);
//! - [`Store::stage`] runs it and hands back a [`Staged`] write, for callers that must order the
//!   change with their own in-memory state under their own lock; awaiting it makes it durable.
//!
//! Plain reads (`get_*`, scans) read sled, which holds exactly the durable changes, and take no
//! lock of the log's: a read never sees a write that a crash could take back. A transaction
//! reads what every earlier transaction wrote, durable or not, so read-modify-write belongs in
//! one. The synchronous methods are short blocking calls.
//!
//! When a write fails (a full or failing disk), the store refuses every call with
//! [`StoreError::Unavailable`] and reports it on [`Store::health`]; [`Store::recover`] reopens
//! the database and its log and writes again what the failed log had not made durable. Nothing
//! acknowledged is touched, and nothing staged is lost while the process lives.

pub mod admin;
mod bindings;
mod calls;
mod codec;
mod error;
#[cfg(test)]
mod failure_tests;
pub mod faults;
pub mod keys;
mod legacy;
pub mod records;
pub mod replica;
#[cfg(test)]
mod request_keys_tests;
mod retention;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod slots_tests;
/// Tests: a crash staged by copying the store's files (see `wal::tests`).
#[cfg(test)]
pub(crate) mod test_files {
    pub(crate) use super::wal::tests::{copy_dir, stage_crash};
}
#[cfg(test)]
mod tests;
mod wal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use calls::{
    CallEventChange, CallStored, CdrStored, ChangeKindStored, ChangeStored, EventStored, LogId,
    MessageStored, NumberChangeStored,
};
pub use error::StoreError;
pub use records::*;
pub use retention::RequestLookup;
/// Staging a crash by copying the store's files (tests elsewhere in the crate use it too).
#[cfg(test)]
pub(crate) use wal::tests::{copy_dir, stage_crash};
pub use wal::{BindingChange, Lane, LeaderRecord, LogRecord, Staged, Term, TreeId, Tx};

use wal::{Retained, Trees, TxResult, Wal};

/// Default sled page-cache size: 16 MiB (sled's own default is 1 GiB). sled holds about twice
/// this in memory; at 1.1M bindings 64 MiB cost ~130 MiB more RSS than 16 and bought no
/// measurable speed (BENCHMARKS.md, scenario 4).
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// On-disk format of the whole store, kept in `meta`; bump it with a migration (in
/// `open_files`). 2: the `released` and `remembered` indexes (retention). 3: the
/// `subscriptions` index (pushes name bindings by the platform's id), and the call log's trees.
/// 4: `slots` values ([`SlotRecord`]), from which start-up rebuilds the allocation index.
/// 5: one retention entry per binding that left service, in `released` or `remembered`, and
/// `remembered` tombstones keyed apart.
const FORMAT_VERSION: u32 = 5;

/// The oldest format this build migrates at open.
const OLDEST_FORMAT: u32 = 1;

/// Where and how to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The sled directory (created if missing).
    pub path: PathBuf,
    /// sled's page cache in bytes (not a hard cap on memory use).
    pub cache_capacity_bytes: u64,
    /// Delete the files when the store is dropped (tests).
    pub temporary: bool,
}

impl StoreOptions {
    /// Options for a durable store at `path` with the default cache.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreOptions {
            path: path.into(),
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            temporary: false,
        }
    }
}

/// Whether the store takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Writable,
    /// A write failed because the disk is full; writes are refused until [`Store::recover`].
    /// The error, for the log.
    Full(String),
    /// A write failed for another reason (an I/O error); writes are refused until
    /// [`Store::recover`].
    Failed(String),
}

impl Health {
    pub fn is_writable(&self) -> bool {
        *self == Health::Writable
    }
}

/// The open store. `Send + Sync`: share it as `Arc<Store>`.
pub struct Store {
    /// The database and its log; `None` while [`Store::recover`] reopens them.
    current: RwLock<Option<Arc<Open>>>,
    /// What a failed log left to write again, while recovery has not yet succeeded.
    retained: Mutex<Retained>,
    /// Serialises recoveries.
    recovering: tokio::sync::Mutex<()>,
    health: watch::Sender<Health>,
    /// Bumped whenever writes became durable (see [`Store::durable_writes`]).
    durable: watch::Sender<u64>,
    options: StoreOptions,
    /// Where the log's group commits are measured, once the daemon's metrics exist.
    log_metrics: LogObserver,
    /// Cluster mode ([`Store::enable_leader_writes`]): what wakes the writer, kept for a log
    /// reopened by recovery.
    cluster: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

/// The metrics a log reports its group commits to, set once (see [`Store::observe_log`]).
pub(crate) type LogObserver = Arc<std::sync::OnceLock<crate::metrics::LogMetrics>>;

/// One opening of the database and its log.
struct Open {
    /// The sled trees; written only through `transact`.
    trees: Trees,
    /// The write-ahead log: its lock orders writes, its threads make them durable. `close`
    /// stops it; dropping it lets its threads finish and end, and sled closes when they and
    /// the trees are gone.
    wal: Wal,
}

/// Where the write-ahead log lives, inside the store directory.
const WAL_DIR: &str = "wal";

/// Job-owned `meta` keys live under `job/`, apart from the store's own `format`.
fn meta_key(name: &str) -> Vec<u8> {
    [b"job/".as_slice(), name.as_bytes()].concat()
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.options.path)
            .field("health", &self.health.borrow().is_writable())
            .finish_non_exhaustive()
    }
}

/// How long `Store::open` waits for sled's lock: a store this process closed a moment ago is
/// released only when sled's own threads let go of it (sled issues #1234, #1289); another
/// daemon holding it keeps it, and is reported once this has passed.
const LOCK_WAIT: Duration = Duration::from_secs(2);

impl Store {
    /// Opens (creating) the store, checks and replays its write-ahead log and starts the log's
    /// threads. On failure everything opened is released again.
    pub fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        let (health, _) = watch::channel(Health::Writable);
        let (durable, _) = watch::channel(0);
        let log_metrics = LogObserver::default();
        let open = open_files(options, &health, &durable, &log_metrics)?;
        Ok(Store {
            current: RwLock::new(Some(Arc::new(open))),
            retained: Mutex::new(Retained::default()),
            recovering: tokio::sync::Mutex::new(()),
            health,
            durable,
            options: options.clone(),
            log_metrics,
            cluster: Mutex::new(None),
        })
    }

    /// The database and log in use, or `Unavailable` while recovery reopens them.
    fn current(&self) -> Result<Arc<Open>, StoreError> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Unavailable {
                full: matches!(*self.health.borrow(), Health::Full(_)),
                cause: "reopening the store after a failed write".into(),
            })
    }

    /// Runs a read on the trees in use, once sled holds every write acknowledged before it
    /// (a write is answered when its log record is on disk, and applied to sled just after: the
    /// read waits for that apply if it is under way). A read that fails with an I/O error
    /// (sled fails every call after one of its own) fails the store as a failed write does;
    /// while the store refuses writes, a failed read is refused the same way, as `Unavailable`.
    fn read<T>(&self, f: impl FnOnce(&Trees) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let open = self.current()?;
        open.wal.settle()?;
        f(&open.trees).map_err(|e| self.read_failed(&open, e))
    }

    /// Waits until sled holds every write acknowledged so far, without blocking a thread.
    pub async fn settled(&self) -> Result<(), StoreError> {
        let open = self.current()?;
        open.wal.settled().await
    }

    /// [`Store::read`] without the wait for sled to catch up: it may miss the writes of the
    /// last group commit. Only for reads of candidates that a transaction checks again (the
    /// expiry round's), which must not wait behind the applies they are there to feed.
    fn read_unsettled<T>(
        &self,
        f: impl FnOnce(&Trees) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let open = self.current()?;
        f(&open.trees).map_err(|e| self.read_failed(&open, e))
    }

    fn read_failed(&self, open: &Open, e: StoreError) -> StoreError {
        if matches!(e, StoreError::Sled(sled::Error::Io(_))) {
            open.wal.fail(&e);
        }
        match &*self.health.borrow() {
            Health::Writable => e,
            Health::Full(cause) => StoreError::Unavailable {
                full: true,
                cause: cause.clone(),
            },
            Health::Failed(cause) => StoreError::Unavailable {
                full: false,
                cause: cause.clone(),
            },
        }
    }

    /// Changes whenever durable writes became readable (sled holds them), and when the log
    /// fails: readers of what others write (the change feed) wait on it instead of polling.
    pub fn durable_writes(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Whether the store takes writes, and every change of it.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    /// After a failed write: reopens the database, replays its log (a write the failure cut
    /// short is a torn tail) and writes again, durably, every record the failed log had not
    /// made durable, then takes writes again; returns how many records the failed log had not
    /// made durable (durable now, whether recovery found them on disk or wrote them again). Fails,
    /// changing nothing that was acknowledged, if the disk still fails; call it again later. A
    /// no-op while the store is writable.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let _one = self.recovering.lock().await;
        if self.health.borrow().is_writable() {
            return Ok(0);
        }
        let failed = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let retained = match failed {
            // sled lets go of its files once the last handle is gone; `open_sled` waits for
            // handles that readers still hold.
            Some(failed) => tokio::task::spawn_blocking(move || failed.wal.abandon())
                .await
                .map_err(|_| StoreError::Closed)?,
            None => Retained::default(),
        };
        let retained = {
            let mut kept = self.retained.lock().unwrap_or_else(PoisonError::into_inner);
            kept.extend(retained);
            std::mem::take(&mut *kept)
        };
        let options = self.options.clone();
        let (health, durable) = (self.health.clone(), self.durable.clone());
        let log_metrics = Arc::clone(&self.log_metrics);
        let reopened = tokio::task::spawn_blocking(move || {
            open_files(&options, &health, &durable, &log_metrics)
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        let result = match reopened {
            Ok(open) => match open.wal.relog_and_wait(&retained).await {
                // The new log may fail at once too: then it has reported that, and stays so.
                Ok(()) => open
                    .wal
                    .if_healthy(|| _ = self.health.send_replace(Health::Writable))
                    .map(|()| open),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(open) => {
                let cluster = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(wake) = &*cluster {
                    open.wal.enable_leader_writes(Arc::clone(wake));
                }
                drop(cluster);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::new(open));
                Ok(retained.len())
            }
            Err(e) => {
                *self.retained.lock().unwrap_or_else(PoisonError::into_inner) = retained;
                Err(e)
            }
        }
    }

    /// Runs `f` as one transaction and resolves once what it wrote is durable, with what it
    /// returned. If `f` fails, nothing is written.
    pub async fn commit<T: Send, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.commit_in(Lane::Local, f).await
    }

    /// [`Store::commit`] on `lane`: in cluster mode, a leader's write goes to etcd.
    pub async fn commit_in<T: Send, E: From<StoreError>>(
        &self,
        lane: Lane<'_>,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        Ok(self.stage_in(lane, f)?.durable().await?)
    }

    /// Runs `f` as one transaction and returns the write staged: decided and ordered after
    /// every earlier one, durable once awaited. For callers that keep in-memory state in step
    /// with the store under a lock of their own: stage under it, await after releasing it.
    pub fn stage<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<Staged<T>, E> {
        self.stage_in(Lane::Local, f)
    }

    /// Tests: the (tree, key) entries of the last write staged and not yet durable.
    #[cfg(test)]
    pub(crate) fn last_staged(&self) -> Vec<(TreeId, Vec<u8>)> {
        self.current()
            .map(|open| open.wal.last_staged())
            .unwrap_or_default()
    }

    /// [`Store::stage`] on `lane`: the local log, the copy's, or (cluster mode) a leader's
    /// term, whose write is durable once etcd committed it and this replica applied it.
    pub fn stage_in<T, E: From<StoreError>>(
        &self,
        lane: Lane<'_>,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<Staged<T>, E> {
        let open = self.current()?;
        open.wal.stage(&open.trees, lane, f)
    }

    /// Cluster mode: from now on this store takes leaders' writes ([`Lane::Leader`]) and
    /// refuses local writes of replicated entries except the copy's. Returns what wakes the
    /// writer when a leader's record is queued.
    pub fn enable_leader_writes(&self) -> Result<Arc<tokio::sync::Notify>, StoreError> {
        let wake = Arc::clone(
            self.cluster
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(Arc::default),
        );
        self.current()?.wal.enable_leader_writes(Arc::clone(&wake));
        Ok(wake)
    }

    /// Whether this store takes leaders' writes (cluster mode; see
    /// [`Store::enable_leader_writes`]).
    pub fn takes_leader_writes(&self) -> bool {
        self.cluster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Every leader's record queued so far, in order (for the cluster's writer).
    pub fn take_leader_records(&self) -> Vec<LeaderRecord> {
        self.current()
            .map(|open| open.wal.take_leader_records())
            .unwrap_or_default()
    }

    /// Answers the leader's records the writer took, with their outcomes.
    pub fn finish_leader_records(&self, outcomes: Vec<(LeaderRecord, Result<(), StoreError>)>) {
        match self.current() {
            Ok(open) => open.wal.finish_leader_records(outcomes),
            // The log that queued them is gone: its records were answered when it closed.
            Err(_) => drop(outcomes),
        }
    }

    /// The durable value of `key`.
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.read(|trees| Ok(trees.tree(tree).get(key)?))
    }

    /// A throwaway store (sled temporary) for tests: a fresh directory under the system temp
    /// dir, removed when the store is dropped.
    pub fn open_temporary() -> Result<Store, StoreError> {
        let dir = std::env::temp_dir().join(format!("xpool-store-{}", uuid::Uuid::new_v4()));
        Store::open(&StoreOptions {
            temporary: true,
            ..StoreOptions::new(dir)
        })
    }

    /// A small named value in `meta` (e.g. a job's progress).
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(TreeId::Meta, &meta_key(name))?.map(|v| v.to_vec()))
    }

    pub async fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.commit(|tx| tx.put_meta(name, value)).await
    }

    pub async fn delete_meta(&self, name: &str) -> Result<(), StoreError> {
        self.commit(|tx| tx.delete_meta(name)).await
    }

    /// The sled directory.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Creates or replaces the number record under (app, number).
    pub async fn put_number(&self, record: &NumberRecord) -> Result<(), StoreError> {
        self.commit(|tx| tx.put_number(record)).await
    }

    pub fn get_number(&self, app: &str, number: &str) -> Result<Option<NumberRecord>, StoreError> {
        // A key too long to encode was never stored.
        let Ok(key) = keys::number(app, number) else {
            return Ok(None);
        };
        self.get(TreeId::Numbers, &key)?
            .map(|value| codec::decode(keys::NUMBERS, &key, &value))
            .transpose()
    }

    /// Removes the number record; `Ok(false)` if there was none.
    pub async fn delete_number(&self, app: &str, number: &str) -> Result<bool, StoreError> {
        self.commit(|tx| tx.delete_number(app, number)).await
    }

    /// All numbers of one app in number order (prefix scan), or of all apps with `None` (grouped
    /// by app). Order is by (byte length, bytes), i.e. numeric for canonical digit strings.
    pub fn numbers(&self, app: Option<&str>) -> Result<Vec<NumberRecord>, StoreError> {
        let prefix = match app {
            None => Vec::new(),
            Some(app) => match keys::number_prefix(app) {
                Ok(prefix) => prefix,
                Err(_) => return Ok(Vec::new()),
            },
        };
        self.read(|trees| {
            trees
                .numbers
                .scan_prefix(prefix)
                .map(|entry| {
                    let (key, value) = entry?;
                    codec::decode(keys::NUMBERS, &key, &value)
                })
                .collect()
        })
    }

    /// Makes every write durable, stops the log's threads, flushes sled and empties the log.
    /// Later writes fail with `Closed` (reads keep working); closing twice is a no-op.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.current()?.wal.close().await
    }

    /// Writes waiting for the log's next group commits (0 while the store is reopening).
    pub fn write_backlog(&self) -> u64 {
        self.current().map_or(0, |open| open.wal.backlog())
    }

    /// Reports each group commit of the log (now and after any reopening) to `metrics`; the
    /// first call wins.
    pub fn observe_log(&self, metrics: crate::metrics::LogMetrics) {
        let _ = self.log_metrics.set(metrics);
    }

    /// How many log syncs (`fdatasync`) the log in use has made (to observe group commit).
    pub fn sync_count(&self) -> u64 {
        self.current().map_or(0, |open| open.wal.syncs())
    }
}

#[cfg(test)]
impl Store {
    /// The trees in use (the store must be open), once sled holds every acknowledged write.
    fn trees(&self) -> Trees {
        let open = self.current().expect("the store is open");
        open.wal
            .settle()
            .expect("the log applies what it acknowledged");
        open.trees.clone()
    }

    /// Every key of every tree, by tree name (to compare the whole store before and after).
    pub(crate) fn key_sets(
        &self,
    ) -> std::collections::BTreeMap<&'static str, std::collections::BTreeSet<Vec<u8>>> {
        let trees = self.trees();
        let name = |tree| match tree {
            TreeId::Bindings => keys::BINDINGS,
            TreeId::Requests => keys::REQUESTS,
            TreeId::Numbers => keys::NUMBERS,
            TreeId::Expiry => keys::EXPIRY,
            TreeId::Slots => keys::SLOTS,
            TreeId::Open => keys::OPEN,
            TreeId::Meta => keys::META,
            TreeId::Released => keys::RELEASED,
            TreeId::Remembered => keys::REMEMBERED,
            TreeId::Calls => keys::CALLS,
            TreeId::Sessions => keys::SESSIONS,
            TreeId::CallLinks => keys::CALL_LINKS,
            TreeId::Messages => keys::MESSAGES,
            TreeId::MessageIds => keys::MESSAGE_IDS,
            TreeId::Changes => keys::CHANGES,
            TreeId::Subscriptions => keys::SUBSCRIPTIONS,
        };
        TreeId::ALL
            .into_iter()
            .map(|tree| {
                let keys = trees
                    .tree(tree)
                    .iter()
                    .map(|e| e.expect("readable").0.to_vec());
                (name(tree), keys.collect())
            })
            .collect()
    }

    /// Tests: overwrites every `slots` value with bytes no build reads.
    pub(crate) fn damage_slot_values(&self) {
        let slots = self.trees().slots;
        for entry in slots.iter() {
            let (key, _) = entry.expect("readable");
            slots.insert(key, &[0xff]).expect("writable");
        }
    }

    /// See [`Wal::pause_checkpoints`].
    pub(crate) fn pause_checkpoints(&self) {
        self.current()
            .expect("the store is open")
            .wal
            .pause_checkpoints();
    }

    /// See [`Wal::prepare_spares`].
    pub(crate) fn prepare_spares(&self) {
        self.current()
            .expect("the store is open")
            .wal
            .prepare_spares();
    }

    /// See [`Wal::set_spare_headroom`].
    pub(crate) fn set_spare_headroom(&self, bytes: u64) {
        self.current()
            .expect("the store is open")
            .wal
            .set_spare_headroom(bytes);
    }
}

impl Drop for Store {
    /// A temporary store's files go once its database is closed.
    fn drop(&mut self) {
        if self.options.temporary {
            let open = self
                .current
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            drop(open);
            let _ = std::fs::remove_dir_all(&self.options.path);
        }
    }
}

/// Opens sled and the log at `options.path`: checks the format, replays the log and starts
/// the log's threads, which report a failure on `health`.
fn open_files(
    options: &StoreOptions,
    health: &watch::Sender<Health>,
    durable: &watch::Sender<u64>,
    log_metrics: &LogObserver,
) -> Result<Open, StoreError> {
    let db = open_sled(options)?;
    let trees = Trees::open(&db)?;
    let format = check_format(&trees.meta)?;
    let wal_dir = options.path.join(WAL_DIR);
    let applied = wal::recover(&db, &trees, &wal_dir)?;
    if format < FORMAT_VERSION {
        wal::discard_saved_request_keys(&wal_dir)?;
        migrate(&db, &trees, format)?;
    }
    let health = health.clone();
    let on_failure: wal::OnFailure = Arc::new(move |e: &StoreError| {
        let cause = match e {
            StoreError::Unavailable { cause, .. } => cause.clone(),
            other => other.to_string(),
        };
        health.send_replace(if e.is_disk_full() {
            Health::Full(cause)
        } else {
            Health::Failed(cause)
        });
    });
    Ok(Open {
        wal: Wal::start(
            db,
            &trees,
            &wal_dir,
            applied,
            on_failure,
            durable.clone(),
            Arc::clone(log_metrics),
        )?,
        trees,
    })
}

impl Tx<'_> {
    pub fn get_meta(&self, name: &str) -> TxResult<Option<Vec<u8>>> {
        Ok(self.meta.get(meta_key(name))?.map(|v| v.to_vec()))
    }

    pub fn put_meta(&self, name: &str, value: &[u8]) -> TxResult<()> {
        self.meta.insert(meta_key(name), value)
    }

    pub fn delete_meta(&self, name: &str) -> TxResult<()> {
        self.meta.remove(meta_key(name)).map(drop)
    }

    /// The number record under (app, number), as this transaction sees it.
    pub fn get_number(&self, app: &str, number: &str) -> TxResult<Option<NumberRecord>> {
        let Ok(key) = keys::number(app, number) else {
            return Ok(None);
        };
        self.numbers
            .get(&key)?
            .map(|value| codec::decode(keys::NUMBERS, &key, &value))
            .transpose()
    }

    /// Creates or replaces the number record under (app, number).
    pub fn put_number(&self, record: &NumberRecord) -> TxResult<()> {
        let key = keys::number(&record.app, &record.number).map_err(too_long(keys::NUMBERS))?;
        self.numbers.insert(&key, codec::encode(record))
    }

    /// Removes the number record; `Ok(false)` if there was none.
    pub fn delete_number(&self, app: &str, number: &str) -> TxResult<bool> {
        let Ok(key) = keys::number(app, number) else {
            return Ok(false);
        };
        self.numbers.remove(&key)
    }
}

/// Opens sled at the options' path, waiting up to [`LOCK_WAIT`] for its lock.
fn open_sled(options: &StoreOptions) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(&options.path)
        .cache_capacity(options.cache_capacity_bytes)
        // The write-ahead log's checkpoints flush sled; its own timer would only add work.
        .flush_every_ms(None);
    let start = Instant::now();
    let mut unfinished_removed = false;
    loop {
        match config.open() {
            Err(e) if is_lock_held(&e) => {
                if start.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::Locked {
                        path: options.path.display().to_string(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(sled::Error::Corruption { .. })
                if !unfinished_removed && remove_unfinished_snapshots(&options.path)? > 0 =>
            {
                unfinished_removed = true;
            }
            Err(sled::Error::Corruption { .. }) => {
                return Err(StoreError::Refused {
                    path: options.path.display().to_string(),
                    why: "sled's database files are damaged (sled read corrupted data); restore \
                          the directory from a backup"
                        .into(),
                });
            }
            opened => return Ok(opened?),
        }
    }
}

/// Removes the snapshot files sled was still writing when the process died
/// (`snap.<lsn>.generating`); how many. sled writes a snapshot to such a file, syncs it and
/// only then renames it to `snap.<lsn>`, removing the older snapshots after the rename, and
/// reuses none of its log before that. So an unfinished file is a torn write nobody relied on,
/// and without it sled recovers from its previous snapshot and its log. But sled 0.34 takes
/// the unfinished file for the newest snapshot when it sorts last, and refuses to open
/// ("empty/corrupt snapshot file found", then `Corruption`): a SIGKILL while it writes one is
/// enough (sled issues #1527, #1533).
///
/// Called only after an open failed with `Corruption`, which it can do only once it holds the
/// directory's lock: no live process is writing a snapshot here.
fn remove_unfinished_snapshots(path: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(0);
    };
    for entry in entries {
        let entry = entry.map_err(sled::Error::Io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(sled::Error::Io)?;
            tracing::warn!(
                file = %entry.path().display(),
                "removed a sled snapshot that was still being written when the process stopped; \
                 sled recovers from its previous snapshot and its log"
            );
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether sled refused to open because another handle holds its file lock.
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

/// Checks (or, on a new store, writes) the format version in `meta`; returns the version found,
/// which `open_files` migrates if it is older.
fn check_format(meta: &sled::Tree) -> Result<u32, StoreError> {
    match meta.get(keys::META_FORMAT)? {
        None => {
            meta.insert(keys::META_FORMAT, codec::encode(&FORMAT_VERSION))?;
            Ok(FORMAT_VERSION)
        }
        Some(value) => {
            let found: u32 = codec::decode(keys::META, keys::META_FORMAT, &value)?;
            if (OLDEST_FORMAT..=FORMAT_VERSION).contains(&found) {
                Ok(found)
            } else {
                Err(StoreError::Corrupt {
                    tree: keys::META,
                    detail: format!("store format {found}, this build reads {FORMAT_VERSION}"),
                })
            }
        }
    }
}

/// Brings a store of an older format to [`FORMAT_VERSION`], after the log's replay and before
/// the log takes writes: sled is written directly and flushed before the new version is, so a
/// migration cut short runs again whole at the next open.
///
/// 1 → 2: the retention indexes (`released`, `remembered`) for the bindings already stored.
/// 2 → 3: the `subscriptions` index for them (the call log's trees start empty).
/// 3 → 4: the `slots` entries' values.
/// 4 → 5: one retention entry per binding that left service (`released` or `remembered`), and
/// `remembered` tombstones marked as such.
fn migrate(db: &sled::Db, trees: &Trees, from: u32) -> Result<(), StoreError> {
    let retention = if from < 2 {
        retention::index_for_retention(trees)?
    } else {
        0
    };
    let subscriptions = if from < 3 {
        retention::index_subscriptions(trees)?
    } else {
        0
    };
    let slots = retention::index_slots(trees)?;
    let retention_moved = if from < 5 {
        retention::one_retention_entry(trees)?
    } else {
        0
    };
    db.flush()?;
    trees
        .meta
        .insert(keys::META_FORMAT, codec::encode(&FORMAT_VERSION))?;
    db.flush()?;
    tracing::info!(
        from,
        format = FORMAT_VERSION,
        retention,
        subscriptions,
        slots,
        retention_moved,
        "store migrated: older bindings are indexed for retention, by subscription id and by \
         the slot they hold"
    );
    Ok(())
}

/// Maps a key that cannot be encoded, on a write, to an error naming the tree.
fn too_long(tree: &'static str) -> impl Fn(keys::KeyTooLong) -> StoreError {
    move |e| StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    }
}
