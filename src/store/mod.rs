//! The sled store: bindings, their indexes, and the number pool, on one sled database.
//!
//! Trees (key layouts in [`keys`], values behind a version byte in [`codec`]):
//! - `bindings`: every [`BindingRecord`] by id (UUID v7, so creation order);
//! - `requests`: (app, request_id) → binding id, for idempotent Binds;
//! - `expiry`: (deadline, id) for Active bindings with a deadline, earliest first;
//! - `numbers`: every [`NumberRecord`] by (app, number);
//! - `meta`: the store's format version.
//!
//! `bindings`, `requests` and `expiry` change together only, in one sled transaction
//! (`Store::transact`), so the indexes always agree with the records. The synchronous methods are
//! short blocking sled calls. Durability is separate: sled writes reach disk on its own timer or
//! when [`Store::flush`] resolves, which batches concurrent callers into one `db.flush()`
//! (group commit, see `flusher`).

mod bindings;
mod codec;
mod error;
mod flusher;
pub mod keys;
pub mod records;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::StoreError;
pub use records::*;

use flusher::Flusher;

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
    /// `bindings` tree: id → `BindingRecord`. Lives as long as the `Store`.
    bindings: sled::Tree,
    /// `requests` tree: (app, request_id) → id. Changed only inside `transact`.
    requests: sled::Tree,
    /// `numbers` tree: (app, number) → `NumberRecord`.
    numbers: sled::Tree,
    /// `expiry` tree: (deadline, id) → empty. Changed only inside `transact`.
    expiry: sled::Tree,
    /// `slots` tree: (app, x, id) → empty for bindings holding a slot. Changed only inside
    /// `transact`.
    slots: sled::Tree,
    /// `open` tree: id → empty for PENDING and RELEASING bindings. Changed only inside
    /// `transact`.
    open: sled::Tree,
    /// `meta` tree: format version, job progress.
    meta: sled::Tree,
    /// Handle on the group-commit thread, which owns the sled database handle (the trees hold
    /// theirs): `close` stops it, dropping the `Store` lets it finish and end; sled closes when
    /// both it and the trees are gone.
    flusher: Flusher,
    path: PathBuf,
}

/// Job-owned `meta` keys live under `job/`, apart from the store's own `format`.
fn meta_key(name: &str) -> Vec<u8> {
    [b"job/".as_slice(), name.as_bytes()].concat()
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("bindings", &self.bindings.len())
            .field("numbers", &self.numbers.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating) the store and starts its flusher thread.
    pub fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_capacity_bytes)
            .temporary(options.temporary)
            .open()?;
        let meta = db.open_tree(keys::META)?;
        check_format(&meta)?;
        Ok(Store {
            bindings: db.open_tree(keys::BINDINGS)?,
            requests: db.open_tree(keys::REQUESTS)?,
            numbers: db.open_tree(keys::NUMBERS)?,
            expiry: db.open_tree(keys::EXPIRY)?,
            slots: db.open_tree(keys::SLOTS)?,
            open: db.open_tree(keys::OPEN)?,
            meta,
            flusher: Flusher::spawn(db),
            path: options.path.clone(),
        })
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
        Ok(self.meta.get(meta_key(name))?.map(|v| v.to_vec()))
    }

    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(meta_key(name), value)?;
        Ok(())
    }

    pub fn delete_meta(&self, name: &str) -> Result<(), StoreError> {
        self.meta.remove(meta_key(name))?;
        Ok(())
    }

    /// The sled directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates or replaces the number record under (app, number).
    pub fn put_number(&self, record: &NumberRecord) -> Result<(), StoreError> {
        let key = keys::number(&record.app, &record.number).map_err(too_long(keys::NUMBERS))?;
        self.numbers
            .insert(key, codec::encode(codec::CURRENT_VERSION, record))?;
        Ok(())
    }

    pub fn get_number(&self, app: &str, number: &str) -> Result<Option<NumberRecord>, StoreError> {
        // A key too long to encode was never stored.
        let Ok(key) = keys::number(app, number) else {
            return Ok(None);
        };
        self.numbers
            .get(&key)?
            .map(|value| codec::decode(keys::NUMBERS, &key, &value))
            .transpose()
    }

    /// Removes the number record; `Ok(false)` if there was none.
    pub fn delete_number(&self, app: &str, number: &str) -> Result<bool, StoreError> {
        let Ok(key) = keys::number(app, number) else {
            return Ok(false);
        };
        Ok(self.numbers.remove(key)?.is_some())
    }

    /// All numbers of one app in number order (prefix scan), or of all apps with `None` (grouped
    /// by app). Order is by (byte length, bytes), i.e. numeric for canonical digit strings.
    pub fn numbers(&self, app: Option<&str>) -> Result<Vec<NumberRecord>, StoreError> {
        let entries = match app {
            None => self.numbers.iter(),
            Some(app) => match keys::number_prefix(app) {
                Ok(prefix) => self.numbers.scan_prefix(prefix),
                Err(_) => return Ok(Vec::new()),
            },
        };
        entries
            .map(|entry| {
                let (key, value) = entry?;
                codec::decode(keys::NUMBERS, &key, &value)
            })
            .collect()
    }

    /// Durability: resolves after a `db.flush()` that started after this call (group commit).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush().await
    }

    /// Flushes a last time and stops the flusher; later `flush` calls fail with `Closed`.
    /// Closing twice is a no-op. The synchronous methods keep working (sled still flushes on its
    /// own timer), but nothing is durable on demand any more.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.flusher.close().await
    }

    /// How many `db.flush()` calls the flusher has made (to observe group commit).
    pub fn flush_count(&self) -> u64 {
        self.flusher.count()
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
