//! Group commit and crash recovery through the write-ahead log.
//!
//! A crash is staged by copying files: sled's directory as it was at one moment, with the log as
//! it was later (sled is never ahead of the log: a change reaches sled only once its record is
//! on disk).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::record::{self, MAGIC, Op, TreeId};
use crate::store::tests::{binding, id, number, put};
use crate::store::{BindingState, Store, StoreError, StoreOptions};

fn options(dir: &Path) -> StoreOptions {
    StoreOptions::new(dir.join("db"))
}

/// Copies the files of directory `from` into `to` (created), recursively.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces the store at `dir` with sled's files from `sled_copy` and the log from `wal_copy`.
pub(crate) fn stage_crash(dir: &Path, sled_copy: &Path, wal_copy: &Path) {
    let db = dir.join("db");
    std::fs::remove_dir_all(&db).unwrap();
    copy_dir(sled_copy, &db);
    std::fs::remove_dir_all(db.join("wal")).unwrap();
    copy_dir(wal_copy, &db.join("wal"));
}

/// Bytes in the log's directory, but for the filter of request ids a clean close saves there.
fn log_bytes(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("db").join("wal"))
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.file_name() != super::request_keys::FILE)
        .map(|e| e.metadata().unwrap().len() as usize)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_few_syncs() {
    let store = Arc::new(Store::open_temporary().unwrap());
    let calls: Vec<_> = (0..200)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .put_number(&number("ride", &format!("+86138{n:08}")))
                    .await
            })
        })
        .collect();
    let all = async {
        for call in calls {
            call.await.unwrap().unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("commits hung");
    assert_eq!(store.numbers(Some("ride")).unwrap().len(), 200);
    let syncs = store.sync_count();
    assert!((1..50).contains(&syncs), "{syncs} syncs for 200 commits");
}

/// Writers answered during a round (as soon as sled holds their record, not once the whole
/// round is applied) still see their own write in a plain read the moment they are answered,
/// and so does every writer before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_answered_during_its_round_reads_its_write_and_every_earlier_one() {
    let store = Arc::new(Store::open_temporary().unwrap());
    // Staged in one go, so that they share rounds: each a record of its own, in order.
    let staged: Vec<_> = (0..300)
        .map(|n| {
            store
                .stage(|tx| tx.put_meta(&format!("job/{n:03}"), b"v"))
                .unwrap()
        })
        .collect();
    let calls: Vec<_> = staged
        .into_iter()
        .enumerate()
        .map(|(n, staged)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                staged.await.unwrap();
                // Everything staged before this write is durable and in sled as well.
                for earlier in (0..=n).rev().take(5) {
                    let key = format!("job/{earlier:03}");
                    assert!(
                        store.get_meta(&key).unwrap().is_some(),
                        "{key} unreadable once job/{n:03} was answered"
                    );
                }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert!(store.sync_count() < 300, "the writes shared rounds");
}

#[tokio::test]
async fn a_write_costs_one_sync_and_a_transaction_that_writes_nothing_none() {
    let store = Store::open_temporary().unwrap();
    let seen = store.commit(|tx| tx.get_number("ride", "+8613")).await;
    assert_eq!(seen.unwrap(), None);
    assert_eq!(store.sync_count(), 0, "nothing written, nothing to sync");
    store.put_number(&number("ride", "+8613")).await.unwrap();
    assert_eq!(store.sync_count(), 1);
    // A write that changes nothing (removing what is absent) is not logged.
    assert!(!store.delete_number("ride", "+8699").await.unwrap());
    assert_eq!(store.sync_count(), 1);
}

#[tokio::test]
async fn reads_see_only_durable_writes_and_transactions_see_staged_ones() {
    let store = Store::open_temporary().unwrap();
    let staged = store
        .stage(|tx| tx.put_binding(&binding(1, BindingState::Active, Some(9_000))))
        .unwrap();
    // Staged, not yet durable (in tests the flusher writes only for a waiter): plain reads do
    // not see it, sled does not hold it, a transaction does see it.
    assert!(store.get_binding(&id(1)).unwrap().is_none());
    assert_eq!(store.due_bindings(i64::MAX, 10).unwrap(), []);
    assert!(store.trees().bindings.is_empty() && store.trees().expiry.is_empty());
    let in_tx = store.stage(|tx| tx.get_binding(&id(1))).unwrap();
    assert!(in_tx.value().is_some(), "the next transaction builds on it");
    staged.await.unwrap();
    assert!(store.get_binding(&id(1)).unwrap().is_some());
    // The plain read above waited for sled to hold it; the expiry scan does not wait.
    assert_eq!(store.due_bindings(i64::MAX, 10).unwrap(), [id(1)]);
    assert_eq!(store.trees().bindings.len(), 1, "applied once durable");
    in_tx.await.unwrap();
    // A removal is likewise invisible until it is durable.
    let removal = store.stage(|tx| tx.delete_binding(&id(1))).unwrap();
    assert_eq!(removal.value(), &true);
    assert!(store.get_binding(&id(1)).unwrap().is_some());
    assert!(removal.await.unwrap());
    assert!(store.get_binding(&id(1)).unwrap().is_none());
    assert_eq!(store.scan_bindings().count(), 0);
}

#[tokio::test]
async fn a_failed_transaction_writes_nothing() {
    let store = Store::open_temporary().unwrap();
    let failed: Result<(), StoreError> = store
        .commit(|tx| {
            tx.put_number(&number("ride", "+8601"))?;
            Err(StoreError::Conflict("changed my mind".into()))
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))));
    store.put_number(&number("ride", "+8602")).await.unwrap();
    assert_eq!(number_names(&store, "ride"), ["+8602"]);
}

