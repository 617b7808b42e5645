//! Store tests on temporary sled databases (key and codec tests live beside their modules,
//! log, group-commit and recovery tests in `wal`).

use std::sync::Arc;

use super::*;
use crate::platform::Mode;
use crate::store::wal::TreeId;

pub(super) fn id(n: u8) -> BindingId {
    let mut bytes = [0; 16];
    bytes[15] = n;
    BindingId(bytes)
}

pub(super) fn binding(n: u8, state: BindingState, expires_at_ms: Option<i64>) -> BindingRecord {
    BindingRecord {
        id: id(n),
        app: "ride".into(),
        mode: Mode::Axb,
        state,
        x: format!("+86138000000{n:02}"),
        extension: None,
        y: None,
        party_a: "+8613900000001".into(),
        party_b: Some("+8613900000002".into()),
        area_code: "0755".into(),
        subscription_id: None,
        request_id: Some(format!("req-{n}")),
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        expires_at_ms,
        released_at_ms: None,
        ttl_seconds: 60,
        call_options: CallOptionsRecord::default(),
        user_data: None,
        reason: "test".into(),
    }
}

pub(super) fn number(app: &str, number: &str) -> NumberRecord {
    NumberRecord {
        app: app.into(),
        number: number.into(),
        area_code: "0755".into(),
        state: NumberState::Active,
        needs_reconcile: false,
        updated_at_ms: 1,
        platform_status: Default::default(),
        status_cause: None,
    }
}

/// The keys of `tree` as readers see them (the durable ones).
fn tree_keys(store: &Store, tree: TreeId) -> Vec<Vec<u8>> {
    store
        .trees()
        .tree(tree)
        .iter()
        .map(|e| e.unwrap().0.to_vec())
        .collect()
}

/// Stores binding `n` in `state` with `deadline`, as its own transaction.
pub(super) async fn put(store: &Store, n: u8, state: BindingState, deadline: Option<i64>) {
    store
        .put_binding(&binding(n, state, deadline))
        .await
        .unwrap();
}

/// Whether `err` reports a corrupt entry of `tree`.
pub(super) fn corrupt_in(err: &StoreError, tree: &str) -> bool {
    matches!(err, StoreError::Corrupt { tree: t, .. } if *t == tree)
}

fn expiry_keys(store: &Store) -> Vec<(i64, BindingId)> {
    tree_keys(store, TreeId::Expiry)
        .iter()
        .map(|key| keys::parse_expiry(key).unwrap())
        .collect()
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Store>();
    check::<Arc<Store>>();
}

#[tokio::test]
async fn put_get_delete() {
    let store = Store::open_temporary().unwrap();
    let rec = binding(1, BindingState::Active, Some(5_000));
    assert_eq!(store.get_binding(&rec.id).unwrap(), None);
    store.put_binding(&rec).await.unwrap();
    assert_eq!(store.get_binding(&rec.id).unwrap(), Some(rec.clone()));

    assert!(store.delete_binding(&rec.id).await.unwrap());
    assert!(!store.delete_binding(&rec.id).await.unwrap());
    assert_eq!(store.get_binding(&rec.id).unwrap(), None);
    assert_eq!(store.binding_by_request("ride", "req-1").unwrap(), None);
    assert!(
        tree_keys(&store, TreeId::Requests).is_empty()
            && tree_keys(&store, TreeId::Expiry).is_empty()
    );
}

#[tokio::test]
async fn request_mapping_follows_the_record() {
    let store = Store::open_temporary().unwrap();
    let mut rec = binding(1, BindingState::Pending, None);
    store.put_binding(&rec).await.unwrap();
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(rec.clone())
    );
    assert_eq!(store.binding_by_request("rides", "req-1").unwrap(), None);
    assert_eq!(store.binding_by_request("ride", "req-2").unwrap(), None);

    // A changed request id moves the mapping.
    rec.request_id = Some("req-9".into());
    store.put_binding(&rec).await.unwrap();
    assert_eq!(store.binding_by_request("ride", "req-1").unwrap(), None);
    assert_eq!(
        store.binding_by_request("ride", "req-9").unwrap(),
        Some(rec.clone())
    );
    assert_eq!(tree_keys(&store, TreeId::Requests).len(), 1);

    rec.request_id = None;
    store.put_binding(&rec).await.unwrap();
    assert!(tree_keys(&store, TreeId::Requests).is_empty());
}

