//! The leader's write path (`xpool::cluster::writer`): a store in cluster mode whose app
//! transactions go to etcd fenced by their term, and come back through the copy.

use std::sync::Arc;
use std::time::Duration;

use xpool::cluster::writer::Writer;
use xpool::store::replica::Class;
use xpool::store::{ChangeStored, Lane, Store, StoreError, Term, Tx};
use xpool_etcd::Client;

use super::writer::{binding, change, number, released};
use super::{APP, Follower, PREFIX, bounded, cluster, feed};
use tokio_util::sync::CancellationToken;
use xpool::cluster::keys::Keys;

/// A replica leading `APP`: its store and copy, and the writer that commits its terms' writes.
struct LeaderNode {
    node: Follower,
    writer_stop: CancellationToken,
    ended: tokio::sync::mpsc::UnboundedReceiver<xpool::cluster::writer::Ended>,
}

impl LeaderNode {
    fn start(client: Client, node_id: &str) -> LeaderNode {
        let node = Follower::start(client.clone(), Store::open_temporary().unwrap(), node_id);
        let mut writer = Writer::new(
            client,
            Arc::clone(&node.store),
            Keys::new(PREFIX),
            node_id,
            node.applied.clone(),
        )
        .unwrap();
        let ended = writer.ended();
        let writer_stop = CancellationToken::new();
        tokio::spawn(writer.run(writer_stop.clone()));
        LeaderNode {
            node,
            writer_stop,
            ended,
        }
    }

    /// Takes the leader key (as a won campaign does) once the copy has caught up with it.
    async fn win(&mut self, client: &Client) -> Arc<Term> {
        let key = format!("{PREFIX}leader/{APP}");
        let _ = client.delete(key.clone()).await.unwrap();
        let token = client.put(key, self.node_id()).await.unwrap();
        self.node.caught_up(u64::try_from(token).unwrap()).await;
        Arc::new(Term {
            app: APP.into(),
            token,
        })
    }

    fn node_id(&self) -> String {
        "leader".into()
    }

    async fn write<T: Send>(
        &self,
        term: &Arc<Term>,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.node.store.commit_in(Lane::Leader(term), f).await
    }

    async fn stop(self) {
        self.writer_stop.cancel();
        self.node.stop().await;
    }
}