#[tokio::test]
async fn close_empties_the_log_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&options(dir.path())).unwrap();
    put(&store, 1, BindingState::Active, Some(5_000)).await;
    assert!(log_bytes(dir.path()) > MAGIC.len());
    store.close().await.unwrap();
    assert_eq!(log_bytes(dir.path()), 0, "a closed store leaves no log");
    assert!(matches!(
        store.put_number(&number("ride", "+8613")).await,
        Err(StoreError::Closed)
    ));
    store.close().await.unwrap();
    drop(store);
    let store = Store::open(&options(dir.path())).unwrap();
    assert!(store.get_binding(&id(1)).unwrap().is_some());
}

#[tokio::test]
async fn acknowledged_writes_survive_when_sled_lost_them() {
    let dir = tempfile::tempdir().unwrap();
    let sled_then = dir.path().join("sled-then");
    let wal_later = dir.path().join("wal-later");
    {
        let store = Store::open(&options(dir.path())).unwrap();
        store.put_number(&number("ride", "+8601")).await.unwrap();
        store.close().await.unwrap();
    }
    copy_dir(&dir.path().join("db"), &sled_then);
    {
        let store = Store::open(&options(dir.path())).unwrap();
        store.put_number(&number("ride", "+8602")).await.unwrap();
        put(&store, 1, BindingState::Active, Some(9_000)).await;
        put(&store, 2, BindingState::Pending, None).await;
        put(&store, 1, BindingState::Released, None).await;
        store.put_meta("progress", b"x42").await.unwrap();
        assert!(store.delete_number("ride", "+8601").await.unwrap());
        copy_dir(&dir.path().join("db").join("wal"), &wal_later);
    }
    stage_crash(dir.path(), &sled_then, &wal_later);

    let store = Store::open(&options(dir.path())).unwrap();
    assert_eq!(number_names(&store, "ride"), ["+8602"]);
    assert_eq!(
        store.get_binding(&id(1)).unwrap().unwrap().state,
        BindingState::Released
    );
    assert_eq!(
        store.due_bindings(i64::MAX, 10).unwrap(),
        [],
        "expiry index follows"
    );
    assert_eq!(
        store
            .open_bindings()
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        [id(2)]
    );
    assert_eq!(
        store.get_meta("progress").unwrap().as_deref(),
        Some(&b"x42"[..])
    );
    // Replayed, flushed into sled and trimmed: a second open replays nothing and agrees.
    assert_eq!(log_bytes(dir.path()), MAGIC.len());
    drop(store);
    let store = Store::open(&options(dir.path())).unwrap();
    assert_eq!(
        store.get_binding(&id(1)).unwrap().unwrap().state,
        BindingState::Released
    );
}

