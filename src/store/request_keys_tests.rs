//! The filter of the `requests` keys (the log's `request_keys`): a transaction's lookup of a
//! request id skips sled only for an id the store cannot hold, whether the id reached sled
//! before a restart (clean, with the filter saved, or not), was written while the filter was
//! being built, or after.

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

/// (filters built, whether one is in use).
fn filter(store: &Store) -> (u64, bool) {
    store.current().unwrap().wal.request_keys_filter()
}

/// Waits (10 s at most) until `done`, or fails saying `what` it waited for.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the store has built `n` filters.
fn wait_for_builds(store: &Store, n: u64) {
    wait_until(&format!("{n} filters built"), || filter(store).0 >= n);
}

/// Waits until the fault set `Once` at `point` has struck.
fn wait_until_struck(path: &Path, point: Point) {
    wait_until(&format!("the fault at {point:?}"), || {
        !faults::is_set(path, point)
    });
}

/// Writes binding `n` to the store at `dir` and closes it cleanly once a filter is in use
/// (built, or the one saved before), which saves it.
async fn write_and_close(dir: &Path, n: u8) {
    let store = open(dir);
    store.put_binding(&active(n)).await.unwrap();
    wait_until("a filter in use", || filter(&store).1);
    store.close().await.unwrap();
}

/// Writes binding `n` to the store at `dir` and drops it without closing: a crash, as far as
/// the next open can tell (the log is replayed, no filter is saved).
async fn write_and_crash(dir: &Path, n: u8) {
    let store = open(dir);
    store.put_binding(&active(n)).await.unwrap();
    drop(store);
}

/// The saved filter's file.
fn saved(dir: &Path) -> std::path::PathBuf {
    dir.join("db").join(WAL_DIR).join(wal::request_keys::FILE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_stored_before_a_crash_is_found_once_its_filter_is_built() {
    let dir = tempfile::tempdir().unwrap();
    write_and_crash(dir.path(), 1).await;
    assert!(!saved(dir.path()).exists());

    let store = open(dir.path());
    wait_for_builds(&store, 1);
    assert!(finds(&store, 1), "an id that only sled holds");
    assert!(!finds(&store, 2));
    store.put_binding(&active(2)).await.unwrap();
    assert!(finds(&store, 2), "an id written after the build");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_saves_the_filter_for_the_next_start_only() {
    let dir = tempfile::tempdir().unwrap();
    write_and_close(dir.path(), 1).await;
    assert!(saved(dir.path()).exists());

    let store = open(dir.path());
    assert_eq!(filter(&store), (0, true), "the saved filter, not a build");
    assert!(!saved(dir.path()).exists(), "taken once");
    assert!(finds(&store, 1));
    assert!(!finds(&store, 2));
    store.put_binding(&active(2)).await.unwrap();
    assert!(finds(&store, 2));
    drop(store);

    // After a crash the filter is built again, from sled.
    let store = open(dir.path());
    wait_for_builds(&store, 1);
    assert!(finds(&store, 1) && finds(&store, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_saved_at_another_record_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    write_and_close(dir.path(), 1).await;
    let old = std::fs::read(saved(dir.path())).unwrap();
    write_and_close(dir.path(), 2).await;
    // The filter saved before binding 2 was written, in place of the one saved after.
    std::fs::write(saved(dir.path()), old).unwrap();

    let store = open(dir.path());
    wait_for_builds(&store, 1);
    assert!(finds(&store, 1) && finds(&store, 2));
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
    assert_eq!(filter(&store), (0, false), "the build is still held back");
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
    write_and_crash(dir.path(), 5).await;

    let path = dir.path().join("db");
    faults::set(&path, Point::RequestKeys, Error::Io, Times::Once);
    let store = open(dir.path());
    wait_until_struck(&path, Point::RequestKeys);
    assert!(finds(&store, 5), "read from sled while no filter is built");
    wait_for_builds(&store, 1);
    assert!(finds(&store, 5));
    assert!(!finds(&store, 6));
}
