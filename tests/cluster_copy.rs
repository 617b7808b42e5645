//! The copy (`xpool::cluster::copy`) against real 3-member etcd clusters on loopback.
//!
//! A writer plays the app's leader as `docs/cluster.md` describes: it runs each transaction
//! on a plain single-node store (the expected state), and writes what the transaction changed
//! to etcd as one fenced transaction (`P d/` puts and deletes, `P f/` feed entries). Followers
//! run [`Copy`] on their own stores; once the writer stops, each follower's replicated entries
//! must equal the plain store's, and its feed must hold the same entries, numbered
//! `revision × 128 + position` alike on every follower.

// Helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xpool::cluster::copy::Copy;
use xpool::cluster::keys::{Keys, feed_n};
use xpool::platform::Mode;
use xpool::store::replica::{Class, Entry, feed_number};
use xpool::store::{
    BindingId, BindingRecord, BindingState, CallOptionsRecord, ChangeKindStored, ChangeStored,
    NumberRecord, NumberState, PlatformStatus, Store, StoreError, StoreOptions, TreeId, Tx,
};
use xpool_etcd::testing::EtcdCluster;
use xpool_etcd::{Client, Compare, CompareOp, Txn, TxnOp};

const PREFIX: &str = "/xpool/";
const APP: &str = "ride";
/// The most one test may take, etcd's start included.
const BOUND: Duration = Duration::from_secs(120);
/// How long a follower may take to catch up with the writer.
const CATCH_UP: Duration = Duration::from_secs(30);

type Entries = Vec<Entry>;

/// Runs a test body within [`BOUND`].
async fn bounded(body: impl Future<Output = ()>) {
    if tokio::time::timeout(BOUND, body).await.is_err() {
        panic!("test did not finish within {BOUND:?}");
    }
}

/// The app's leader, writing to a plain store and, fenced, to etcd.
struct Leader {
    client: Client,
    keys: Keys,
    /// What a single node would hold after the same transactions.
    expected: Store,
    fence: Vec<u8>,
    /// The create revision of the leader key: the fencing token.
    term: i64,
    /// Feed groups used so far (one per transaction).
    groups: u64,
    /// The plain store's feed numbers → the etcd keys of their entries.
    feed: BTreeMap<u64, Vec<u8>>,
    /// The revision of the last transaction.
    revision: u64,
    steps: u64,
}

impl Leader {
    async fn start(client: Client) -> Leader {
        let fence = format!("{PREFIX}leader/{APP}").into_bytes();
        let term = client.put(fence.clone(), "writer").await.unwrap();
        Leader {
            client,
            keys: Keys::new(PREFIX),
            expected: Store::open_temporary().unwrap(),
            fence,
            term,
            groups: 0,
            feed: BTreeMap::new(),
            revision: 0,
            steps: 0,
        }
    }