#[tokio::test]
async fn a_torn_last_record_is_ignored() {
    let dir = closed_store().await;
    let sled_then = dir.path().join("sled-then");
    let wal_later = dir.path().join("wal-later");
    copy_dir(&dir.path().join("db"), &sled_then);
    {
        let store = Store::open(&options(dir.path())).unwrap();
        store.put_number(&number("ride", "+8601")).await.unwrap();
        copy_dir(&dir.path().join("db").join("wal"), &wal_later);
    }
    // Half of a further record, as a crash in the middle of its write leaves it.
    let segment = std::fs::read_dir(&wal_later)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut torn = Vec::new();
    record::encode(99, &[op(TreeId::Numbers, b"k", Some(b"v"))], &mut torn);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&segment, bytes).unwrap();
    stage_crash(dir.path(), &sled_then, &wal_later);

    let store = Store::open(&options(dir.path())).unwrap();
    assert_eq!(store.numbers(Some("ride")).unwrap().len(), 1);
}

#[tokio::test]
async fn a_gap_in_the_log_refuses_to_open() {
    let dir = closed_store().await;
    let wal = dir.path().join("db").join("wal");
    let segment = |first: u64, key: &[u8]| {
        let mut bytes = MAGIC.to_vec();
        record::encode(first, &[op(TreeId::Meta, key, Some(b"1"))], &mut bytes);
        let path = wal.join(format!("{first:020}.wal"));
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let (first, third) = (segment(1, b"job/x"), segment(3, b"job/y"));
    let err = Store::open(&options(dir.path())).unwrap_err();
    assert!(
        matches!(&err, StoreError::Log { path, detail, .. } if path.ends_with(".wal") && detail.contains("missing")),
        "{err:?}"
    );
    assert!(
        first.exists() && third.exists(),
        "a log that cannot be trusted is kept"
    );
    // The refused open applied nothing.
    assert_eq!(
        sled_meta(dir.path(), b"job/x"),
        None,
        "nothing of a refused log applied"
    );
    std::fs::remove_file(&third).unwrap();
    let store = Store::open(&options(dir.path())).unwrap();
    assert_eq!(store.get_meta("x").unwrap().as_deref(), Some(&b"1"[..]));
}

/// A `meta` value as sled itself holds it (the store's own open would replay the log first).
fn sled_meta(dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let db = (0..100)
        .find_map(|_| {
            sled::open(dir.join("db"))
                .inspect_err(|_| std::thread::sleep(Duration::from_millis(20)))
                .ok()
        })
        .expect("sled opens once the refused store let go of it");
    let value = db.open_tree("meta").unwrap().get(key).unwrap();
    value.map(|v| v.to_vec())
}

#[tokio::test]
async fn a_log_deleted_after_an_unclean_stop_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&options(dir.path())).unwrap();
        store.put_number(&number("ride", "+8601")).await.unwrap();
        // Dropped without `close`, as a crash leaves it; then the log is deleted.
    }
    let wal = dir.path().join("db").join("wal");
    std::fs::remove_dir_all(&wal).unwrap();
    let err = Store::open(&options(dir.path())).unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused { why, .. } if why.contains("not closed cleanly")),
        "{err:?}"
    );
    // After a clean close the log is empty by design, and its absence is no loss.
    let dir = closed_store().await;
    std::fs::remove_dir_all(dir.path().join("db").join("wal")).unwrap();
    Store::open(&options(dir.path())).unwrap();
}

