//! Tests of the replica entry points on temporary stores.

use super::*;
use crate::store::{
    ChangeKindStored, ChangeStored, NumberRecord, NumberState, PlatformStatus, StoreOptions,
};

fn number(n: &str) -> NumberRecord {
    NumberRecord {
        app: "ride".into(),
        number: n.into(),
        area_code: "0755".into(),
        state: NumberState::Active,
        needs_reconcile: false,
        updated_at_ms: 1,
        platform_status: PlatformStatus::Normal,
        status_cause: None,
    }
}

fn change(at_ms: i64) -> Vec<u8> {
    codec::encode(&ChangeStored {
        at_ms,
        app: "ride".into(),
        kind: ChangeKindStored::NumberStatus,
        binding: None,
        number: None,
        call_event: None,
        message: None,
    })
}

fn put(n: &str) -> ReplicaEvent {
    let record = number(n);
    ReplicaEvent::Data {
        tree: TreeId::Numbers,
        key: keys::number(&record.app, &record.number).unwrap(),
        value: Some(codec::encode(&record)),
    }
}

fn delete(n: &str) -> ReplicaEvent {
    ReplicaEvent::Data {
        tree: TreeId::Numbers,
        key: keys::number("ride", n).unwrap(),
        value: None,
    }
}

fn feed(id: &str, position: u8, at_ms: i64) -> ReplicaEvent {
    ReplicaEvent::FeedPut {
        id: id.as_bytes().to_vec(),
        position,
        change: change(at_ms),
    }
}

fn revision(revision: u64, events: Vec<ReplicaEvent>) -> ReplicaRevision {
    ReplicaRevision { revision, events }
}

fn feed_numbers(store: &Store) -> Vec<u64> {
    let changes = store.changes_after(0, 1000).unwrap();
    changes.iter().map(|(n, _)| *n).collect()
}

fn numbers(store: &Store) -> Vec<String> {
    let all = store.numbers(Some("ride")).unwrap();
    all.into_iter().map(|n| n.number).collect()
}

#[test]
fn classification_of_trees_and_meta_keys() {
    assert_eq!(classify(TreeId::Bindings, b"anything"), Class::Replicated);
    assert_eq!(classify(TreeId::Changes, &7u64.to_be_bytes()), Class::Feed);
    for local in [&b"format"[..], b"wal/applied", b"wal/clean", b"feed/next"] {
        assert_eq!(classify(TreeId::Meta, local), Class::Local, "{local:?}");
    }
    assert_eq!(classify(TreeId::Meta, APPLIED), Class::Local);
    assert_eq!(classify(TreeId::Meta, &by_id(b"x")), Class::Local);
    assert_eq!(
        classify(TreeId::Meta, &super::super::meta_key("reconcile/ride")),
        Class::Replicated
    );
    assert_eq!(
        classify(TreeId::Meta, b"formats"),
        Class::Unknown,
        "exact, not a prefix"
    );
    assert_eq!(classify(TreeId::Meta, b"wal/other"), Class::Unknown);
    assert_eq!(feed_number(10, 0), 1280);
    assert_eq!(feed_number(10, 127), 1407);
}