    /// Runs `f` on the plain store, then writes what it changed to etcd in one transaction.
    async fn write<T: Send>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>) -> T {
        let before = by_key(self.expected.entries_of(Class::Replicated).unwrap());
        let value = self.expected.commit(f).await.unwrap();
        let after = by_key(self.expected.entries_of(Class::Replicated).unwrap());
        let mut ops = Vec::new();
        for ((_, key), (tree, value)) in &after {
            if before.get(&(*tree as u8, key.clone())).map(|(_, v)| v) != Some(value) {
                ops.push(TxnOp::put(
                    self.keys.data(*tree, key).unwrap(),
                    value.clone(),
                ));
            }
        }
        for ((_, key), (tree, _)) in &before {
            if !after.contains_key(&(*tree as u8, key.clone())) {
                ops.push(TxnOp::delete(self.keys.data(*tree, key).unwrap()));
            }
        }
        let feed: BTreeMap<u64, Vec<u8>> = self
            .expected
            .entries_of(Class::Feed)
            .unwrap()
            .into_iter()
            .map(|(_, key, value)| (u64::from_be_bytes(key.try_into().unwrap()), value))
            .collect();
        let gone: Vec<u64> = self
            .feed
            .keys()
            .filter(|n| !feed.contains_key(n))
            .copied()
            .collect();
        for number in gone {
            ops.push(TxnOp::delete(self.feed.remove(&number).unwrap()));
        }
        let group = self.groups;
        self.groups += 1;
        let new: Vec<_> = feed
            .iter()
            .filter(|(n, _)| !self.feed.contains_key(n))
            .collect();
        for (index, (number, change)) in new.into_iter().enumerate() {
            let n = feed_n(group, u8::try_from(index).unwrap());
            let key = self.keys.feed(APP, "writer", n);
            ops.push(TxnOp::put(key.clone(), change.clone()));
            self.feed.insert(*number, key);
        }
        assert!(ops.len() <= 128, "{} operations", ops.len());
        if !ops.is_empty() {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.fence.clone(),
                    CompareOp::Equal,
                    self.term,
                )])
                .and_then(ops);
            let done = self.client.txn(txn).await.unwrap();
            assert!(done.succeeded, "the writer lost its fence");
            self.revision = u64::try_from(done.revision).unwrap();
        }
        value
    }

    /// One step of a mixed workload: numbers, bindings through their life, job progress, feed
    /// entries (1–3 per transaction) and their retention (oldest first, part of a revision).
    async fn step(&mut self) {
        let i = self.steps;
        self.steps += 1;
        let n = i % 7;
        self.write(|tx| tx.put_number(&number(n, i))).await;
        if i % 5 == 4 {
            self.write(|tx| tx.delete_number(APP, &format!("+8617000000{:03}", (i + 3) % 7)))
                .await;
        }
        match i % 3 {
            0 => self.write(|tx| tx.insert_binding(&binding(i))).await,
            1 => {
                self.write(|tx| {
                    let id = binding(i - 1).id;
                    match tx.get_binding(&id)? {
                        Some(old) => tx.replace_binding(&old, &released(old.clone(), i)),
                        None => Ok(()),
                    }
                })
                .await
            }
            _ => {
                if i >= 5 {
                    self.write(|tx| {
                        tx.purge_binding(&binding(i - 5).id, i.is_multiple_of(2))
                            .map(drop)
                    })
                    .await;
                }
            }
        }
        let changes: Vec<ChangeStored> = (0..=i % 3).map(|k| change(i, k)).collect();
        self.write(|tx| tx.append_changes(&changes)).await;
        if i % 4 == 3 {
            self.write(|tx| tx.put_meta("reconcile/ride", i.to_string().as_bytes()))
                .await;
            let oldest: Vec<u64> = self.feed.keys().take(2).copied().collect();
            self.write(|tx| oldest.iter().try_for_each(|n| tx.delete_change(*n)))
                .await;
        }
    }
}

fn by_key(entries: Entries) -> BTreeMap<(u8, Vec<u8>), (TreeId, Vec<u8>)> {
    entries
        .into_iter()
        .map(|(tree, key, value)| ((tree as u8, key), (tree, value)))
        .collect()
}

fn number(n: u64, at: u64) -> NumberRecord {
    NumberRecord {
        app: APP.into(),
        number: format!("+8617000000{n:03}"),
        area_code: "0755".into(),
        state: NumberState::Active,
        needs_reconcile: false,
        updated_at_ms: i64::try_from(at).unwrap(),
        platform_status: PlatformStatus::Normal,
        status_cause: None,
    }
}

fn binding(i: u64) -> BindingRecord {
    let mut id = [0; 16];
    id[8..].copy_from_slice(&i.to_be_bytes());
    BindingRecord {
        id: BindingId(id),
        app: APP.into(),
        mode: Mode::Axb,
        state: BindingState::Active,
        x: format!("+8617000000{:03}", i % 7),
        extension: None,
        y: None,
        party_a: format!("+86139{i:08}"),
        party_b: Some("+8613900000002".into()),
        area_code: "0755".into(),
        subscription_id: Some(format!("sub-{i}")),
        request_id: Some(format!("req-{i}")),
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        expires_at_ms: Some(1_000_000 + i64::try_from(i).unwrap()),
        released_at_ms: None,
        ttl_seconds: 60,
        call_options: CallOptionsRecord::default(),
        user_data: None,
        reason: "copy test".into(),
    }
}

fn released(record: BindingRecord, at: u64) -> BindingRecord {
    let at = 2_000 + i64::try_from(at).unwrap();
    BindingRecord {
        state: BindingState::Released,
        released_at_ms: Some(at),
        updated_at_ms: at,
        ..record
    }
}

fn change(i: u64, k: u64) -> ChangeStored {
    ChangeStored {
        at_ms: i64::try_from(i * 10 + k).unwrap(),
        app: APP.into(),
        kind: ChangeKindStored::NumberStatus,
        binding: None,
        number: None,
        call_event: None,
        message: None,
    }
}

