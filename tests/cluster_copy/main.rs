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

mod leader_writes;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use writer::{Leader, number};
use xpool::cluster::copy::Copy;
use xpool::cluster::keys::Keys;
use xpool::store::replica::{Class, feed_number};
use xpool::store::{ChangeStored, Store, StoreOptions};
use xpool_etcd::Client;
use xpool_etcd::testing::EtcdCluster;

const PREFIX: &str = "/xpool/";
const APP: &str = "ride";
/// The most one test may take, etcd's start included.
const BOUND: Duration = Duration::from_secs(120);
/// How long a follower may take to catch up with the writer.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Runs a test body within [`BOUND`].
async fn bounded(body: impl Future<Output = ()>) {
    if tokio::time::timeout(BOUND, body).await.is_err() {
        panic!("test did not finish within {BOUND:?}");
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
