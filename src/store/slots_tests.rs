//! The `slots` index (store format 4): each binding that holds a slot has an entry whose value
//! is what the allocation index needs, kept in the record's transaction, replayed with it after
//! a crash, and built by the migration from format 3.

use super::tests::{binding, id};
use super::*;

/// Every `slots` entry: (app, x, id) → its value.
fn slots(store: &Store) -> Vec<(String, String, BindingId, SlotRecord)> {
    let mut out = Vec::new();
    store
        .for_each_slot(|app, x, id, slot| out.push((app.into(), x.into(), id, slot.into())))
        .unwrap();
    out
}

fn entry(r: &BindingRecord) -> (String, String, BindingId, SlotRecord) {
    (r.app.clone(), r.x.clone(), r.id, SlotRecord::of(r))
}

/// An AXYB reservation before the platform chose X.
fn unplaced(n: u8) -> BindingRecord {
    BindingRecord {
        mode: crate::platform::Mode::Axyb,
        x: String::new(),
        ..binding(n, BindingState::Pending, None)
    }
}

#[tokio::test]
async fn every_binding_holding_a_slot_has_its_entry_and_no_other_does() {
    let store = Store::open_temporary().unwrap();
    let active = BindingRecord {
        extension: Some("0042".into()),
        call_options: CallOptionsRecord {
            max_call_minutes: Some(5),
            record: Some(true),
            record_hint_tone: Some("hint.wav".into()),
            last_minute_tone: Some("last.wav".into()),
            ..Default::default()
        },
        ..binding(1, BindingState::Active, Some(9_000))
    };
    let releasing = binding(2, BindingState::Releasing, None);
    let pending = unplaced(3);
    for r in [&active, &releasing, &pending] {
        store.insert_binding(r).await.unwrap();
    }
    store
        .insert_binding(&binding(4, BindingState::Released, None))
        .await
        .unwrap();
    let mut want = vec![entry(&pending), entry(&active), entry(&releasing)];
    assert_eq!(slots(&store), want, "(app, x, id) order; none for RELEASED");
    let slot = &want[1].3;
    assert_eq!(
        (
            slot.max_call_minutes,
            slot.record,
            slot.extension.as_deref()
        ),
        (Some(5), Some(true), Some("0042"))
    );

    // A state change rewrites the value; leaving the slot, or the X, drops the entry.
    let released = BindingRecord {
        state: BindingState::Released,
        released_at_ms: Some(2_000),
        ..releasing
    };
    let placed = BindingRecord {
        x: "+8613800000077".into(),
        state: BindingState::Active,
        ..pending
    };
    store.put_binding(&released).await.unwrap();
    store.put_binding(&placed).await.unwrap();
    want = vec![entry(&active), entry(&placed)];
    assert_eq!(slots(&store), want);
    store.delete_binding(&active.id).await.unwrap();
    assert_eq!(slots(&store), vec![entry(&placed)]);
    assert!(
        store.bindings_on("ride", "").unwrap().is_empty(),
        "no X is not an X"
    );
}

#[tokio::test]
async fn bindings_released_since_a_time_are_read_in_id_order() {
    let store = Store::open_temporary().unwrap();
    let left = |n: u8, at: i64| BindingRecord {
        released_at_ms: Some(at),
        ..binding(n, BindingState::Released, None)
    };
    // Those with a request id are indexed in `remembered`, the others in `released`.
    let no_request_id = |r: BindingRecord| BindingRecord {
        request_id: None,
        ..r
    };
    for r in [
        left(1, 5_000),
        no_request_id(left(2, 1_000)),
        left(3, 3_000),
        no_request_id(left(4, 3_001)),
    ] {
        store.insert_binding(&r).await.unwrap();
    }
    store
        .insert_binding(&binding(5, BindingState::Active, None))
        .await
        .unwrap();
    let since = |ms| -> Vec<BindingId> {
        let found = store.released_since(ms).unwrap();
        found.into_iter().map(|r| r.id).collect()
    };
    assert_eq!(since(3_000), [id(1), id(3), id(4)]);
    assert_eq!(since(-1), [id(1), id(2), id(3), id(4)]);
    assert_eq!(since(5_001), []);
}

#[tokio::test]
async fn slot_entries_in_the_log_are_replayed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let sled_then = dir.path().join("sled-then");
    let wal_later = dir.path().join("wal-later");
    {
        let store = Store::open(&options).unwrap();
        store
            .insert_binding(&binding(1, BindingState::Active, None))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    // sled as it was before the changes below, the log as it was after them: a crash before
    // sled was flushed.
    wal::tests::copy_dir(&options.path, &sled_then);
    let after = {
        let store = Store::open(&options).unwrap();
        store.pause_checkpoints();
        store.insert_binding(&unplaced(2)).await.unwrap();
        store
            .put_binding(&binding(1, BindingState::Releasing, None))
            .await
            .unwrap();
        wal::tests::copy_dir(&options.path.join("wal"), &wal_later);
        slots(&store)
    };
    wal::tests::stage_crash(dir.path(), &sled_then, &wal_later);
    let store = Store::open(&options).unwrap();
    assert_eq!(slots(&store), after);
    assert_eq!(after.len(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_format_3_store_gets_its_slot_values_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let built = {
        let store = Store::open(&options).unwrap();
        for r in [
            binding(1, BindingState::Active, None),
            binding(2, BindingState::Released, None),
            unplaced(3),
            binding(4, BindingState::Pending, None),
        ] {
            store.insert_binding(&r).await.unwrap();
        }
        let built = slots(&store);
        // What a format 3 store holds: empty values, and no entry on no X.
        let trees = store.trees();
        for (key, _) in trees.slots.iter().map(Result::unwrap) {
            match keys::parse_slot(&key) {
                Some((_, "", _)) => _ = trees.slots.remove(&key).unwrap(),
                _ => _ = trees.slots.insert(&key, &[]).unwrap(),
            }
        }
        trees
            .meta
            .insert(keys::META_FORMAT, codec::encode(&3u32))
            .unwrap();
        assert!(store.for_each_slot(|_, _, _, _| {}).is_err());
        store.close().await.unwrap();
        built
    };
    assert_eq!(built.len(), 3);
    let store = Store::open(&options).unwrap();
    assert_eq!(slots(&store), built);
    let format = store.get(wal::TreeId::Meta, keys::META_FORMAT).unwrap();
    let format: u32 = codec::decode(keys::META, keys::META_FORMAT, &format.unwrap()).unwrap();
    assert_eq!(format, FORMAT_VERSION);
    store.close().await.unwrap();
}