/// The same transactions on the leader (through etcd) and on a plain single node.
async fn both<T: Send>(
    leader: &LeaderNode,
    plain: &Store,
    term: &Arc<Term>,
    f: impl Fn(&Tx<'_>) -> Result<T, StoreError>,
) -> T {
    plain.commit(&f).await.unwrap();
    leader.write(term, &f).await.unwrap()
}

/// A mixed workload through the leader's write path: a follower, and the leader's own store,
/// end up holding what a single node holds after the same transactions; every write is
/// readable on the leader once acknowledged; the feed carries the same entries on both.
#[tokio::test]
async fn a_leaders_writes_reach_every_replica_through_etcd() {
    bounded(async {
        let Some(cluster) = cluster().await else {
            return;
        };
        let client = cluster.client();
        let mut leader = LeaderNode::start(client.clone(), "leader");
        let mut follower = Follower::start(client.clone(), Store::open_temporary().unwrap(), "f");
        let plain = Store::open_temporary().unwrap();
        let term = leader.win(&client).await;
        for i in 0..30u64 {
            both(&leader, &plain, &term, |tx| {
                tx.put_number(&number(i % 7, i))
            })
            .await;
            // Acknowledged means readable here.
            let stored = leader.node.store.get_number(APP, &number(i % 7, i).number);
            assert_eq!(
                stored.unwrap().unwrap().updated_at_ms,
                i64::try_from(i).unwrap()
            );
            both(&leader, &plain, &term, |tx| tx.insert_binding(&binding(i))).await;
            if i % 3 == 2 {
                both(&leader, &plain, &term, |tx| {
                    let old = tx.get_binding(&binding(i - 1).id)?.unwrap();
                    tx.replace_binding(&old, &released(old.clone(), i))
                })
                .await;
            }
            if i % 5 == 4 {
                both(&leader, &plain, &term, |tx| {
                    tx.purge_binding(&binding(i - 4).id, true).map(drop)
                })
                .await;
            }
            let changes: Vec<ChangeStored> = (0..=i % 3).map(|k| change(i, k)).collect();
            both(&leader, &plain, &term, |tx| tx.append_changes(&changes)).await;
            both(&leader, &plain, &term, |tx| {
                tx.put_meta("reconcile/ride", i.to_string().as_bytes())
            })
            .await;
        }
        // Retention deletes the two oldest feed entries, by each store's own numbers.
        let oldest: Vec<u64> = feed(&leader.node.store)
            .iter()
            .take(2)
            .map(|c| c.0)
            .collect();
        leader
            .write(&term, |tx| {
                oldest.iter().try_for_each(|n| tx.delete_change(*n))
            })
            .await
            .unwrap();
        let oldest: Vec<u64> = feed(&plain).iter().take(2).map(|c| c.0).collect();
        plain
            .commit(|tx| oldest.iter().try_for_each(|n| tx.delete_change(*n)))
            .await
            .unwrap();

        let revision = *leader.node.applied.borrow();
        follower.caught_up(revision).await;
        let expected = plain.entries_of(Class::Replicated).unwrap();
        for store in [&leader.node.store, &follower.store] {
            let got = store.entries_of(Class::Replicated).unwrap();
            assert_eq!(got.len(), expected.len(), "entry counts");
            assert!(got == expected, "a replica differs from a single node");
            let got: Vec<ChangeStored> = feed(store).into_iter().map(|c| c.1).collect();
            let want: Vec<ChangeStored> = feed(&plain).into_iter().map(|c| c.1).collect();
            assert_eq!(got, want, "the feed");
        }
        assert_eq!(
            feed(&leader.node.store),
            feed(&follower.store),
            "the same numbers"
        );
        assert!(leader.ended.try_recv().is_err(), "no term ended");
        leader.stop().await;
        follower.stop().await;
    })
    .await;
}

/// Once another replica holds the leader key, the old term's writes fail and change nothing,
/// the term stays ended, and local writes of replicated entries are refused in cluster mode.
#[tokio::test]
async fn a_deposed_leaders_writes_fail_and_change_nothing() {
    bounded(async {
        let Some(cluster) = cluster().await else {
            return;
        };
        let client = cluster.client();
        let mut leader = LeaderNode::start(client.clone(), "leader");
        let term = leader.win(&client).await;
        leader
            .write(&term, |tx| tx.put_number(&number(1, 1)))
            .await
            .unwrap();

        // Another replica takes the key: a new create revision.
        let key = format!("{PREFIX}leader/{APP}");
        client.delete(key.clone()).await.unwrap();
        client.put(key, "other").await.unwrap();
        let before = client.get_prefix(format!("{PREFIX}d/")).await.unwrap();

        // Two writes staged before either is answered: the second reads the first.
        let first = leader
            .node
            .store
            .stage_in(Lane::Leader(&term), |tx| tx.put_number(&number(2, 2)))
            .unwrap();
        let second = leader
            .node
            .store
            .stage_in(Lane::Leader(&term), |tx| {
                Ok::<_, StoreError>(tx.get_number(APP, &number(2, 2).number)?.is_some())
            })
            .unwrap();
        assert!(
            *second.value(),
            "a leader's write reads the one staged before it"
        );
        assert!(matches!(
            first.durable().await,
            Err(StoreError::NotLeader { .. })
        ));
        assert!(
            matches!(second.durable().await, Err(StoreError::NotLeader { .. })),
            "what read a failed write fails with it"
        );
        let ended = leader.ended.recv().await.unwrap();
        assert_eq!(ended.term, term);

        // Nothing reached etcd, and the term stays over.
        let after = client.get_prefix(format!("{PREFIX}d/")).await.unwrap();
        assert_eq!(before.kvs, after.kvs);
        let refused = leader.write(&term, |tx| tx.put_number(&number(3, 3))).await;
        assert!(
            matches!(refused, Err(StoreError::NotLeader { .. })),
            "{refused:?}"
        );
        assert!(
            leader
                .node
                .store
                .get_number(APP, &number(2, 2).number)
                .unwrap()
                .is_none()
        );

        // A local write of a replicated entry is a bug in cluster mode: refused.
        let local = leader.node.store.put_number(&number(4, 4)).await;
        assert!(
            matches!(local, Err(StoreError::NotLeader { .. })),
            "{local:?}"
        );

        // Winning again is a new term, which sees none of the failed writes.
        let term = leader.win(&client).await;
        let seen = leader
            .write(&term, |tx| tx.get_number(APP, &number(2, 2).number))
            .await
            .unwrap();
        assert!(seen.is_none());
        leader
            .write(&term, |tx| tx.put_number(&number(5, 5)))
            .await
            .unwrap();
        leader.stop().await;
    })
    .await;
}

/// A plain app setup for the pool: X mode, no platform.
fn x_app(name: &str) -> xpool::lifecycle::AppSetup {
    xpool::lifecycle::AppSetup {
        name: name.into(),
        rules: xpool::lifecycle::Rules {
            mode: xpool::platform::Mode::X,
            max_bindings_per_x: 100,
            extension_digits: 4,
            max_extensions_per_x: None,
            cool_down_ms: 0,
            fallback_areas: Vec::new(),
        },
        client: None,
        pending_recheck: std::time::Duration::ZERO,
        check_numbers_on_add: false,
        call_defaults: xpool::lifecycle::CallOptions::default(),
        tasks: tokio_util::task::TaskTracker::new(),
        cancel: CancellationToken::new(),
    }
}

/// In cluster mode the call log writes an app's records under the term of this replica's
/// leadership of the app, and refuses (LEADER_UNAVAILABLE, so the push is sent again) those of
/// an app it does not lead. Its retention deletes only the led apps' records, feed entries
/// included, through etcd, and the other replicas' copies follow.
#[tokio::test]
async fn the_call_log_writes_and_prunes_the_led_apps_records_through_etcd() {
    use xpool::calls::{CallLog, CallLogSettings};
    use xpool::lifecycle::{Clock, OffsetClock, Pool, Reason, RetentionPolicy};
    use xpool::platform::push::{CallEvent, SmsNotification};

    bounded(async {
        let Some(cluster) = cluster().await else {
            return;
        };
        let client = cluster.client();
        let mut leader = LeaderNode::start(client.clone(), "leader");
        let mut follower = Follower::start(client.clone(), Store::open_temporary().unwrap(), "f");
        let term = leader.win(&client).await;
        // Another app, whose records this replica writes under a term the pool does not hold.
        let other_key = format!("{PREFIX}leader/food");
        let token = client.put(other_key, "elsewhere").await.unwrap();
        leader.node.caught_up(u64::try_from(token).unwrap()).await;
        let other = Arc::new(Term {
            app: "food".into(),
            token,
        });

        let offset = Arc::new(OffsetClock::default());
        let clock: Arc<dyn Clock> = offset.clone();
        let store = Arc::clone(&leader.node.store);
        let retention = RetentionPolicy::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let pool = Pool::standby(
            Arc::clone(&store),
            vec![x_app(APP), x_app("food")],
            &clock,
            retention,
        )
        .unwrap();
        let pool = Arc::new(pool);
        pool.lead(APP, Arc::clone(&term)).await.unwrap();
        let settings = CallLogSettings {
            retention_days: 1,
            watch_retention_hours: 1,
        };
        let calls = CallLog::new(Arc::clone(&store), Arc::clone(&pool), clock, settings);

        let event = |app: &str| -> CallEvent {
            serde_json::from_value(serde_json::json!({"eventType": "callin", "statusInfo": {
                "sessionId": format!("s-{app}"), "caller": "+8613900000001",
                "called": "+8617600000001"}}))
            .unwrap()
        };
        let sms: SmsNotification = serde_json::from_value(serde_json::json!({"smsEvent": {
            "smsIdentifier": "m-1", "notifyMode": "Notify", "calling": "+8613900000001",
            "virtualNumber": "+8617600000001", "smsContent": "hi"}}))
        .unwrap();
        calls.record_event(APP, &event(APP)).await.unwrap();
        calls.record_sms(APP, &sms.sms_event).await.unwrap();
        let refused = calls
            .record_event("food", &event("food"))
            .await
            .unwrap_err();
        assert_eq!(refused.reason(), Reason::LeaderUnavailable, "{refused}");
        // The other app's leader (played here) writes its records under its own term.
        let foods = store.calls_seen_before(i64::MAX, 10, None).unwrap();
        let mut food_call = foods[0].clone();
        // Seen at the same time as the led app's call (ids start with their time).
        food_call.id.0[15] ^= 0xff;
        food_call.app = "food".into();
        food_call.session_id = "s-food".into();
        let mut food_change = feed(&store)[0].1.clone();
        food_change.app = "food".into();
        leader
            .node
            .store
            .commit_in(Lane::Leader(&other), |tx| {
                tx.put_call(&food_call)?;
                tx.append_change(&food_change).map(drop)
            })
            .await
            .unwrap();

        offset.advance(2 * 24 * 3600 * 1000);
        let round = calls.prune().await.unwrap();
        assert_eq!((round.calls, round.messages, round.changes), (1, 1, 2));
        let revision = *leader.node.applied.borrow();
        follower.caught_up(revision).await;
        for store in [&leader.node.store, &follower.store] {
            let left = store.calls_seen_before(i64::MAX, 10, None).unwrap();
            let apps: Vec<&str> = left.iter().map(|c| c.app.as_str()).collect();
            assert_eq!(apps, ["food"], "only the led app's calls are deleted");
            assert!(
                store
                    .messages_seen_before(i64::MAX, 10, None)
                    .unwrap()
                    .is_empty()
            );
            let feed: Vec<String> = feed(store).into_iter().map(|c| c.1.app).collect();
            assert_eq!(
                feed,
                ["food"],
                "only the led app's feed entries are deleted"
            );
        }
        leader.stop().await;
        follower.stop().await;
    })
    .await;
}