/// A follower: a store and its copy task.
struct Follower {
    store: Arc<Store>,
    applied: watch::Receiver<u64>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Follower {
    fn start(client: Client, store: Store, node_id: &str) -> Follower {
        let store = Arc::new(store);
        let copy = Copy::new(client, Arc::clone(&store), Keys::new(PREFIX), node_id);
        let applied = copy.applied();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(copy.run(cancel.clone()));
        Follower {
            store,
            applied,
            cancel,
            task,
        }
    }

    fn open(client: Client, path: &Path, node_id: &str) -> Follower {
        Follower::start(
            client,
            Store::open(&StoreOptions::new(path)).unwrap(),
            node_id,
        )
    }

    async fn caught_up(&mut self, revision: u64) {
        let reached = self.applied.wait_for(|applied| *applied >= revision);
        let reached = tokio::time::timeout(CATCH_UP, reached)
            .await
            .map(|r| r.is_ok());
        match reached {
            Ok(reached) => assert!(reached, "the copy stopped"),
            Err(_) => panic!(
                "the follower is at {} after {CATCH_UP:?}, not {revision}",
                *self.applied.borrow()
            ),
        }
    }

    /// Stops the copy and closes the store.
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
        self.store.close().await.unwrap();
    }
}

/// The follower holds what the plain store holds, and its feed the same entries in order.
fn assert_follows(follower: &Store, leader: &Leader) {
    let expected = leader.expected.entries_of(Class::Replicated).unwrap();
    let got = follower.entries_of(Class::Replicated).unwrap();
    assert_eq!(got.len(), expected.len(), "entry counts");
    assert!(
        got == expected,
        "the follower's entries differ from a single node's"
    );
    let expected: Vec<ChangeStored> = feed(&leader.expected).into_iter().map(|c| c.1).collect();
    let got = feed(follower);
    assert_eq!(
        got.iter().map(|c| &c.1).collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>()
    );
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "numbers rise");
}

fn feed(store: &Store) -> Vec<(u64, ChangeStored)> {
    store.changes_after(0, 100_000).unwrap()
}

async fn cluster() -> Option<EtcdCluster> {
    EtcdCluster::start(3).await
}

/// A follower from an empty store keeps up with the writer; a second one that starts after
/// the writer stopped catches up by a full copy; both number the feed alike.
#[tokio::test]
async fn followers_hold_what_a_single_node_holds() {
    bounded(async {
        let Some(cluster) = cluster().await else {
            return;
        };
        let mut leader = Leader::start(cluster.client()).await;
        let mut first = Follower::start(cluster.client(), Store::open_temporary().unwrap(), "a");
        for _ in 0..40 {
            leader.step().await;
        }
        first.caught_up(leader.revision).await;
        assert_follows(&first.store, &leader);

        let mut second = Follower::start(cluster.client(), Store::open_temporary().unwrap(), "b");
        second.caught_up(leader.revision).await;
        assert_follows(&second.store, &leader);
        assert_eq!(
            feed(&first.store),
            feed(&second.store),
            "the same numbers on both"
        );

        // Both go on following.
        for _ in 0..10 {
            leader.step().await;
        }
        first.caught_up(leader.revision).await;
        second.caught_up(leader.revision).await;
        assert_follows(&first.store, &leader);
        assert_eq!(feed(&first.store), feed(&second.store));
        let (number, _) = feed(&first.store)[0];
        let id = first.store.feed_id_of(number).unwrap().unwrap();
        assert!(leader.feed.values().any(|key| key.ends_with(&id)));
        assert!(number % 128 < 3 && number / 128 <= leader.revision);

        // Each announces its applied revision.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let announced = cluster
            .client()
            .get(format!("{PREFIX}applied/a"))
            .await
            .unwrap();
        let value = &announced.first().unwrap().value;
        let value: u64 = std::str::from_utf8(value).unwrap().parse().unwrap();
        assert!(value >= leader.revision, "{value}");

        // A revision with nothing for the store (a leadership key, as a new leader's win) is
        // reached too, and recorded in the store within a tick.
        let won = cluster
            .client()
            .put(format!("{PREFIX}leader/other"), "b")
            .await
            .unwrap();
        let won = u64::try_from(won).unwrap();
        first.caught_up(won).await;
        second.caught_up(won).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(first.store.replica_state().unwrap().applied >= won);

        // The followers do not answer each other's `applied/` writes: etcd falls quiet.
        let quiet = cluster.client().get("x").await.unwrap().revision;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(cluster.client().get("x").await.unwrap().revision, quiet);
        first.stop().await;
        second.stop().await;
    })
    .await;
}