#[tokio::test]
async fn a_database_behind_the_log_refuses_to_open() {
    let dir = closed_store().await;
    let sled_then = dir.path().join("sled-then");
    copy_dir(&dir.path().join("db"), &sled_then);
    let wal_later = dir.path().join("wal-later");
    {
        let store = Store::open(&options(dir.path())).unwrap();
        put_active_bindings(&store, 200).await;
        // Wait until a checkpoint trimmed the first segments: the log no longer covers what an
        // older copy of the database lacks.
        let first_kept = || {
            let files = super::segment_files(&dir.path().join("db").join("wal")).unwrap();
            super::recover::first_seq(&files[0]).unwrap()
        };
        let trimmed = async {
            while first_kept() == 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(super::CHECKPOINT_EVERY * 5, trimmed)
            .await
            .expect("no checkpoint trimmed the log");
        // Dropped without `close`: its threads end, the log stays as it is, and is copied.
    }
    copy_dir(&dir.path().join("db").join("wal"), &wal_later);
    // The database as it was before those writes (as if sled lost them), with the later log.
    stage_crash(dir.path(), &sled_then, &wal_later);
    let err = Store::open(&options(dir.path())).unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused { why, .. } if why.contains("are missing")),
        "{err:?}"
    );
}

/// A log at `dir` whose one segment holds records 1..=3, each setting meta `job/<n>`, with
/// `damage` applied to its bytes (given the offset where record 2 starts).
fn damaged_log(dir: &Path, damage: impl FnOnce(&mut Vec<u8>, usize)) -> std::path::PathBuf {
    let wal = dir.join("db").join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let mut bytes = MAGIC.to_vec();
    let mut second = 0;
    for n in 1..=3u64 {
        if n == 2 {
            second = bytes.len();
        }
        let key = format!("job/{n}");
        record::encode(
            n,
            &[op(TreeId::Meta, key.as_bytes(), Some(b"v"))],
            &mut bytes,
        );
    }
    damage(&mut bytes, second);
    let path = wal.join(format!("{:020}.wal", 1));
    std::fs::write(&path, &bytes).unwrap();
    path
}

#[tokio::test]
async fn a_damaged_record_with_intact_ones_after_it_is_corruption_not_a_torn_tail() {
    let dir = closed_store().await;
    // One flipped byte inside record 2's payload; record 3 follows intact.
    let path = damaged_log(dir.path(), |bytes, second| bytes[second + 20] ^= 0x01);
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&options(dir.path())).unwrap_err();
    assert!(
        matches!(&err, StoreError::Log { path, detail, .. } if path.ends_with(".wal") && detail.contains("at byte ")),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the log is left as it was"
    );
}

#[tokio::test]
async fn a_damaged_length_that_swallows_later_records_is_corruption() {
    let dir = closed_store().await;
    // Record 2's length made huge: it seems to run past the end, but record 3 is intact in it.
    damaged_log(dir.path(), |bytes, second| bytes[second + 2] = 0x40);
    assert!(matches!(
        Store::open(&options(dir.path())),
        Err(StoreError::Log { .. })
    ));
}

#[tokio::test]
async fn a_last_record_cut_short_or_followed_by_zeros_is_a_torn_tail() {
    for (what, cut) in [("cut short", true), ("zeros after", false)] {
        let dir = closed_store().await;
        damaged_log(dir.path(), |bytes, _| {
            if cut {
                bytes.truncate(bytes.len() - 3);
            } else {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x01;
                bytes.extend_from_slice(&[0; 64]);
            }
        });
        let store = Store::open(&options(dir.path())).unwrap();
        let kept = (store.get_meta("2").unwrap(), store.get_meta("3").unwrap());
        assert_eq!(
            kept,
            (Some(b"v".to_vec()), None),
            "{what}: only the torn record is dropped"
        );
    }
}