#[tokio::test]
async fn put_takes_over_a_request_id_and_delete_keeps_the_new_owner() {
    let store = Store::open_temporary().unwrap();
    let old = binding(1, BindingState::Released, None);
    store.put_binding(&old).await.unwrap();
    let new = BindingRecord {
        request_id: old.request_id.clone(),
        ..binding(2, BindingState::Active, None)
    };
    store.put_binding(&new).await.unwrap();
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(new.clone())
    );

    // Deleting the old binding must not drop the mapping it no longer owns.
    assert!(store.delete_binding(&old.id).await.unwrap());
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(new)
    );
}

#[tokio::test]
async fn a_binding_inserted_under_a_minted_id_still_checks_its_request_id() {
    let store = Store::open_temporary().unwrap();
    let first = BindingRecord {
        id: BindingId::new(),
        ..binding(1, BindingState::Active, Some(9_000))
    };
    store
        .commit(|tx| tx.insert_new_binding(&first))
        .await
        .unwrap();
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(first.clone())
    );

    // Another minted id with the same (app, request_id): refused, nothing written.
    let same_request = BindingRecord {
        id: BindingId::new(),
        request_id: first.request_id.clone(),
        ..binding(2, BindingState::Active, Some(1_000))
    };
    let err = store
        .commit(|tx| tx.insert_new_binding(&same_request))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(tree_keys(&store, TreeId::Bindings).len(), 1);
    assert_eq!(expiry_keys(&store), [(9_000, first.id)]);
}

