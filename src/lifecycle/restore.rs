//! Start-up: every app's allocation index (in X mode, the calls' routes too), rebuilt from the
//! store.
//!
//! The index needs, of each binding, only the slot it holds (X, extension, Y, parties) or, for a
//! binding released within its cool-down, the slot that is cooling. The `slots` index holds the
//! first in small values (`store::SlotRecord`) and the `released` index finds the second, so the
//! usual way decodes no other binding record: with a million live bindings, decoding every
//! record was most of the start-up time.
//!
//! A `slots` entry is written in the transaction that writes its record, and so reaches sled
//! with it, or is replayed with it from the log after a crash: it is never older or newer than
//! the record. Should an entry be unreadable all the same, the index is rebuilt from every
//! record instead, and the log says why.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::app::AppPool;
use super::error::PoolError;
use crate::store::{Store, StoreError};

/// Rebuilds the index of every app in `apps` (each holding its numbers already) as of `now_ms`,
/// from the `slots` index, or if that cannot be read, from every record.
pub(super) fn restore(
    store: &Store,
    apps: &HashMap<String, Arc<AppPool>>,
    now_ms: i64,
) -> Result<(), PoolError> {
    begin(apps);
    reserve(store, apps);
    if let Err(e) = from_slots(store, apps, now_ms) {
        tracing::warn!(
            error = %e,
            "cannot rebuild the allocation index from the slots index; rebuilding it from every \
             binding record instead"
        );
        for app in apps.values() {
            app.reset_index()?;
        }
        begin(apps);
        from_records(store, apps)?;
    }
    end(apps);
    Ok(())
}

/// Tests: [`restore`] the slow way, from every record.
#[cfg(test)]
pub(super) fn from_every_record(
    store: &Store,
    apps: &HashMap<String, Arc<AppPool>>,
    _now_ms: i64,
) -> Result<(), PoolError> {
    begin(apps);
    from_records(store, apps)?;
    end(apps);
    Ok(())
}

fn begin(apps: &HashMap<String, Arc<AppPool>>) {
    for app in apps.values() {
        app.begin_restore();
    }
}

fn end(apps: &HashMap<String, Arc<AppPool>>) {
    for app in apps.values() {
        app.end_restore();
    }
}

/// The bindings holding a slot from their `slots` entries, then the bindings released within
/// the longest cool-down of any app (each app keeps those within its own).
fn from_slots(
    store: &Store,
    apps: &HashMap<String, Arc<AppPool>>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
    let mut last: Option<&Arc<AppPool>> = None;
    let slots = store.for_each_slot(|app, x, id, slot| {
        let pool = match last {
            Some(pool) if pool.name() == app => Some(pool),
            _ => apps.get(app),
        };
        match pool {
            Some(pool) => {
                pool.restore_slot(x, id, &slot);
                last = Some(pool);
            }
            None => *unknown.entry(app.to_owned()).or_default() += 1,
        }
    })?;
    for (app, bindings) in unknown {
        tracing::warn!(
            app,
            bindings,
            "live bindings of an app no longer configured"
        );
    }
    let window = apps.values().map(|a| a.cool_down_kept_ms()).max();
    let cooling = store.released_since(now_ms.saturating_sub(window.unwrap_or(0)))?;
    for record in &cooling {
        if let Some(app) = apps.get(&record.app) {
            app.restore(record);
        }
    }
    tracing::info!(
        slots,
        released = cooling.len(),
        "allocation index rebuilt from the slots index"
    );
    Ok(())
}

/// Every binding record, decoded.
fn from_records(store: &Store, apps: &HashMap<String, Arc<AppPool>>) -> Result<(), StoreError> {
    let mut read = 0usize;
    for record in store.scan_bindings() {
        let record = record?;
        read += 1;
        match apps.get(&record.app) {
            Some(app) => app.restore(&record),
            None => {
                tracing::warn!(app = %record.app, id = %record.id, "binding of an app no longer configured")
            }
        }
    }
    tracing::info!(
        bindings = read,
        "allocation index rebuilt from every binding record"
    );
    Ok(())
}

/// How large an app's biggest table was at its last clean stop: a hint that lets start-up
/// size it once instead of growing it step by step (rehashing millions of entries). A wrong or
/// missing hint costs time, never a wrong answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TableSizes {
    /// Parties holding one X (`alloc::Index::single_parties`).
    pub parties: u64,
}

impl TableSizes {
    fn encode(self) -> [u8; 8] {
        self.parties.to_be_bytes()
    }

    /// Also reads the hint of a build that kept X-mode routes in a table of their own: 16
    /// bytes, the parties first.
    fn decode(bytes: &[u8]) -> Option<TableSizes> {
        let (parties, _) = bytes.split_first_chunk::<8>()?;
        Some(TableSizes {
            parties: u64::from_be_bytes(*parties),
        })
    }
}

/// The `meta` entry of an app's [`TableSizes`].
fn sizes_key(app: &str) -> String {
    format!("restore/sizes/{app}")
}

/// Notes every app's [`TableSizes`], for the next start-up (at a clean stop).
pub(super) async fn note_sizes(
    store: &Store,
    apps: &HashMap<String, Arc<AppPool>>,
) -> Result<(), StoreError> {
    let sizes: Vec<(String, [u8; 8])> = apps
        .values()
        .map(|app| (sizes_key(app.name()), app.table_sizes().encode()))
        .collect();
    store
        .commit(|tx| {
            sizes
                .iter()
                .try_for_each(|(key, value)| tx.put_meta(key, value))
        })
        .await
}

/// Sizes every app's tables as its [`TableSizes`] say, where they were noted.
fn reserve(store: &Store, apps: &HashMap<String, Arc<AppPool>>) {
    for app in apps.values() {
        let noted = store.get_meta(&sizes_key(app.name()));
        if let Some(sizes) = noted.ok().flatten().and_then(|v| TableSizes::decode(&v)) {
            app.make_room(sizes);
        }
    }
}