#[tokio::test]
async fn a_damaged_last_record_that_sled_already_holds_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&options(dir.path())).unwrap();
        for n in 1..=3u8 {
            put(&store, n, BindingState::Active, Some(9_000)).await;
        }
        // Dropped without `close`: the log keeps the three records, and sled (which flushes
        // when its trees are dropped) holds them, its high-water mark at record 3.
    }
    let segment = super::segment_files(&dir.path().join("db").join("wal"))
        .unwrap()
        .pop()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let err = Store::open(&options(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::Log { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "the log is left as it was"
    );
}

#[tokio::test]
async fn a_store_in_use_is_refused_with_a_clear_error_and_reopens_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(&options(dir.path())).unwrap();
    let err = Store::open(&options(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("another process"), "{err}");
    drop(first);
    // sled lets go of its lock a moment after the drop; open waits for it.
    for _ in 0..20 {
        let store = Store::open(&options(dir.path())).unwrap();
        store.put_meta("n", b"1").await.unwrap();
        drop(store);
    }
}

#[tokio::test]
async fn checkpoints_trim_full_segments_and_recovery_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("db").join("wal");
    let segments = || std::fs::read_dir(&wal).unwrap().count();
    {
        let store = Store::open(&options(dir.path())).unwrap();
        put_active_bindings(&store, 200).await;
        assert!(
            segments() > 3,
            "{} segments of {} bytes",
            segments(),
            super::SEGMENT_BYTES
        );
        // The checkpointer flushes sled and deletes the full segments it covers.
        let trimmed = async {
            while segments() > 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(super::CHECKPOINT_EVERY * 5, trimmed)
            .await
            .expect("full segments were never trimmed");
        // From here the log must keep what is written, so recovery reads several segments.
        store.pause_checkpoints();
        for n in 0..200u8 {
            put(&store, n, BindingState::Released, None).await;
        }
        // Dropped without `close`: the log (several segments again) is what recovery reads.
    }
    assert!(segments() > 1);
    let store = Store::open(&options(dir.path())).unwrap();
    assert_eq!(segments(), 1, "recovery empties the log into sled");
    assert_eq!(store.scan_bindings().count(), 200);
    assert!(
        store
            .scan_bindings()
            .all(|b| b.unwrap().state == BindingState::Released)
    );
    assert_eq!(store.due_bindings(i64::MAX, 10).unwrap(), []);
}

/// Writes `count` ACTIVE bindings, one transaction each (enough to rotate log segments).
async fn put_active_bindings(store: &Store, count: u8) {
    for n in 0..count {
        let rec = binding(n, BindingState::Active, Some(9_000));
        store.put_binding(&rec).await.unwrap();
    }
}

/// The numbers of `app` in the store's durable state.
fn number_names(store: &Store, app: &str) -> Vec<String> {
    let numbers = store.numbers(Some(app)).unwrap();
    numbers.into_iter().map(|n| n.number).collect()
}

/// A directory holding a new, cleanly closed store (no log to replay).
async fn closed_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Store::open(&options(dir.path()))
        .unwrap()
        .close()
        .await
        .unwrap();
    dir
}

