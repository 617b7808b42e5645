//! The operator's tools on damaged logs (`store::admin`), and damage that sled already holds.
//!
//! A crashed store is made by copying the directory of an open store whose checkpoints are
//! paused: sled's files hold what they held at start-up, the log every record since.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::{self, MAGIC, Next};
use super::tests::copy_dir;
use crate::store::admin::{self, LostChange};
use crate::store::tests::{binding, id};
use crate::store::{BindingState, Store, StoreError, StoreOptions};

/// A crashed store at `<dir>/crash` holding bindings 1..=6, one record each after the store's
/// start; `checkpointed` says whether sled's files already hold them all (a checkpoint ran
/// before the crash) or none.
async fn crashed_store(dir: &Path, checkpointed: bool) -> PathBuf {
    let store = Store::open(&StoreOptions::new(dir.join("db"))).unwrap();
    if !checkpointed {
        store.pause_checkpoints();
    }
    for n in 1..=6 {
        let rec = binding(n, BindingState::Active, None);
        store.put_binding(&rec).await.unwrap();
    }
    if checkpointed {
        // sled's mark reaches its files with the next checkpoint's flush.
        tokio::time::sleep(super::CHECKPOINT_EVERY * 3).await;
    }
    let crash = dir.join("crash");
    copy_dir(&dir.join("db"), &crash);
    drop(store);
    crash
}

/// The only segment of the store's log, and the offset of each record in it.
fn segment_and_offsets(store: &Path) -> (PathBuf, Vec<(u64, usize)>) {
    let wal = store.join("wal");
    let mut files: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let path = files.remove(0);
    let bytes = std::fs::read(&path).unwrap();
    let mut pos = MAGIC.len();
    let mut offsets = Vec::new();
    loop {
        let at = pos;
        match record::read(&bytes, &mut pos) {
            Next::Record(r) => offsets.push((r.seq, at)),
            _ => return (path, offsets),
        }
    }
}

/// Flips one byte inside the record at `offset` (past its header: its payload).
fn damage(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset + 12] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn present(store: &Store, n: u8) -> bool {
    store.get_binding(&id(n)).unwrap().is_some()
}

#[tokio::test]
async fn damage_past_what_sled_holds_is_refused_and_repair_lists_exactly_what_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let crash = crashed_store(dir.path(), false).await;
    let (segment, offsets) = segment_and_offsets(&crash);
    // The fourth binding's record: bindings 1..=3 come before it, 5 and 6 after.
    let (seq, at) = offsets[offsets.len() - 3];
    damage(&segment, at);

    let report = admin::check(&crash).unwrap();
    let refusal = report.log.refusal.expect("refused").to_string();
    assert!(refusal.contains(&format!("at byte {at}")), "{refusal}");
    assert!(refusal.contains("xpool store repair"), "{refusal}");
    let opened = Store::open(&StoreOptions::new(&crash));
    assert!(matches!(opened, Err(StoreError::Log { .. })), "{opened:?}");

    // A cut anywhere but a record's start is refused.
    assert!(admin::plan_repair(&crash, &segment, at as u64 + 1).is_err());
    let plan = admin::plan_repair(&crash, &segment, at as u64).unwrap();
    assert_eq!(plan.loss.kept_through, seq - 1);
    assert_eq!(plan.loss.unreadable, Some((seq, seq)));
    let lost: Vec<String> = plan
        .changes
        .iter()
        .map(|c| match c {
            LostChange::Binding {
                record: Some(b), ..
            } => b.id.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lost, [id(5).to_string(), id(6).to_string()]);

    let kept = admin::repair(&crash, &plan).await.unwrap();
    assert!(kept.is_dir(), "the bytes cut are kept");
    let store = Store::open(&StoreOptions::new(&crash)).unwrap();
    for n in 1..=6 {
        assert_eq!(present(&store, n), n <= 3, "binding {n}");
    }
}

#[tokio::test]
async fn damage_sled_already_holds_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let crash = crashed_store(dir.path(), true).await;
    let (segment, offsets) = segment_and_offsets(&crash);
    let (_, at) = offsets[offsets.len() - 3];
    damage(&segment, at);
    assert!(admin::check(&crash).unwrap().log.refusal.is_none());
    let store = Store::open(&StoreOptions::new(&crash)).unwrap();
    for n in 1..=6 {
        assert!(present(&store, n), "binding {n}");
    }
}

/// A backup taken while another task writes holds a consistent state: a prefix of the writes
/// (each complete with its index entries), at least everything acknowledged before it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_writes_is_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        std::sync::Arc::new(Store::open(&StoreOptions::new(dir.path().join("db"))).unwrap());
    for n in 1..=20 {
        store
            .put_binding(&binding(n, BindingState::Active, None))
            .await
            .unwrap();
    }
    let writer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            for n in 21..=200 {
                store
                    .put_binding(&binding(n, BindingState::Active, None))
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let to = dir.path().join("backup");
    let info = store.backup(&to).await.unwrap();
    writer.await.unwrap();
    // The source keeps working after the backup.
    assert!(present(&store, 200));

    let copy = Store::open(&StoreOptions::new(&to)).unwrap();
    let held: Vec<u8> = (1..=200).filter(|&n| present(&copy, n)).collect();
    assert!(held.len() >= 20, "{held:?}");
    assert_eq!(held, (1..=held.len() as u8).collect::<Vec<_>>(), "a prefix");
    assert_eq!(info.bindings, held.len());
    // One record per binding: the copy holds exactly the state at its last record, every
    // index entry with its binding.
    assert_eq!(held.len() as u64, info.last_record);
    assert_eq!(copy.trees().requests.len(), held.len());
    for &n in &held {
        let by_request = copy
            .binding_by_request("ride", &format!("req-{n}"))
            .unwrap();
        assert!(by_request.is_some(), "binding {n}'s request id");
    }
    // A second backup into a directory that is not empty is refused.
    assert!(store.backup(&to).await.is_err());
}

#[tokio::test]
async fn restore_refuses_a_store_in_use_and_moves_the_old_one_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&StoreOptions::new(&path)).unwrap();
    store
        .put_binding(&binding(1, BindingState::Active, None))
        .await
        .unwrap();
    let backup = dir.path().join("backup");
    store.backup(&backup).await.unwrap();
    store
        .put_binding(&binding(2, BindingState::Active, None))
        .await
        .unwrap();

    let refused = admin::restore(&backup, &path).await.unwrap_err();
    assert!(matches!(refused, StoreError::Locked { .. }), "{refused:?}");
    assert!(present(&store, 2), "a refused restore changes nothing");
    store.close().await.unwrap();
    drop(store);

    let info = admin::restore(&backup, &path).await.unwrap();
    assert_eq!(info.bindings, 1);
    let previous = info.previous.expect("the old store is kept");
    let restored = Store::open(&StoreOptions::new(&path)).unwrap();
    assert!(present(&restored, 1) && !present(&restored, 2));
    drop(restored);
    let old = Store::open(&StoreOptions::new(&previous)).unwrap();
    assert!(present(&old, 2));
}