#[tokio::test]
async fn insert_binding_conflicts_write_nothing() {
    let store = Store::open_temporary().unwrap();
    let first = binding(1, BindingState::Active, Some(9_000));
    store.insert_binding(&first).await.unwrap();

    // Same id again.
    let same_id = BindingRecord {
        request_id: Some("other".into()),
        ..first.clone()
    };
    let err = store.insert_binding(&same_id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Another id with the same (app, request_id).
    let same_request = BindingRecord {
        request_id: first.request_id.clone(),
        ..binding(2, BindingState::Active, Some(1_000))
    };
    let err = store.insert_binding(&same_request).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(tree_keys(&store, TreeId::Bindings).len(), 1);
    assert_eq!(tree_keys(&store, TreeId::Requests).len(), 1);
    assert_eq!(expiry_keys(&store), [(9_000, first.id)]);
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.binding_by_request("ride", "other").unwrap(), None);

    // The same request id in another app is no conflict.
    let other_app = BindingRecord {
        app: "rides".into(),
        ..same_request
    };
    store.insert_binding(&other_app).await.unwrap();
    assert_eq!(
        store.binding_by_request("rides", "req-1").unwrap(),
        Some(other_app)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_with_one_request_id_reserve_once() {
    let store = Arc::new(Store::open_temporary().unwrap());
    let attempts: Vec<_> = (1..=16u8)
        .map(|n| {
            let store = Arc::clone(&store);
            let rec = BindingRecord {
                request_id: Some("same".into()),
                ..binding(n, BindingState::Pending, None)
            };
            tokio::spawn(async move { store.insert_binding(&rec).await })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(tree_keys(&store, TreeId::Bindings).len(), 1);
    let winner = store.binding_by_request("ride", "same").unwrap().unwrap();
    assert_eq!(
        store
            .scan_bindings()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        [winner]
    );
}

#[tokio::test]
async fn expiry_index_follows_state_and_deadline() {
    let store = Store::open_temporary().unwrap();
    let mut rec = binding(1, BindingState::Pending, Some(5_000));
    store.put_binding(&rec).await.unwrap();
    assert_eq!(expiry_keys(&store), [], "only Active bindings expire");

    rec.state = BindingState::Active;
    store.put_binding(&rec).await.unwrap();
    assert_eq!(expiry_keys(&store), [(5_000, rec.id)]);

    rec.expires_at_ms = Some(7_000);
    store.put_binding(&rec).await.unwrap();
    assert_eq!(expiry_keys(&store), [(7_000, rec.id)], "old deadline gone");

    rec.expires_at_ms = None;
    store.put_binding(&rec).await.unwrap();
    assert_eq!(expiry_keys(&store), []);

    rec.expires_at_ms = Some(-3);
    store.put_binding(&rec).await.unwrap();
    assert_eq!(
        expiry_keys(&store),
        [(0, rec.id)],
        "negative deadlines clamp to 0"
    );

    rec.state = BindingState::Released;
    store.put_binding(&rec).await.unwrap();
    assert_eq!(expiry_keys(&store), []);

    rec.state = BindingState::Active;
    store.put_binding(&rec).await.unwrap();
    assert!(store.delete_binding(&rec.id).await.unwrap());
    assert_eq!(expiry_keys(&store), []);
}

#[tokio::test]
async fn due_bindings_earliest_first_with_limit() {
    let store = Store::open_temporary().unwrap();
    assert_eq!(store.next_deadline_ms().unwrap(), None);
    assert_eq!(store.due_bindings(i64::MAX, 10).unwrap(), []);
    // Ids deliberately out of deadline order.
    for (n, deadline) in [(1, 3_000), (2, 1_000), (3, 2_000), (4, 2_000), (5, 9_000)] {
        put(&store, n, BindingState::Active, Some(deadline)).await;
    }
    put(&store, 6, BindingState::Releasing, Some(10)).await;
    put(&store, 7, BindingState::Active, None).await;
    // These reads do not wait for sled to hold what was answered (the expiry round's).
    store.settled().await.unwrap();

    assert_eq!(store.next_deadline_ms().unwrap(), Some(1_000));
    assert_eq!(store.due_bindings(999, 10).unwrap(), []);
    assert_eq!(
        store.due_bindings(1_000, 10).unwrap(),
        [id(2)],
        "deadline == now is due"
    );
    assert_eq!(
        store.due_bindings(3_000, 10).unwrap(),
        [id(2), id(3), id(4), id(1)]
    );
    assert_eq!(store.due_bindings(3_000, 2).unwrap(), [id(2), id(3)]);
    // One app's only: another app's due bindings do not fill the batch.
    let mut other = binding(8, BindingState::Active, Some(500));
    other.app = "another-app".into();
    store.put_binding(&other).await.unwrap();
    store.settled().await.unwrap();
    let app = binding(1, BindingState::Active, None).app;
    assert_eq!(
        store.due_bindings_of(3_000, 2, |a| a == app).unwrap(),
        [id(2), id(3)]
    );
    assert_eq!(
        store
            .due_bindings_of(3_000, 10, |a| a == "another-app")
            .unwrap(),
        [id(8)]
    );
    store.delete_binding(&id(8)).await.unwrap();
    store.settled().await.unwrap();
    assert_eq!(store.due_bindings(i64::MAX, 0).unwrap(), []);
    assert_eq!(store.due_bindings(-1, 10).unwrap(), []);

    put(&store, 2, BindingState::Expired, Some(1_000)).await;
    store.settled().await.unwrap();
    assert_eq!(store.next_deadline_ms().unwrap(), Some(2_000));
}

#[tokio::test]
async fn list_bindings_pages_with_after_and_filter() {
    let store = Store::open_temporary().unwrap();
    for n in 1..=10 {
        let state = if n % 2 == 0 {
            BindingState::Active
        } else {
            BindingState::Released
        };
        store.put_binding(&binding(n, state, None)).await.unwrap();
    }
    let all = |_: &BindingRecord| true;
    let ids = |v: Vec<BindingRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();

    assert_eq!(
        ids(store.list_bindings(None, 3, all).unwrap()),
        [id(1), id(2), id(3)]
    );
    assert_eq!(
        ids(store.list_bindings(Some(&id(3)), 3, all).unwrap()),
        [id(4), id(5), id(6)]
    );
    assert_eq!(
        ids(store.list_bindings(Some(&id(9)), 3, all).unwrap()),
        [id(10)]
    );
    assert_eq!(ids(store.list_bindings(Some(&id(10)), 3, all).unwrap()), []);
    assert_eq!(ids(store.list_bindings(None, 0, all).unwrap()), []);

    // Page through Active ones only; the cursor is the last id returned.
    let active = |r: &BindingRecord| r.state == BindingState::Active;
    let first = ids(store.list_bindings(None, 2, active).unwrap());
    assert_eq!(first, [id(2), id(4)]);
    let second = ids(store.list_bindings(first.last(), 2, active).unwrap());
    assert_eq!(second, [id(6), id(8)]);
    let third = ids(store.list_bindings(second.last(), 2, active).unwrap());
    assert_eq!(third, [id(10)]);
    // `after` need not exist.
    assert_eq!(
        ids(store.list_bindings(Some(&id(5)), 1, active).unwrap()),
        [id(6)]
    );

    let scanned: Vec<_> = store.scan_bindings().map(|r| r.unwrap().id).collect();
    assert_eq!(scanned, (1..=10).map(id).collect::<Vec<_>>());
}

#[tokio::test]
async fn corrupt_values_surface_as_errors() {
    let store = Store::open_temporary().unwrap();
    store
        .trees()
        .bindings
        .insert(keys::binding(&id(1)), &[9, 1, 2][..])
        .unwrap();
    let err = store.get_binding(&id(1)).unwrap_err();
    assert!(corrupt_in(&err, "bindings"), "{err:?}");
    assert!(store.scan_bindings().next().unwrap().is_err());
    assert!(store.list_bindings(None, 10, |_| true).is_err());
    // A transaction that must read the old record aborts rather than guessing its indexes.
    let err = store
        .put_binding(&binding(1, BindingState::Active, Some(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(tree_keys(&store, TreeId::Expiry).is_empty());
}

#[tokio::test]
async fn numbers_by_app_do_not_leak_across_prefixes() {
    let store = Store::open_temporary().unwrap();
    for (app, n) in [
        ("rides", "+861"),
        ("ride", "+8613"),
        ("ride", "+8612"),
        ("r", "+869"),
    ] {
        store.put_number(&number(app, n)).await.unwrap();
    }
    let listed = |app| -> Vec<(String, String)> {
        store
            .numbers(app)
            .unwrap()
            .into_iter()
            .map(|r| (r.app, r.number))
            .collect()
    };
    let pair = |a: &str, n: &str| (a.to_string(), n.to_string());
    assert_eq!(
        listed(Some("ride")),
        [pair("ride", "+8612"), pair("ride", "+8613")]
    );
    assert_eq!(listed(Some("rides")), [pair("rides", "+861")]);
    assert_eq!(listed(Some("rid")), []);
    assert_eq!(listed(None).len(), 4);

    let mut frozen = number("ride", "+8613");
    frozen.state = NumberState::Frozen;
    store.put_number(&frozen).await.unwrap();
    assert_eq!(store.get_number("ride", "+8613").unwrap(), Some(frozen));
    assert_eq!(store.get_number("rides", "+8613").unwrap(), None);
    assert!(store.delete_number("ride", "+8613").await.unwrap());
    assert!(!store.delete_number("ride", "+8613").await.unwrap());
    assert_eq!(listed(Some("ride")), [pair("ride", "+8612")]);
}

#[tokio::test]
async fn unencodable_keys_are_errors_on_write_and_absent_on_read() {
    let store = Store::open_temporary().unwrap();
    let long = "x".repeat(70_000);
    assert!(store.put_number(&number(&long, "1")).await.is_err());
    assert_eq!(store.get_number(&long, "1").unwrap(), None);
    assert_eq!(store.numbers(Some(&long)).unwrap(), []);
    let rec = BindingRecord {
        request_id: Some(long.clone()),
        ..binding(1, BindingState::Active, None)
    };
    assert!(store.put_binding(&rec).await.is_err());
    assert_eq!(store.get_binding(&rec.id).unwrap(), None, "nothing written");
    assert_eq!(store.binding_by_request("ride", &long).unwrap(), None);
}

#[tokio::test]
async fn flushed_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let rec = binding(1, BindingState::Active, Some(4_000));
    {
        let store = Store::open(&options).unwrap();
        assert_eq!(store.path(), options.path);
        store.insert_binding(&rec).await.unwrap();
        store.put_number(&number("ride", "+8613")).await.unwrap();
        store.close().await.unwrap();
    }
    let store = Store::open(&options).unwrap();
    assert_eq!(store.get_binding(&rec.id).unwrap(), Some(rec.clone()));
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(rec)
    );
    assert_eq!(store.next_deadline_ms().unwrap(), Some(4_000));
    assert_eq!(
        store.numbers(Some("ride")).unwrap(),
        [number("ride", "+8613")]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn unknown_store_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    {
        let store = Store::open(&options).unwrap();
        store
            .trees()
            .meta
            .insert(keys::META_FORMAT, codec::encode(&99u32))
            .unwrap();
        store.close().await.unwrap();
    }
    let err = Store::open(&options).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { tree: "meta", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn slots_index_lists_the_bindings_holding_each_x() {
    let store = Store::open_temporary().unwrap();
    let on = |store: &Store, x: &str| -> Vec<BindingId> {
        store
            .bindings_on("ride", x)
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect()
    };
    let mut a = binding(1, BindingState::Pending, None);
    a.x = "+8617000000001".into();
    let mut b = binding(2, BindingState::Active, None);
    b.x = "+8617000000001".into();
    let mut c = binding(3, BindingState::Active, None);
    c.x = "+8617000000002".into();
    for r in [&a, &b, &c] {
        store.put_binding(r).await.unwrap();
    }
    assert_eq!(on(&store, "+8617000000001"), [a.id, b.id]);
    assert_eq!(on(&store, "+8617000000002"), [c.id]);
    // Leaving the slot (released) or moving X updates the index in the same write.
    store
        .put_binding(&BindingRecord {
            state: BindingState::Released,
            ..a.clone()
        })
        .await
        .unwrap();
    store
        .put_binding(&BindingRecord {
            x: "+8617000000002".into(),
            ..b.clone()
        })
        .await
        .unwrap();
    assert!(on(&store, "+8617000000001").is_empty());
    assert_eq!(on(&store, "+8617000000002"), [b.id, c.id]);
    store.delete_binding(&c.id).await.unwrap();
    assert_eq!(on(&store, "+8617000000002"), [b.id]);
    // Another app's X of the same number is another key.
    assert!(
        store
            .bindings_on("rid", "e+8617000000002")
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn meta_values_round_trip() {
    let store = Store::open_temporary().unwrap();
    assert_eq!(store.get_meta("reconcile/rides").unwrap(), None);
    store
        .put_meta("reconcile/rides", b"+8617000000001")
        .await
        .unwrap();
    assert_eq!(
        store.get_meta("reconcile/rides").unwrap().as_deref(),
        Some(&b"+8617000000001"[..])
    );
    store.delete_meta("reconcile/rides").await.unwrap();
    assert_eq!(store.get_meta("reconcile/rides").unwrap(), None);
}

#[tokio::test]
async fn open_index_lists_pending_and_releasing_bindings_only() {
    let store = Store::open_temporary().unwrap();
    let open = |store: &Store| -> Vec<BindingId> {
        store
            .open_bindings()
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect()
    };
    let pending = binding(1, BindingState::Pending, None);
    let active = binding(2, BindingState::Active, None);
    store.put_binding(&pending).await.unwrap();
    store.put_binding(&active).await.unwrap();
    assert_eq!(open(&store), [pending.id]);
    store
        .put_binding(&BindingRecord {
            state: BindingState::Active,
            ..pending.clone()
        })
        .await
        .unwrap();
    store
        .put_binding(&BindingRecord {
            state: BindingState::Releasing,
            ..active.clone()
        })
        .await
        .unwrap();
    assert_eq!(open(&store), [active.id]);
    store.delete_binding(&active.id).await.unwrap();
    assert!(open(&store).is_empty());
}

/// sled 0.34 takes a snapshot file it was still writing when the process died
/// (`snap.<lsn>.generating`, torn) for its newest snapshot and refuses to open. That file is
/// a write nobody relied on: the store removes it, and sled recovers from its previous
/// snapshot and its log. A damaged finished snapshot is still refused.
#[tokio::test]
async fn an_unfinished_sled_snapshot_is_a_torn_write_and_a_damaged_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let rec = binding(1, BindingState::Active, Some(4_000));
    {
        let store = Store::open(&options).unwrap();
        store.insert_binding(&rec).await.unwrap();
        store.close().await.unwrap();
    }
    let torn = options.path.join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&torn, b"torn").unwrap();
    let store = Store::open(&options).unwrap();
    assert_eq!(store.get_binding(&rec.id).unwrap(), Some(rec.clone()));
    assert!(!torn.exists(), "the unfinished snapshot is removed");
    store.close().await.unwrap();
    drop(store);

    let finished = std::fs::read_dir(&options.path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("snap.") && !name.ends_with(".generating")
        })
        .expect("sled wrote a snapshot");
    std::fs::write(&finished, b"torn").unwrap();
    let err = Store::open(&options).unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused { why, .. } if why.contains("damaged")),
        "{err:?}"
    );
}

/// An update writes the record and the index entries that change, not the ones it already had:
/// an AXB binding expiring keeps its request id and subscription mapped without writing them
/// again (each write is a sled insert on the log's applier, hundreds of thousands in an expiry
/// burst), and the store ends up with the same entries as if they had been written. Its one
/// retention entry is in `remembered` (it has a request id), none in `released`.
#[tokio::test]
async fn an_update_writes_only_the_index_entries_that_change() {
    let store = Store::open_temporary().unwrap();
    let active = BindingRecord {
        subscription_id: Some("sub-1".into()),
        ..binding(1, BindingState::Active, Some(9_000))
    };
    store.put_binding(&active).await.unwrap();
    let expired = BindingRecord {
        state: BindingState::Expired,
        updated_at_ms: 9_500,
        released_at_ms: Some(9_500),
        ..active.clone()
    };
    let staged = store.stage(|tx| tx.put_binding(&expired)).unwrap();
    let written: Vec<TreeId> = store.last_staged().into_iter().map(|(t, _)| t).collect();
    staged.await.unwrap();
    for unchanged in [TreeId::Requests, TreeId::Subscriptions, TreeId::Released] {
        assert!(
            !written.contains(&unchanged),
            "{unchanged:?} written: {written:?}"
        );
    }
    for changed in [
        TreeId::Bindings,
        TreeId::Expiry,
        TreeId::Slots,
        TreeId::Remembered,
    ] {
        assert!(
            written.contains(&changed),
            "{changed:?} not written: {written:?}"
        );
    }
    assert_eq!(
        store.binding_by_request("ride", "req-1").unwrap(),
        Some(expired.clone())
    );
    let sub = store
        .commit(|tx| tx.binding_of_subscription("ride", "sub-1"))
        .await
        .unwrap();
    assert_eq!(sub, Some(expired.id));
    // The same again changes nothing but the record (and the change feed).
    let staged = store.stage(|tx| tx.put_binding(&expired)).unwrap();
    let again: Vec<TreeId> = store.last_staged().into_iter().map(|(t, _)| t).collect();
    staged.await.unwrap();
    assert!(
        again
            .iter()
            .all(|t| [TreeId::Bindings, TreeId::Changes].contains(t)),
        "{again:?}"
    );
}
