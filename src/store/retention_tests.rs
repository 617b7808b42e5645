//! The retention indexes (`released`, `remembered`) and the deletes that use them: what a
//! purge or a forgotten request id takes out of the store, and that it takes nothing else.

use std::collections::{BTreeMap, BTreeSet};

use super::tests::{binding, id, number};
use super::*;

type KeySets = BTreeMap<&'static str, BTreeSet<Vec<u8>>>;

/// Binding `n`, RELEASED at `left_ms`.
fn released(n: u8, left_ms: i64) -> BindingRecord {
    BindingRecord {
        released_at_ms: Some(left_ms),
        updated_at_ms: left_ms,
        ..binding(n, BindingState::Released, None)
    }
}

/// `before` without `gone` (tree, key) pairs.
fn without(before: &KeySets, gone: &[(&'static str, Vec<u8>)]) -> KeySets {
    let mut after = before.clone();
    for (tree, key) in gone {
        assert!(
            after.get_mut(tree).unwrap().remove(key),
            "{tree} has no key {}",
            keys::describe(key)
        );
    }
    after
}

/// Every key binding `rec` (RELEASED or EXPIRED, with a request id) has: its one retention
/// entry is in `remembered`.
fn keys_of_released(rec: &BindingRecord) -> Vec<(&'static str, Vec<u8>)> {
    let left = rec.left_service_ms().unwrap();
    let rid = rec.request_id.as_deref().unwrap();
    vec![
        (keys::BINDINGS, keys::binding(&rec.id).to_vec()),
        (keys::REQUESTS, keys::request(&rec.app, rid).unwrap()),
        (keys::REMEMBERED, keys::remembered(left, &rec.id).to_vec()),
    ]
}

/// `before` with `added` (tree, key) pairs, none of which it had.
fn with(before: &KeySets, added: &[(&'static str, Vec<u8>)]) -> KeySets {
    let mut after = before.clone();
    for (tree, key) in added {
        assert!(
            after.entry(tree).or_default().insert(key.clone()),
            "{tree} has {} already",
            keys::describe(key)
        );
    }
    after
}

/// A store with live and left bindings of two apps, numbers and meta values.
async fn populated() -> Store {
    let store = Store::open_temporary().unwrap();
    store
        .put_binding(&binding(1, BindingState::Active, Some(9_000)))
        .await
        .unwrap();
    store
        .put_binding(&binding(2, BindingState::Pending, None))
        .await
        .unwrap();
    store.put_binding(&released(3, 2_000)).await.unwrap();
    store.put_binding(&released(4, 5_000)).await.unwrap();
    // Another app, with the same request id as binding 3.
    let other = BindingRecord {
        app: "food".into(),
        request_id: Some("req-3".into()),
        ..released(5, 2_000)
    };
    store.put_binding(&other).await.unwrap();
    store
        .put_number(&number("ride", "+8613800000001"))
        .await
        .unwrap();
    store.put_meta("progress", b"1").await.unwrap();
    store
}

#[tokio::test]
async fn bindings_that_left_service_are_indexed_by_when_they_left() {
    let store = Store::open_temporary().unwrap();
    let mut rec = binding(1, BindingState::Active, Some(9_000));
    store.put_binding(&rec).await.unwrap();
    assert_eq!(store.left_until(i64::MAX, 10, None).unwrap(), []);
    assert_eq!(store.remembered_until(i64::MAX, 10, None).unwrap(), []);

    // With a request id: one entry, in `remembered`.
    rec.state = BindingState::Expired;
    rec.released_at_ms = Some(9_500);
    store.put_binding(&rec).await.unwrap();
    assert_eq!(store.left_until(9_499, 10, None).unwrap(), []);
    assert_eq!(
        store.left_until(9_500, 10, None).unwrap(),
        [(9_500, rec.id)]
    );
    assert_eq!(store.released_until(i64::MAX, 10, None).unwrap(), []);
    // One app's only (a cluster replica purges the apps it leads).
    let of = |app: &str| {
        (
            store.left_until(9_500, 10, Some(app)).unwrap(),
            store.remembered_until(9_500, 10, Some(app)).unwrap(),
        )
    };
    assert_eq!(of(&rec.app), (vec![(9_500, rec.id)], vec![(9_500, rec.id)]));
    assert_eq!(of("another-app"), (vec![], vec![]));
    assert_eq!(
        store.remembered_until(9_500, 10, None).unwrap(),
        [(9_500, rec.id)]
    );

    // Without a request id there is nothing to remember, and the entry is in `released`;
    // without released_at_ms the last update counts.
    let mut bare = BindingRecord {
        request_id: None,
        released_at_ms: None,
        updated_at_ms: 7_000,
        ..binding(2, BindingState::Released, None)
    };
    store.put_binding(&bare).await.unwrap();
    assert_eq!(
        store.released_until(i64::MAX, 10, None).unwrap(),
        [(7_000, bare.id)]
    );
    assert_eq!(
        store.left_until(i64::MAX, 10, None).unwrap(),
        [(7_000, bare.id), (9_500, rec.id)]
    );
    assert_eq!(
        store.remembered_until(i64::MAX, 10, None).unwrap(),
        [(9_500, rec.id)]
    );
    assert_eq!(
        store.left_until(i64::MAX, 1, None).unwrap(),
        [(7_000, bare.id)]
    );
    assert_eq!(store.left_until(-1, 10, None).unwrap(), []);

    // Deleting takes the entries out.
    bare.updated_at_ms = 8_000;
    store.put_binding(&bare).await.unwrap();
    assert_eq!(
        store.left_until(i64::MAX, 10, None).unwrap(),
        [(8_000, bare.id), (9_500, rec.id)],
        "a rewrite moves the entry"
    );
    store.delete_binding(&rec.id).await.unwrap();
    store.delete_binding(&bare.id).await.unwrap();
    assert_eq!(store.left_until(i64::MAX, 10, None).unwrap(), []);
    assert_eq!(store.remembered_until(i64::MAX, 10, None).unwrap(), []);
}

#[tokio::test]
async fn a_purge_takes_the_record_and_every_entry_of_it_and_nothing_else() {
    let store = populated().await;
    let before = store.key_sets();
    let gone = released(3, 2_000);
    assert!(
        store
            .commit(|tx| tx.purge_binding(&gone.id, false))
            .await
            .unwrap()
    );
    assert_eq!(store.key_sets(), without(&before, &keys_of_released(&gone)));
    assert_eq!(store.get_binding(&gone.id).unwrap(), None);
    assert_eq!(store.binding_by_request("ride", "req-3").unwrap(), None);
    assert_eq!(store.purged_request("ride", "req-3").unwrap(), None);
    // The other app's binding with the same request id is untouched.
    assert_eq!(
        store
            .binding_by_request("food", "req-3")
            .unwrap()
            .unwrap()
            .id,
        id(5)
    );
    // A second purge finds nothing.
    assert!(
        !store
            .commit(|tx| tx.purge_binding(&gone.id, false))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_purge_never_deletes_a_live_binding() {
    let store = populated().await;
    let before = store.key_sets();
    for n in [1, 2] {
        assert!(
            !store
                .commit(|tx| tx.purge_binding(&id(n), false))
                .await
                .unwrap()
        );
    }
    assert_eq!(store.key_sets(), before);
}

#[tokio::test]
async fn a_purge_may_keep_the_request_id_taken_until_it_is_forgotten() {
    let store = populated().await;
    let before = store.key_sets();
    let gone = released(3, 2_000);
    store
        .commit(|tx| tx.purge_binding(&gone.id, true))
        .await
        .unwrap();
    let keys = keys_of_released(&gone);
    let tombstone = without(&before, &[keys[0].clone(), keys[2].clone()]);
    let tombstone_key = keys::remembered_tombstone(2_000, &gone.id).to_vec();
    let tombstone = with(&tombstone, &[(keys::REMEMBERED, tombstone_key)]);
    assert_eq!(
        store.key_sets(),
        tombstone,
        "only the mapping and a tombstone in remembered stay"
    );
    // The tombstone is no record to delete, but a request id to forget.
    assert!(
        !store
            .left_until(i64::MAX, 10, None)
            .unwrap()
            .contains(&(2_000, gone.id))
    );
    assert!(
        store
            .remembered_until(2_000, 10, None)
            .unwrap()
            .contains(&(2_000, gone.id))
    );
    assert_eq!(store.remembered_until(1_999, 10, None).unwrap(), []);
    assert_eq!(store.binding_by_request("ride", "req-3").unwrap(), None);
    assert_eq!(
        store.purged_request("ride", "req-3").unwrap(),
        Some(gone.id)
    );
    assert_eq!(store.purged_request("food", "req-3").unwrap(), None);

    // The request id stays taken: a new binding cannot have it.
    let again = BindingRecord {
        request_id: Some("req-3".into()),
        ..binding(9, BindingState::Pending, None)
    };
    let refused = store.insert_binding(&again).await.unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");

    assert!(
        store
            .commit(|tx| tx.forget_request(2_000, &gone.id))
            .await
            .unwrap()
    );
    assert_eq!(store.key_sets(), without(&before, &keys_of_released(&gone)));
    assert_eq!(store.purged_request("ride", "req-3").unwrap(), None);
    store.insert_binding(&again).await.unwrap();
}

#[tokio::test]
async fn forgetting_a_request_id_keeps_the_record_without_it() {
    let store = populated().await;
    let before = store.key_sets();
    let rec = released(4, 5_000);
    assert!(
        store
            .commit(|tx| tx.forget_request(5_000, &rec.id))
            .await
            .unwrap()
    );
    let keys = keys_of_released(&rec);
    let released_key = (keys::RELEASED, keys::released(5_000, &rec.id).to_vec());
    assert_eq!(
        store.key_sets(),
        with(
            &without(&before, &[keys[1].clone(), keys[2].clone()]),
            std::slice::from_ref(&released_key)
        ),
        "the request id goes, and the record is indexed in `released` instead"
    );
    let kept = store.get_binding(&rec.id).unwrap().unwrap();
    assert_eq!(
        kept,
        BindingRecord {
            request_id: None,
            ..rec.clone()
        }
    );
    assert_eq!(store.binding_by_request("ride", "req-4").unwrap(), None);
    assert!(
        !store
            .commit(|tx| tx.forget_request(5_000, &rec.id))
            .await
            .unwrap(),
        "nothing left to forget"
    );
    // Purged later, it takes its last entries.
    store
        .commit(|tx| tx.purge_binding(&rec.id, true))
        .await
        .unwrap();
    assert_eq!(store.key_sets(), without(&before, &keys));
}

#[tokio::test]
async fn forgetting_leaves_a_request_id_another_binding_took_over() {
    let store = Store::open_temporary().unwrap();
    let old = released(1, 1_000);
    store.put_binding(&old).await.unwrap();
    let new = BindingRecord {
        request_id: old.request_id.clone(),
        ..binding(2, BindingState::Active, None)
    };
    store.put_binding(&new).await.unwrap();
    store
        .commit(|tx| tx.purge_binding(&old.id, true))
        .await
        .unwrap();
    store
        .commit(|tx| tx.forget_request(1_000, &old.id))
        .await
        .unwrap();
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(new)
    );
    assert_eq!(store.remembered_until(i64::MAX, 10, None).unwrap(), []);
}

#[tokio::test]
async fn purges_and_forgotten_request_ids_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let after = {
        let store = Store::open(&options).unwrap();
        store.put_binding(&released(1, 1_000)).await.unwrap();
        store.put_binding(&released(2, 1_000)).await.unwrap();
        store.put_binding(&released(3, 1_000)).await.unwrap();
        store
            .put_binding(&binding(4, BindingState::Active, None))
            .await
            .unwrap();
        store
            .commit(|tx| {
                tx.purge_binding(&id(1), false)?;
                tx.purge_binding(&id(2), true)?;
                tx.forget_request(1_000, &id(3))
            })
            .await
            .unwrap();
        let after = store.key_sets();
        // Closing empties the log; the deletes must be in sled.
        store.close().await.unwrap();
        after
    };
    let store = Store::open(&options).unwrap();
    assert_eq!(store.key_sets(), after);
    assert_eq!(store.get_binding(&id(1)).unwrap(), None);
    assert_eq!(store.purged_request("ride", "req-2").unwrap(), Some(id(2)));
    assert_eq!(store.get_binding(&id(3)).unwrap().unwrap().request_id, None);
    store.close().await.unwrap();
}

#[tokio::test]
async fn purges_in_the_log_are_replayed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let sled_then = dir.path().join("sled-then");
    let wal_later = dir.path().join("wal-later");
    {
        let store = Store::open(&options).unwrap();
        store.put_binding(&released(1, 1_000)).await.unwrap();
        store.put_binding(&released(2, 1_000)).await.unwrap();
        store
            .put_binding(&binding(3, BindingState::Active, None))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    // sled as it was before the deletes, the log as it was after them: a crash before sled
    // was flushed.
    wal::tests::copy_dir(&options.path, &sled_then);
    let after = {
        let store = Store::open(&options).unwrap();
        store
            .commit(|tx| {
                tx.purge_binding(&id(1), false)?;
                tx.purge_binding(&id(2), true)
            })
            .await
            .unwrap();
        wal::tests::copy_dir(&options.path.join("wal"), &wal_later);
        store.key_sets()
    };
    wal::tests::stage_crash(dir.path(), &sled_then, &wal_later);
    let store = Store::open(&options).unwrap();
    assert_eq!(store.key_sets(), after);
    assert_eq!(store.get_binding(&id(1)).unwrap(), None);
    assert_eq!(store.purged_request("ride", "req-2").unwrap(), Some(id(2)));
    store.close().await.unwrap();
}

/// What the migration tests start from: binding 1 RELEASED with a request id, 2 without one,
/// 3 ACTIVE.
async fn put_left_and_live(store: &Store) {
    store.put_binding(&released(1, 1_000)).await.unwrap();
    store
        .put_binding(&BindingRecord {
            request_id: None,
            ..released(2, 2_000)
        })
        .await
        .unwrap();
    store
        .put_binding(&binding(3, BindingState::Active, None))
        .await
        .unwrap();
}

/// The format version the store holds in `meta`.
fn stored_format(store: &Store) -> u32 {
    let format = store.get(wal::TreeId::Meta, keys::META_FORMAT).unwrap();
    codec::decode(keys::META, keys::META_FORMAT, &format.unwrap()).unwrap()
}

#[tokio::test]
async fn a_format_1_store_is_indexed_for_retention_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let indexed = {
        let store = Store::open(&options).unwrap();
        put_left_and_live(&store).await;
        let indexed = store.key_sets();
        // What a format 1 store holds: no retention indexes.
        let trees = store.trees();
        trees.released.clear().unwrap();
        trees.remembered.clear().unwrap();
        trees
            .meta
            .insert(keys::META_FORMAT, codec::encode(&1u32))
            .unwrap();
        store.close().await.unwrap();
        indexed
    };
    let store = Store::open(&options).unwrap();
    assert_eq!(store.key_sets(), indexed);
    assert_eq!(stored_format(&store), FORMAT_VERSION);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_format_4_store_keeps_one_retention_entry_per_binding_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let migrated = {
        let store = Store::open(&options).unwrap();
        put_left_and_live(&store).await;
        store.put_binding(&released(4, 1_500)).await.unwrap();
        store
            .commit(|tx| tx.purge_binding(&id(4), true))
            .await
            .unwrap();
        let migrated = store.key_sets();
        // What a format 4 store holds: binding 1 in `released` too, and binding 4's tombstone
        // as a plain `remembered` entry.
        let trees = store.trees();
        trees
            .released
            .insert(keys::released(1_000, &id(1)), &[])
            .unwrap();
        let tombstone = keys::remembered_tombstone(1_500, &id(4));
        let value = trees.remembered.remove(tombstone).unwrap().unwrap();
        trees
            .remembered
            .insert(keys::remembered(1_500, &id(4)), value)
            .unwrap();
        trees
            .meta
            .insert(keys::META_FORMAT, codec::encode(&4u32))
            .unwrap();
        assert_ne!(store.key_sets(), migrated);
        store.close().await.unwrap();
        migrated
    };
    let store = Store::open(&options).unwrap();
    assert_eq!(store.key_sets(), migrated);
    assert_eq!(store.purged_request("ride", "req-4").unwrap(), Some(id(4)));
    assert_eq!(
        store.left_until(i64::MAX, 10, None).unwrap(),
        [(1_000, id(1)), (2_000, id(2))]
    );
    assert_eq!(stored_format(&store), FORMAT_VERSION);
    store.close().await.unwrap();
}

/// Tombstones are request ids to forget, not records to delete: however many there are, the
/// scan for records to delete never returns them, so they cannot fill its limit.
#[tokio::test]
async fn tombstones_never_hold_up_the_records_to_delete() {
    let store = Store::open_temporary().unwrap();
    for n in 1..=3 {
        store.put_binding(&released(n, 1_000)).await.unwrap();
    }
    store
        .commit(|tx| {
            tx.purge_binding(&id(1), true)?;
            tx.purge_binding(&id(2), true)
        })
        .await
        .unwrap();
    for limit in [1, 10] {
        assert_eq!(
            store.left_until(i64::MAX, limit, None).unwrap(),
            [(1_000, id(3))]
        );
    }
    assert_eq!(
        store.remembered_until(i64::MAX, 10, None).unwrap(),
        [(1_000, id(1)), (1_000, id(2)), (1_000, id(3))]
    );
}
