//! The sled store: bindings, their indexes, and the number pool, on one sled database.
//!
//! Trees (key layouts in [`keys`], values behind a version byte in [`codec`]):
//! - `bindings`: every [`BindingRecord`] by id (UUID v7, so creation order);
//! - `requests`: (app, request_id) → binding id, for idempotent Binds;
//! - `expiry`: (deadline, id) for Active bindings with a deadline, earliest first;
//! - `slots`: (app, x, id) for bindings holding a slot; `open`: PENDING and RELEASING ids;
//! - `numbers`: every [`NumberRecord`] by (app, number);
//! - `meta`: the store's format version and job progress.
//!
//! Every write goes through `Store::transact` (see `tx`) and becomes one write-ahead-log record,
//! so a record and its index entries change together, in crashes too. Reads see every write at
//! once (through the log's overlay of changes not yet in sled). The synchronous methods are
//! short blocking calls. Durability is separate: [`Store::flush`] resolves once every write made
//! before it is on disk in the log (group commit, see `wal`); sled gets the changes after that,
//! and is flushed in the background and on close.

mod bindings;
mod codec;
mod error;
pub mod keys;
mod overlay;
pub mod records;
#[cfg(test)]
mod tests;
mod tx;
mod wal;

use std::ops::Bound;
use std::path::{Path, PathBuf};

pub use error::StoreError;
pub use records::*;

use overlay::{Merged, Range};
use tx::{Trees, Tx, TxResult};
use wal::{TreeId, Wal};

/// Default sled page-cache size: 64 MiB (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// On-disk format of the whole store, kept in `meta`; bump it with a migration.
const FORMAT_VERSION: u32 = 1;

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

/// The open store. `Send + Sync`: share it as `Arc<Store>`.
pub struct Store {
    /// The sled trees; written only through `transact`.
    trees: Trees,
    /// The write-ahead log: its lock orders writes, its threads make them durable. `close`
    /// stops it; dropping the `Store` lets its threads finish and end, and sled closes when
    /// they and the trees are gone.
    wal: Wal,
    path: PathBuf,
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
            .field("path", &self.path)
            .field("bindings", &self.trees.bindings.len())
            .field("numbers", &self.trees.numbers.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating) the store, replays its write-ahead log and starts the log's threads.
    pub fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_capacity_bytes)
            .temporary(options.temporary)
            // The write-ahead log's checkpoints flush sled; its own timer would only add work.
            .flush_every_ms(None)
            .open()?;
        let trees = Trees::open(&db)?;
        check_format(&trees.meta)?;
        let wal_dir = options.path.join(WAL_DIR);
        wal::recover(&db, &trees, &wal_dir)?;
        Ok(Store {
            wal: Wal::start(db, &trees, &wal_dir)?,
            trees,
            path: options.path.clone(),
        })
    }

    /// The one way to change the trees: `f` runs once under the log's lock, reading through a
    /// [`Tx`] (its own changes, then pending ones, then sled), and what it changed becomes one
    /// log record (see `wal`). If `f` fails, nothing is written.
    fn transact<T>(&self, f: impl FnOnce(&Tx<'_>) -> TxResult<T>) -> Result<T, StoreError> {
        let mut log = self.wal.writer()?;
        let (out, ops) = self.trees.transact(log.pending(), f)?;
        if !ops.is_empty() {
            log.append(ops);
        }
        Ok(out)
    }

    /// The current value of `key`: a pending change if there is one, else sled's.
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        match self.wal.pending_get(tree, key) {
            Some(value) => Ok(value.map(sled::IVec::from)),
            None => Ok(self.trees.tree(tree).get(key)?),
        }
    }

    /// The current entries of `range` in key order: sled's merged with pending changes. The
    /// pending ones are read first, so a change applied to sled meanwhile is seen either way.
    fn scan(&self, tree: TreeId, range: Range) -> Merged<sled::Iter> {
        let pending = self.wal.pending_range(tree, &range);
        Merged::new(self.trees.tree(tree).range(range), pending)
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

    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = meta_key(name);
        self.transact(|tx| tx.meta.insert(&key, value))
    }

    pub fn delete_meta(&self, name: &str) -> Result<(), StoreError> {
        let key = meta_key(name);
        self.transact(|tx| tx.meta.remove(&key).map(drop))
    }

    /// The sled directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates or replaces the number record under (app, number).
    pub fn put_number(&self, record: &NumberRecord) -> Result<(), StoreError> {
        let key = keys::number(&record.app, &record.number).map_err(too_long(keys::NUMBERS))?;
        let value = codec::encode(codec::CURRENT_VERSION, record);
        self.transact(|tx| tx.numbers.insert(&key, &value))
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
    pub fn delete_number(&self, app: &str, number: &str) -> Result<bool, StoreError> {
        let Ok(key) = keys::number(app, number) else {
            return Ok(false);
        };
        self.transact(|tx| tx.numbers.remove(&key))
    }

    /// All numbers of one app in number order (prefix scan), or of all apps with `None` (grouped
    /// by app). Order is by (byte length, bytes), i.e. numeric for canonical digit strings.
    pub fn numbers(&self, app: Option<&str>) -> Result<Vec<NumberRecord>, StoreError> {
        let range = match app {
            None => (Bound::Unbounded, Bound::Unbounded),
            Some(app) => match keys::number_prefix(app) {
                Ok(prefix) => overlay::prefix_range(&prefix),
                Err(_) => return Ok(Vec::new()),
            },
        };
        let entries = self.scan(TreeId::Numbers, range);
        entries
            .map(|entry| {
                let (key, value) = entry?;
                codec::decode(keys::NUMBERS, &key, &value)
            })
            .collect()
    }

    /// Durability: resolves once every write made before this call is on disk (group commit:
    /// concurrent callers share one log sync).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.wal.flush().await
    }

    /// Makes every write durable, stops the log's threads, flushes sled and empties the log.
    /// Later writes and flushes fail with `Closed` (reads keep working); closing twice is a
    /// no-op.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.wal.close().await
    }

    /// How many log syncs (`fdatasync`) have been made (to observe group commit).
    pub fn flush_count(&self) -> u64 {
        self.wal.syncs()
    }
}

/// Checks (or, on a new store, writes) the format version in `meta`.
fn check_format(meta: &sled::Tree) -> Result<(), StoreError> {
    match meta.get(keys::META_FORMAT)? {
        None => {
            meta.insert(
                keys::META_FORMAT,
                codec::encode(codec::CURRENT_VERSION, &FORMAT_VERSION),
            )?;
            Ok(())
        }
        Some(value) => {
            let found: u32 = codec::decode(keys::META, keys::META_FORMAT, &value)?;
            if found == FORMAT_VERSION {
                Ok(())
            } else {
                Err(StoreError::Corrupt {
                    tree: keys::META,
                    detail: format!("store format {found}, this build reads {FORMAT_VERSION}"),
                })
            }
        }
    }
}

/// Maps a key that cannot be encoded, on a write, to an error naming the tree.
fn too_long(tree: &'static str) -> impl Fn(keys::KeyTooLong) -> StoreError {
    move |e| StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    }
}