/// A follower stopped and started again resumes from the revision its store applied (what it
/// held meanwhile stays: no full copy); one whose revision etcd compacted meanwhile copies in
/// full.
#[tokio::test]
async fn a_restarted_follower_resumes_or_copies_in_full_after_compaction() {
    bounded(async {
        let Some(cluster) = cluster().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("follower");
        let mut leader = Leader::start(cluster.client()).await;
        for _ in 0..10 {
            leader.step().await;
        }
        let mut follower = Follower::open(cluster.client(), &path, "a");
        follower.caught_up(leader.revision).await;
        follower.stop().await;

        // A mark only a full copy would remove: an entry etcd never had.
        let stray = number(99, 0);
        let store = Store::open(&StoreOptions::new(&path)).unwrap();
        let applied = store.replica_state().unwrap().applied;
        assert!(applied >= leader.revision);
        store.put_number(&stray).await.unwrap();
        store.close().await.unwrap();
        drop(store);

        for _ in 0..10 {
            leader.step().await;
        }
        let mut follower = Follower::open(cluster.client(), &path, "a");
        follower.caught_up(leader.revision).await;
        assert!(
            follower
                .store
                .get_number(APP, &stray.number)
                .unwrap()
                .is_some(),
            "no full copy"
        );
        follower
            .store
            .delete_number(APP, &stray.number)
            .await
            .unwrap();
        assert_follows(&follower.store, &leader);
        let resumed = feed(&follower.store);
        follower.store.put_number(&stray).await.unwrap();
        follower.stop().await;

        for _ in 0..10 {
            leader.step().await;
        }
        let compacted = leader.revision;
        cluster
            .client()
            .compact(i64::try_from(compacted).unwrap(), true)
            .await
            .unwrap();
        let mut follower = Follower::open(cluster.client(), &path, "a");
        follower.caught_up(compacted).await;
        assert!(
            follower
                .store
                .get_number(APP, &stray.number)
                .unwrap()
                .is_none(),
            "a full copy"
        );
        assert_follows(&follower.store, &leader);
        // The entries both hold have the same numbers, whether applied one revision at a time
        // or copied in full after some of their revision's entries were deleted.
        let copied = feed(&follower.store);
        let last_resumed = resumed.last().unwrap().0;
        let both: Vec<_> = copied.iter().filter(|c| c.0 <= last_resumed).collect();
        assert!(!both.is_empty());
        assert!(both.iter().all(|c| resumed.contains(c)), "{both:?}");
        for _ in 0..5 {
            leader.step().await;
        }
        follower.caught_up(leader.revision).await;
        assert_follows(&follower.store, &leader);
        follower.stop().await;
    })
    .await;
}

/// The member a follower's watch runs on is killed while the writer writes: the watch resumes
/// on another member, and nothing is lost or applied out of order.
#[tokio::test]
async fn a_killed_etcd_member_loses_no_event() {
    bounded(async {
        let Some(mut cluster) = cluster().await else {
            return;
        };
        let leader_member = cluster.leader().await.expect("etcd has a leader");
        let victim = (leader_member + 1) % 3;
        let others: Vec<String> = (0..3)
            .filter(|&i| i != victim)
            .map(|i| cluster.endpoint(i))
            .collect();
        let mut config = cluster.config();
        config.endpoints = others;
        let mut leader = Leader::start(Client::new(config).unwrap()).await;
        // The follower's client starts on the victim, so its watch runs there.
        let mut config = cluster.config();
        config.endpoints.swap(0, victim);
        let mut follower = Follower::start(
            Client::new(config).unwrap(),
            Store::open_temporary().unwrap(),
            "a",
        );
        for _ in 0..10 {
            leader.step().await;
        }
        follower.caught_up(leader.revision).await;

        let mut seen = follower.applied.clone();
        let watching = tokio::spawn(async move {
            let mut revisions = vec![*seen.borrow_and_update()];
            while seen.changed().await.is_ok() {
                revisions.push(*seen.borrow_and_update());
            }
            revisions
        });
        for i in 0..30 {
            if i == 5 {
                cluster.kill(victim);
            }
            leader.step().await;
        }
        follower.caught_up(leader.revision).await;
        assert_follows(&follower.store, &leader);
        follower.stop().await;
        let revisions = watching.await.unwrap();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    })
    .await;
}

#[test]
fn feed_numbers_are_revision_and_place() {
    assert_eq!(feed_number(3, 2), 386);
}
