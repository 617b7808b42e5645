//! A failed write (a full or failing disk, injected through [`faults`]) refuses every later
//! write with `Unavailable`, is reported on [`Store::health`], and [`Store::recover`] brings the
//! store back with every record that was staged, acknowledged or not; stopping instead keeps
//! every acknowledged one.

use std::path::Path;
use std::time::Duration;

use super::faults::{self, Error, Point, Times};
use super::tests::binding;
use super::*;

fn open(dir: &Path) -> Store {
    Store::open(&StoreOptions::new(dir.join("db"))).unwrap()
}

fn active(n: u8) -> BindingRecord {
    binding(n, BindingState::Active, None)
}

fn present(store: &Store, n: u8) -> bool {
    store.get_binding(&active(n).id).unwrap().is_some()
}

/// Stalls sled's apply (when `times` says) for 3 s: a disk that stops answering for long
/// enough to observe, then answers again.
fn stall_sled_apply(path: &Path, times: Times) {
    faults::stall_for(Duration::from_secs(3));
    faults::set(path, Point::SledApply, Error::Stall, times);
}

fn assert_health(store: &Store, error: Error) {
    let health = store.health().borrow().clone();
    match error {
        Error::Full => assert!(matches!(health, Health::Full(_)), "{health:?}"),
        Error::Io => assert!(matches!(health, Health::Failed(_)), "{health:?}"),
        Error::Stall => assert!(health.is_writable(), "{health:?}"),
    }
}

fn assert_unavailable(e: &StoreError, error: Error) {
    assert!(
        matches!(e, StoreError::Unavailable { full, .. } if *full == (error == Error::Full)),
        "{e:?}"
    );
}

/// Binding 1 is acknowledged; then `point` fails until cleared: binding 2's write fails, a
/// third is refused without being written, recovery fails while the fault lasts and succeeds
/// after, with binding 2 written again; everything survives a clean reopen.
async fn fails_then_recovers(point: Point, error: Error) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    store.put_binding(&active(1)).await.unwrap();

    faults::set(&path, point, error, Times::Always);
    assert_unavailable(&store.put_binding(&active(2)).await.unwrap_err(), error);
    assert_health(&store, error);
    assert_unavailable(&store.put_binding(&active(3)).await.unwrap_err(), error);
    assert!(
        store.recover().await.is_err(),
        "recovery succeeds only once the disk works"
    );
    assert_health(&store, error);

    faults::clear(&path);
    assert_eq!(
        recovers_with_1_and_2(store, dir.path()).await,
        1,
        "binding 2 is kept"
    );
}

/// Once the disk works: recovery succeeds (its count is returned) with bindings 1 and 2 and
/// without 3, the store takes writes again, and all of it survives a clean reopen.
async fn recovers_with_1_and_2(store: Store, dir: &Path) -> usize {
    let kept = store.recover().await.unwrap();
    assert!(store.health().borrow().is_writable());
    assert!(present(&store, 1) && present(&store, 2) && !present(&store, 3));
    store.put_binding(&active(4)).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = open(dir);
    for (n, kept) in [(1, true), (2, true), (3, false), (4, true)] {
        assert_eq!(present(&store, n), kept, "binding {n}");
    }
    kept
}

#[tokio::test]
async fn a_full_disk_at_the_log_write_is_recovered() {
    fails_then_recovers(Point::LogWrite, Error::Full).await;
}

#[tokio::test]
async fn a_failed_log_sync_is_recovered() {
    fails_then_recovers(Point::LogSync, Error::Io).await;
}

/// A write is answered once its record is on disk, while sled applies it after (here held up
/// by a stalled apply): a plain read made after the answer waits for that apply, and so never
/// misses the write; the expiry round's unsettled reads do not wait.
#[tokio::test]
async fn a_read_after_an_acknowledged_write_waits_for_sled_to_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    store.put_binding(&active(1)).await.unwrap();
    store.settled().await.unwrap(); // the stall is for binding 2's apply

    stall_sled_apply(&path, Times::Once);
    store.put_binding(&active(2)).await.unwrap();
    assert_eq!(
        store.peek_binding(&active(2).id).unwrap(),
        None,
        "answered before sled holds it (the apply is stalled)"
    );
    assert_eq!(
        store.get_binding(&active(2).id).unwrap(),
        Some(active(2)),
        "the read waited for the apply"
    );
    assert!(store.health().borrow().is_writable());
    store.close().await.unwrap();
}