fn op(tree: TreeId, key: &[u8], value: Option<&[u8]>) -> Op {
    Op {
        tree,
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_riding_write_asks_for_no_sync_and_becomes_durable_with_the_next_one() {
    let store = Arc::new(Store::open_temporary().unwrap());
    let rider = {
        let staged = store.stage(|tx| tx.put_binding(&binding(1, BindingState::Active, None)));
        tokio::spawn(staged.unwrap().ride())
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!rider.is_finished(), "nobody asked for a sync");
    assert_eq!(store.sync_count(), 0);
    assert!(
        store.get_binding(&id(1)).unwrap().is_none(),
        "not durable yet"
    );

    put(&store, 2, BindingState::Active, None).await;
    let rode = tokio::time::timeout(Duration::from_secs(10), rider).await;
    rode.expect("the rider is answered by the next sync")
        .unwrap()
        .unwrap();
    assert_eq!(store.sync_count(), 1, "one sync for both writes");
    assert!(store.get_binding(&id(1)).unwrap().is_some());
}

/// A store at `dir` whose sled holds nothing but whose log holds meta `job/1..=n` (each its own
/// acknowledged write), the last `more` + 1 in a segment made from a prepared spare: a crash
/// that lost sled's copy. Returns that segment, where its records end (its zeros begin) and `n`.
async fn crash_in_a_prepared_segment(dir: &Path, more: usize) -> (PathBuf, usize, usize) {
    let sled_then = dir.join("sled-then");
    let wal_later = dir.join("wal-later");
    copy_dir(&dir.join("db"), &sled_then);
    let written = {
        let store = Store::open(&options(dir)).unwrap();
        store.pause_checkpoints();
        store.prepare_spares();
        let wal = dir.join("db").join("wal");
        let mut n = 0;
        // The checkpointer prepares a spare within a second; the flusher moves to it after the
        // round that finds it ready.
        while prepared_segment(&wal).is_none() {
            n += 1;
            assert!(n < 1000, "the log never moved to a prepared segment");
            store.put_meta(&format!("job/{n}"), b"v").await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..more {
            n += 1;
            store.put_meta(&format!("job/{n}"), b"v").await.unwrap();
        }
        copy_dir(&wal, &wal_later);
        n
    };
    stage_crash(dir, &sled_then, &wal_later);
    let segment = prepared_segment(&dir.join("db").join("wal")).expect("still there");
    let bytes = std::fs::read(&segment).unwrap();
    let mut end = MAGIC.len();
    while let record::Next::Record(_) = record::read(&bytes, &mut end) {}
    assert!(end > MAGIC.len(), "records went into the prepared segment");
    assert!(record::is_blank(&bytes[end..]), "zeros after them");
    (segment, end, written)
}

/// The last `.wal` segment in `wal` if it was made from a spare: as long as a segment may be,
/// with records and then zeros to its end.
fn prepared_segment(wal: &Path) -> Option<PathBuf> {
    let last = super::segment_files(wal).ok()?.pop()?;
    let bytes = std::fs::read(&last).ok()?;
    let prepared = bytes.len() as u64 == super::SEGMENT_BYTES
        && bytes.len() > MAGIC.len() + 8
        && bytes[MAGIC.len()] != 0
        && bytes.last() == Some(&0);
    prepared.then_some(last)
}

#[tokio::test]
async fn writes_in_a_prepared_segment_survive_a_crash() {
    let dir = closed_store().await;
    let (_, _, written) = crash_in_a_prepared_segment(dir.path(), 20).await;
    // A spare the crash cut short, which the log must not use.
    let spare = dir.path().join("db").join("wal").join(super::SPARE);
    std::fs::write(&spare, &MAGIC[..4]).unwrap();
    // `xpool store check` reads the zeros as the segment's end, not as damage.
    let report = crate::store::admin::check(&dir.path().join("db")).unwrap();
    assert!(report.log.refusal.is_none(), "{report:?}");
    let damaged: Vec<_> = report
        .log
        .segments
        .iter()
        .filter(|s| s.unreadable_at.is_some())
        .collect();
    assert!(damaged.is_empty(), "{damaged:?}");
    let last = report.log.segments.last().unwrap();
    assert!(
        (MAGIC.len() as u64) < last.written && last.written < last.bytes,
        "records, then the prepared zeros: {last:?}"
    );
    let store = Store::open(&options(dir.path())).unwrap();
    for n in 1..=written {
        let value = store.get_meta(&format!("job/{n}")).unwrap();
        assert_eq!(value.as_deref(), Some(&b"v"[..]), "job/{n}");
    }
    assert!(!spare.exists(), "a stale spare is deleted at open");
    store.put_meta("after", b"v").await.unwrap();
}

#[tokio::test]
async fn a_record_torn_over_a_prepared_segments_zeros_is_a_torn_tail() {
    let dir = closed_store().await;
    let (segment, end, written) = crash_in_a_prepared_segment(dir.path(), 20).await;
    // Half of a further record, where the crash cut its write short.
    let mut torn = Vec::new();
    record::encode(
        9_999,
        &[op(TreeId::Meta, b"job/torn", Some(b"v"))],
        &mut torn,
    );
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[end..end + torn.len() / 2].copy_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&segment, &bytes).unwrap();

    let store = Store::open(&options(dir.path())).unwrap();
    assert!(store.get_meta(&format!("job/{written}")).unwrap().is_some());
    assert!(store.get_meta("job/torn").unwrap().is_none());
}

#[tokio::test]
async fn a_damaged_record_before_a_prepared_segments_zeros_with_records_after_is_corruption() {
    let dir = closed_store().await;
    let (segment, _, _) = crash_in_a_prepared_segment(dir.path(), 20).await;
    let mut bytes = std::fs::read(&segment).unwrap();
    // Inside the first record's payload; intact records follow it.
    bytes[MAGIC.len() + 12] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let err = Store::open(&options(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::Log { .. }), "{err:?}");
}

#[tokio::test]
async fn a_log_that_writes_little_prepares_no_spare() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&options(dir.path())).unwrap();
    store.prepare_spares();
    store.put_meta("job/1", b"v").await.unwrap();
    // Two of the checkpointer's rounds: a spare would be ready by then.
    tokio::time::sleep(super::CHECKPOINT_EVERY * 2 + Duration::from_millis(200)).await;
    let spare = dir.path().join("db").join("wal").join(super::SPARE);
    assert!(!spare.exists(), "one small record asked for no spare");
    // Past the first few records' worth, it does.
    let mut n = 1;
    while !spare.exists() {
        n += 1;
        assert!(n < 1000, "no spare was ever prepared");
        store.put_meta(&format!("job/{n}"), b"v").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn no_spare_is_prepared_on_a_disk_without_room_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&options(dir.path())).unwrap();
    store.prepare_spares();
    // More free space than any disk has.
    store.set_spare_headroom(u64::MAX / 2);
    for n in 0..40 {
        store.put_meta(&format!("job/{n}"), b"v").await.unwrap();
    }
    // Two of the checkpointer's rounds: a spare would be ready by then.
    tokio::time::sleep(super::CHECKPOINT_EVERY * 2 + Duration::from_millis(200)).await;
    let spare = dir.path().join("db").join("wal").join(super::SPARE);
    assert!(!spare.exists(), "a spare on a disk without room for it");
    // With room again, the next rounds prepare one.
    store.set_spare_headroom(0);
    let prepared = async {
        while !spare.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(super::CHECKPOINT_EVERY * 10, prepared)
        .await
        .expect("a spare once there is room");
}

/// The nice value of each of this process's threads named `name` (Linux truncates a thread's
/// name to 15 bytes).
#[cfg(target_os = "linux")]
fn nice_of_threads(name: &str) -> Vec<i32> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        // A thread may end between the listing and the reads.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        // Fields after the name, which is in parentheses: state is field 3, nice field 19.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let field = after_name.split(' ').nth(19 - 3).unwrap();
        nice.push(field.parse().unwrap());
    }
    nice
}

/// The applier and the checkpointer run below the daemon's priority, so that a burst of sled
/// applies leaves the cores to requests first; the flusher, whose syncs requests wait on, does
/// not.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_threads_nobody_waits_on_run_at_a_lower_priority() {
    let own = rustix::process::getpriority_process(None).unwrap();
    let lowered = (own + super::BACKGROUND_NICE).min(19);
    let store = Store::open_temporary().unwrap();
    store.put_number(&number("ride", "+8613")).await.unwrap();
    // Each thread lowers its own priority when it starts; other tests' stores may be starting.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lowered_now =
            ["xpool-apply", "xpool-checkpoin"].map(|name| nice_of_threads(name).contains(&lowered));
        if lowered_now == [true, true] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "applier and checkpointer lowered: {lowered_now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let flushers = nice_of_threads("xpool-wal");
    assert!(!flushers.is_empty());
    assert!(
        flushers.iter().all(|n| *n == own),
        "flusher nice {flushers:?}, own {own}"
    );
}