/// A `meta` key the store writes must be classified: every `&[u8]` constant in the store's
/// sources (where its `meta` keys are named), and every key a store that went through the
/// writes that touch `meta` holds.
#[tokio::test]
async fn every_meta_key_the_store_writes_is_classified() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut sources = vec![dir.clone()];
    let mut constants = Vec::new();
    while let Some(path) = sources.pop() {
        if path.is_dir() {
            sources.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| l.contains(": &[u8] = b\"")) {
            let literal = line.split("b\"").nth(1).unwrap().split('"').next().unwrap();
            constants.push((path.display().to_string(), literal.to_owned()));
        }
    }
    assert!(constants.len() >= 8, "{constants:?}");
    for (file, key) in &constants {
        let class = classify(TreeId::Meta, key.as_bytes());
        assert_ne!(
            class,
            Class::Unknown,
            "{file}: meta key {key:?} is not classified"
        );
    }

    let store = Store::open_temporary().unwrap();
    store.put_meta("reconcile/ride", b"+86").await.unwrap();
    store
        .commit(|tx| tx.append_change(&codec::decode(keys::CHANGES, b"", &change(1)).unwrap()))
        .await
        .unwrap();
    store.commit(|tx| tx.delete_change(1)).await.unwrap();
    store.begin_full_copy(5).await.unwrap();
    store
        .copy_page(&[revision(4, vec![feed("a", 0, 1)])])
        .await
        .unwrap();
    store.finish_full_copy(5).await.unwrap();
    store
        .apply_revisions(6, &[revision(6, vec![put("1")])])
        .await
        .unwrap();
    store.close().await.unwrap();
    let meta = store.trees().meta;
    for entry in meta.iter() {
        let key = entry.unwrap().0;
        assert_ne!(
            classify(TreeId::Meta, &key),
            Class::Unknown,
            "{:?}",
            String::from_utf8_lossy(&key)
        );
    }
}

#[tokio::test]
async fn revisions_apply_in_one_record_and_twice_changes_nothing() {
    let store = Store::open_temporary().unwrap();
    assert_eq!(store.replica_state().unwrap(), ReplicaState::default());
    let batch = [
        revision(
            5,
            vec![
                put("1"),
                put("2"),
                feed("ride/n1/0", 0, 1),
                feed("ride/n1/1", 1, 2),
            ],
        ),
        revision(7, vec![delete("1"), put("3"), feed("ride/n1/128", 0, 3)]),
    ];
    assert_eq!(store.apply_revisions(7, &batch).await.unwrap(), 7);
    let once = (
        numbers(&store),
        feed_numbers(&store),
        store.entries_of(Class::Replicated).unwrap(),
    );
    assert_eq!(once.0, ["2", "3"]);
    assert_eq!(once.1, [640, 641, 896]);

    // Again, and an older revision alone: skipped.
    assert_eq!(store.apply_revisions(7, &batch).await.unwrap(), 7);
    assert_eq!(store.apply_revisions(5, &batch[..1]).await.unwrap(), 7);
    let twice = (
        numbers(&store),
        feed_numbers(&store),
        store.entries_of(Class::Replicated).unwrap(),
    );
    assert_eq!(once, twice);

    // Progress without changes of ours moves the revision on.
    assert_eq!(store.apply_revisions(9, &[]).await.unwrap(), 9);
    assert_eq!(store.replica_state().unwrap().applied, 9);
    assert_eq!(
        store.feed_id_of(641).unwrap().as_deref(),
        Some(&b"ride/n1/1"[..])
    );
}

#[tokio::test]
async fn feed_deletions_find_their_entry_and_raise_the_floor() {
    let store = Store::open_temporary().unwrap();
    let adds = revision(3, vec![feed("a", 0, 1), feed("b", 1, 2), feed("c", 2, 3)]);
    store.apply_revisions(3, &[adds]).await.unwrap();
    let gone = |id: &str| ReplicaEvent::FeedDelete {
        id: id.as_bytes().to_vec(),
    };
    let deletes = revision(4, vec![gone("a"), gone("b"), gone("never-seen")]);
    store.apply_revisions(4, &[deletes]).await.unwrap();
    assert_eq!(feed_numbers(&store), [386]);
    assert_eq!(store.feed_id_of(384).unwrap(), None);
    store
        .apply_revisions(5, &[revision(5, vec![gone("c")])])
        .await
        .unwrap();
    assert_eq!(store.change_bounds().unwrap(), None);
    assert_eq!(
        store.change_floor().unwrap(),
        387,
        "one past the last number deleted"
    );
}