/// `LogRecord::applied` waits until sled holds that write, and not for writes synced after it:
/// an expiry batch whose own apply is done goes on while a later batch's apply is under way
/// (here stalled), where `Store::settled` waits for every write synced so far.
#[tokio::test]
async fn a_write_applied_is_not_held_up_by_a_later_writes_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    let first = store
        .stage(|tx| tx.put_binding(&active(1)))
        .expect("staged")
        .log_record()
        .expect("a write of the local log");
    // Its record is synced and applied with this write's.
    store.put_binding(&active(2)).await.unwrap();
    store.settled().await.unwrap();

    stall_sled_apply(&path, Times::Once);
    store.put_binding(&active(3)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), first.applied())
        .await
        .expect("waited for the later write's stalled apply")
        .unwrap();
    assert_eq!(
        store.peek_binding(&active(3).id).unwrap(),
        None,
        "the later write's apply is still stalled"
    );
    store.settled().await.unwrap();
    assert!(present(&store, 3));
    store.close().await.unwrap();
}

/// The applier publishes its progress record by record (a chunk of some hundred changes at a
/// time), not once per round: of two large writes it takes in one round, the first's
/// `LogRecord::applied` returns while the second's apply is under way (here stalled). So an
/// expiry round waiting for its oldest batch stages the next while the applier goes on with
/// the batches queued behind it.
#[tokio::test]
async fn a_write_applied_goes_on_before_the_rest_of_its_apply_round() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    // With a deadline, each binding is 4 changes (record, request, slot, deadline).
    let large = |from: u8| -> Vec<BindingRecord> {
        (from..from + 65)
            .map(|n| binding(n, BindingState::Active, Some(1_000_000 + i64::from(n))))
            .collect()
    };
    let put_all = |batch: Vec<BindingRecord>| {
        let staged = store
            .stage(|tx| batch.iter().try_for_each(|b| tx.put_binding(b)))
            .expect("staged");
        let changes = store.last_staged().len();
        assert!(
            changes > wal::INLINE_APPLY_OPS,
            "a write the applier takes: {changes}"
        );
        staged
    };

    // The first write's apply is stalled, so that the next two are queued behind it and
    // taken in one round.
    stall_sled_apply(&path, Times::Once);
    put_all(large(1)).await.unwrap();
    while faults::is_set(&path, Point::SledApply) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let second = put_all(large(66));
    let record = second.log_record().expect("a write of the local log");
    second.await.unwrap();
    put_all(large(131)).await.unwrap();
    // The round after the stall applies the second write, then stalls before the third.
    stall_sled_apply(&path, Times::After(1));

    tokio::time::timeout(Duration::from_secs(20), record.applied())
        .await
        .expect("the second write was applied")
        .unwrap();
    assert_eq!(
        store.peek_binding(&active(131).id).unwrap(),
        None,
        "the second write's apply was announced before the third's (stalled) was done"
    );
    store.settled().await.unwrap();
    assert!(present(&store, 195));
    faults::clear(&path);
    store.close().await.unwrap();
}

/// sled is applied to on a thread of its own: a write is answered once its record is on disk
/// even while the apply of a large write before it (an expiry batch's) is held up (here
/// stalled), so a Bind never waits behind the applies of an expiry batch. (Were the applies
/// made between the syncs, the second write would be answered only once the first is in sled.)
#[tokio::test]
async fn a_write_is_answered_while_an_earlier_apply_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    stall_sled_apply(&path, Times::Once);
    let batch: Vec<BindingRecord> = (101..=200).map(active).collect();
    let staged = store
        .stage(|tx| batch.iter().try_for_each(|b| tx.put_binding(b)))
        .unwrap();
    let changes = store.last_staged().len();
    assert!(
        changes > wal::INLINE_APPLY_OPS,
        "a write the applier takes: {changes}"
    );
    staged.await.unwrap();
    store.put_binding(&active(201)).await.unwrap();
    assert_eq!(
        store.peek_binding(&active(101).id).unwrap(),
        None,
        "the last write was answered while the large one's apply was stalled"
    );
    assert_eq!(
        store.get_binding(&active(101).id).unwrap(),
        Some(active(101))
    );
    assert_eq!(
        store.get_binding(&active(201).id).unwrap(),
        Some(active(201))
    );
    assert!(store.health().borrow().is_writable());
    store.close().await.unwrap();
}

