//! Per-app leadership on three in-process replicas: spread, fencing, a dead node's apps moving
//! within the lease TTL + 3 s, its return, and resigning.

use std::time::Duration;

use tokio::time::Instant;
use xpool::cluster::leadership::LossReason;

use crate::common::{EtcdCluster, Node, TTL, apps, bounded, eventually, fenced_write, settled};

/// How long the three replicas get to spread six apps (handovers after 1 s included).
const SETTLE: Duration = Duration::from_secs(20);

async fn three(cluster: &EtcdCluster, apps: &[String]) -> (Node, Node, Node) {
    tokio::join!(
        Node::start(cluster, "node-a", apps),
        Node::start(cluster, "node-b", apps),
        Node::start(cluster, "node-c", apps),
    )
}

#[tokio::test]
async fn six_apps_spread_over_three_nodes_each_with_one_fenced_leader() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let apps = apps(6);
        let (a, b, c) = three(&cluster, &apps).await;
        // ⌈6 / 3⌉ = 2: once nobody leads more, no handover is pending.
        eventually(SETTLE, "a spread of 2/2/2", || {
            settled(&[&a, &b, &c], &apps, 2)
        })
        .await;
        let client = cluster.client();
        for node in [&a, &b, &c] {
            assert_eq!(node.leads().len(), 2, "{}: {:?}", node.id, node.leads());
            for app in node.leads() {
                let term = node.term(&app).unwrap();
                assert!(
                    fenced_write(&client, &term, &node.id).await,
                    "{app} on {}",
                    node.id
                );
            }
            node.assert_orderly();
        }
    })
    .await;
}

#[tokio::test]
async fn a_dead_nodes_apps_move_within_the_ttl_its_fence_fails_and_it_comes_back() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let apps = apps(6);
        let (a, b, c) = three(&cluster, &apps).await;
        eventually(SETTLE, "a spread of 2/2/2", || {
            settled(&[&a, &b, &c], &apps, 2)
        })
        .await;

        let died = Instant::now();
        let stale = c.crash().await;
        assert_eq!(stale.len(), 2);
        // Failover ≤ lease TTL + 3 s: A and B lead all six, C's keys having expired.
        eventually(
            TTL + Duration::from_secs(3),
            "A and B leading every app",
            || settled(&[&a, &b], &apps, 6),
        )
        .await;
        eprintln!("failover took {:?}", died.elapsed());
        let client = cluster.client();
        for (app, term) in &stale {
            assert!(
                !fenced_write(&client, term, "stale node-c").await,
                "{app}: stale fence held"
            );
        }

        // C comes back under the same id: it registers anew and gets its share back (the spread
        // is restored by handovers once it has been live for `rebalance_after`).
        let c = Node::start(&cluster, "node-c", &apps).await;
        eventually(SETTLE, "the spread restored", || {
            settled(&[&a, &b, &c], &apps, 2)
        })
        .await;
        for node in [&a, &b, &c] {
            node.assert_orderly();
            for app in node.leads() {
                let term = node.term(&app).unwrap();
                assert!(
                    fenced_write(&client, &term, &node.id).await,
                    "{app} on {}",
                    node.id
                );
            }
        }
        let handed: Vec<_> = [&a, &b]
            .iter()
            .flat_map(|n| n.losses.lock().unwrap().clone())
            .collect();
        assert!(
            handed.iter().any(|(_, why)| *why == LossReason::HandedOver),
            "C's share came back by handovers: {handed:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn resign_hands_the_app_over_and_ends_the_term() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let apps = apps(2);
        let (a, b) = tokio::join!(
            Node::start(&cluster, "node-a", &apps),
            Node::start(&cluster, "node-b", &apps),
        );
        eventually(SETTLE, "one app each", || settled(&[&a, &b], &apps, 1)).await;
        let app = a.leads()[0].clone();
        let term = a.term(&app).unwrap();
        assert!(a.elector.resign(&app).await.unwrap(), "A led {app}");
        assert!(term.is_lost(), "the term ends before resign returns");
        let client = cluster.client();
        assert!(!fenced_write(&client, &term, "after resign").await);
        eventually(Duration::from_secs(5), "B taking the app", || {
            b.leads().contains(&app)
        })
        .await;
        assert!(
            a.losses
                .lock()
                .unwrap()
                .contains(&(app.clone(), LossReason::Resigned)),
            "{:?}",
            a.losses
        );
        let new = b.term(&app).unwrap();
        assert!(new.token() > term.token(), "fencing tokens grow");
        // B leads two now, over its share of one: it hands one back once A has been live long
        // enough, and the pair settles again.
        eventually(SETTLE, "one app each again", || {
            settled(&[&a, &b], &apps, 1)
        })
        .await;

        // Not led here, or not configured at all.
        let other = b.leads()[0].clone();
        assert!(!a.elector.resign(&other).await.unwrap());
        assert!(a.elector.resign("no-such-app").await.is_err());

        // A graceful stop resigns what A leads: B takes it at once, not after A's lease.
        let stopped = Instant::now();
        a.elector.stop().await;
        eventually(Duration::from_secs(2), "B leading both", || {
            b.leads().len() == 2
        })
        .await;
        assert!(stopped.elapsed() < TTL, "{:?}", stopped.elapsed());
        assert!(
            a.losses
                .lock()
                .unwrap()
                .iter()
                .any(|(_, why)| *why == LossReason::Stopped),
            "{:?}",
            a.losses
        );
        a.assert_orderly();
        b.assert_orderly();
    })
    .await;
}