/// The local numbering (`Tx::next_change`) never hands out a number applied entries hold.
#[tokio::test]
async fn local_numbering_stays_above_applied_entries() {
    let store = Store::open_temporary().unwrap();
    let entry = codec::decode::<ChangeStored>(keys::CHANGES, b"", &change(1)).unwrap();
    assert_eq!(
        store.commit(|tx| tx.append_change(&entry)).await.unwrap(),
        1
    );
    store
        .apply_revisions(2, &[revision(2, vec![feed("a", 5, 1)])])
        .await
        .unwrap();
    assert_eq!(
        store.commit(|tx| tx.append_change(&entry)).await.unwrap(),
        262
    );
}

#[tokio::test]
async fn a_full_copy_replaces_replicated_entries_and_keeps_local_ones() {
    let store = Store::open_temporary().unwrap();
    store.put_meta("reconcile/ride", b"old").await.unwrap();
    let old = revision(3, vec![put("1"), put("2"), feed("a", 0, 1)]);
    store.apply_revisions(3, &[old]).await.unwrap();

    store.begin_full_copy(10).await.unwrap();
    assert_eq!(
        store.replica_state().unwrap(),
        ReplicaState {
            applied: 0,
            copying: Some(10)
        }
    );
    assert!(store.entries_of(Class::Replicated).unwrap().is_empty());
    assert_eq!(feed_numbers(&store), Vec::<u64>::new());
    assert_eq!(
        store.feed_id_of(384).unwrap(),
        None,
        "the feed's map goes too"
    );
    let refused = store.apply_revisions(11, &[]).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    let many: Vec<ReplicaEvent> = (0..1200).map(|n| put(&format!("{n:04}"))).collect();
    store
        .copy_page(&[revision(8, many), revision(9, vec![feed("b", 3, 1)])])
        .await
        .unwrap();
    store.finish_full_copy(10).await.unwrap();
    assert_eq!(
        store.replica_state().unwrap(),
        ReplicaState {
            applied: 10,
            copying: None
        }
    );
    assert_eq!(numbers(&store).len(), 1200);
    assert_eq!(feed_numbers(&store), [9 * 128 + 3]);
    assert_eq!(
        store.get_meta("reconcile/ride").unwrap(),
        None,
        "job progress is replicated"
    );
    assert_eq!(store.change_floor().unwrap(), 9 * 128 + 3);
}

#[tokio::test]
async fn a_full_copy_cut_short_is_seen_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    {
        let store = Store::open(&options).unwrap();
        store
            .apply_revisions(3, &[revision(3, vec![put("1")])])
            .await
            .unwrap();
        store.begin_full_copy(7).await.unwrap();
        store
            .copy_page(&[revision(6, vec![put("2")])])
            .await
            .unwrap();
        // No finish: the process stops here (its log is replayed at the next open).
    }
    let store = Store::open(&options).unwrap();
    assert_eq!(
        store.replica_state().unwrap(),
        ReplicaState {
            applied: 0,
            copying: Some(7)
        }
    );
    store.begin_full_copy(9).await.unwrap();
    store
        .copy_page(&[revision(9, vec![put("3")])])
        .await
        .unwrap();
    let stale = store.finish_full_copy(7).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    store.finish_full_copy(9).await.unwrap();
    assert_eq!(numbers(&store), ["3"]);
    assert_eq!(
        store.change_floor().unwrap(),
        10 * 128,
        "an empty feed starts after the copy"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn events_that_are_not_replicated_are_refused() {
    let store = Store::open_temporary().unwrap();
    let local = ReplicaEvent::Data {
        tree: TreeId::Meta,
        key: keys::META_FORMAT.to_vec(),
        value: Some(vec![0]),
    };
    let refused = store.apply_revisions(2, &[revision(2, vec![local])]).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.replica_state().unwrap().applied,
        0,
        "nothing of the batch was written"
    );
    let deletion = revision(3, vec![delete("1")]);
    store.begin_full_copy(3).await.unwrap();
    assert!(store.copy_page(&[deletion]).await.is_err());
}