/// A write is acknowledged once its record is on disk, before sled holds it: when sled then
/// fails, the write stays acknowledged, a read refuses rather than miss it, and recovery
/// brings it into sled from the log.
#[tokio::test]
async fn a_failed_sled_apply_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    let mut health = store.health();
    store.put_binding(&active(1)).await.unwrap();
    store.settled().await.unwrap(); // the fault is for binding 2's apply

    faults::set(&path, Point::SledApply, Error::Io, Times::Always);
    store.put_binding(&active(2)).await.unwrap();
    // The apply after the acknowledgement fails the store.
    tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(|h| !h.is_writable()),
    )
    .await
    .expect("the failed apply is reported")
    .unwrap();
    assert_health(&store, Error::Io);
    let read = store.get_binding(&active(2).id);
    assert!(
        matches!(read, Err(StoreError::Unavailable { full: false, .. })),
        "a read refuses rather than miss an acknowledged write: {read:?}"
    );
    assert_unavailable(&store.put_binding(&active(3)).await.unwrap_err(), Error::Io);
    assert!(
        store.recover().await.is_err(),
        "recovery succeeds only once the disk works"
    );
    faults::clear(&path);
    recovers_with_1_and_2(store, dir.path()).await;
}

#[tokio::test]
async fn a_failed_segment_rotation_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    faults::set(&path, Point::LogCreate, Error::Full, Times::Always);
    // Segments are tiny in tests: writing past one makes the flusher start the next.
    let mut n = 0;
    let failed = loop {
        n += 1;
        assert!(n < 200, "the log never rotated");
        if let Err(e) = store.put_binding(&active(n)).await {
            break e;
        }
    };
    assert_unavailable(&failed, Error::Full);
    assert!(store.recover().await.is_err(), "no segment can be created");
    faults::clear(&path);
    store.recover().await.unwrap();
    // The last one was refused (not written), or written and kept: it was not acknowledged.
    for i in 1..n {
        assert!(present(&store, i), "binding {i}");
    }
}

#[tokio::test]
async fn a_failed_checkpoint_stops_writes_until_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    let mut health = store.health();
    store.put_binding(&active(1)).await.unwrap();
    faults::set(&path, Point::Checkpoint, Error::Io, Times::Once);
    // The checkpointer runs every second and finds a record to checkpoint.
    tokio::time::timeout(Duration::from_secs(10), health.changed())
        .await
        .expect("the failed checkpoint is reported")
        .unwrap();
    assert_health(&store, Error::Io);
    assert_unavailable(&store.put_binding(&active(2)).await.unwrap_err(), Error::Io);
    store.recover().await.unwrap();
    store.put_binding(&active(3)).await.unwrap();
    assert!(present(&store, 1) && !present(&store, 2) && present(&store, 3));
}

/// A write staged and dropped unawaited (still buffered) when the log fails is written again by
/// recovery too: the in-memory state its writer built on it stays true.
#[tokio::test]
async fn unawaited_writes_are_kept_through_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    drop(store.stage(|tx| tx.put_binding(&active(1))).unwrap());
    faults::set(&path, Point::LogSync, Error::Full, Times::Once);
    assert_unavailable(
        &store.put_binding(&active(2)).await.unwrap_err(),
        Error::Full,
    );
    assert_eq!(store.recover().await.unwrap(), 2);
    assert!(present(&store, 1) && present(&store, 2));
}

/// Stopping while failed (the process exits or is killed) keeps every acknowledged write; the
/// failed batch, half written, is a torn tail and the store opens without it.
#[tokio::test]
async fn a_store_left_failed_reopens_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = store.path().to_path_buf();
    for n in 1..=3 {
        store.put_binding(&active(n)).await.unwrap();
    }
    faults::set(&path, Point::LogWrite, Error::Full, Times::Once);
    assert!(store.put_binding(&active(4)).await.is_err());
    assert!(store.close().await.is_err(), "a failed store keeps its log");
    drop(store);

    let store = open(dir.path());
    assert!((1..=3).all(|n| present(&store, n)));
    assert!(!present(&store, 4), "never acknowledged");
    store.put_binding(&active(5)).await.unwrap();
    assert!(present(&store, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_riding_write_hears_of_the_failed_sync_it_rode() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    let rider = {
        let staged = store.stage(|tx| tx.put_binding(&active(1))).unwrap();
        tokio::spawn(staged.ride())
    };
    faults::set(store.path(), Point::LogSync, Error::Io, Times::Always);
    assert_unavailable(&store.put_binding(&active(2)).await.unwrap_err(), Error::Io);
    let rode = tokio::time::timeout(Duration::from_secs(10), rider).await;
    let e = rode.expect("the rider is answered").unwrap().unwrap_err();
    assert_unavailable(&e, Error::Io);
}
