//! The filter of the `requests` keys (the log's `request_keys`): a transaction's lookup of a
//! request id skips sled only for an id the store cannot hold, whether the id reached sled
//! before a restart, was written while the filter was being built, or after.

use std::path::Path;
use std::time::{Duration, Instant};

use super::faults::{self, Error, Point, Times};
use super::tests::binding;
use super::*;

fn open(dir: &Path) -> Store {
    Store::open(&StoreOptions::new(dir.join("db"))).unwrap()
}

fn active(n: u8) -> BindingRecord {
    binding(n, BindingState::Active, None)
}

/// Whether a transaction finds binding `n` by its request id (`req-{n}`), as a Bind does.
fn finds(store: &Store, n: u8) -> bool {
    let staged = store
        .stage(|tx| tx.request_lookup("ride", &format!("req-{n}")))
        .unwrap();
    matches!(staged.value(), RequestLookup::Live(b) if b.id == active(n).id)
}

fn builds(store: &Store) -> u64 {
    store.current().unwrap().wal.request_keys_builds()
}

/// Waits (10 s at most) until the store has built `n` filters.
fn wait_for_builds(store: &Store, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while builds(store) < n {
        assert!(Instant::now() < deadline, "{} filters built", builds(store));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (10 s at most) until the fault set `Once` at `point` has struck.
fn wait_until_struck(path: &Path, point: Point) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while faults::is_set(path, point) {
        assert!(
            Instant::now() < deadline,
            "the fault at {point:?} never struck"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_stored_before_a_restart_is_found_once_its_filter_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_binding(&active(1)).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path());
    wait_for_builds(&store, 1);
    assert!(finds(&store, 1), "an id that only sled holds");
    assert!(!finds(&store, 2));
    store.put_binding(&active(2)).await.unwrap();
    assert!(finds(&store, 2), "an id written after the build");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_written_while_its_filter_is_built_is_found_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // The build reads the (empty) tree, then is held back 3 s before its filter is put in use.
    faults::stall_for(Duration::from_secs(3));
    faults::set(&path, Point::RequestKeys, Error::Stall, Times::Once);
    let store = open(dir.path());
    wait_until_struck(&path, Point::RequestKeys);

    store.put_binding(&active(3)).await.unwrap();
    assert_eq!(builds(&store), 0, "the build is still held back");
    assert!(finds(&store, 3), "read from sled meanwhile");
    wait_for_builds(&store, 1);
    assert!(
        finds(&store, 3),
        "the build's read of sled came before this write"
    );
    assert!(!finds(&store, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_cannot_read_sled_rules_nothing_out_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_binding(&active(5)).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let path = dir.path().join("db");
    faults::set(&path, Point::RequestKeys, Error::Io, Times::Once);
    let store = open(dir.path());
    wait_until_struck(&path, Point::RequestKeys);
    assert!(finds(&store, 5), "read from sled while no filter is built");
    wait_for_builds(&store, 1);
    assert!(finds(&store, 5));
    assert!(!finds(&store, 6));
}
