//! Watches against a real 3-member cluster: order, resumption across a killed member,
//! compaction.

mod common;

use std::time::Duration;

use common::{EtcdCluster, bounded, within};
use xpool_etcd::{Error, EventKind, Watcher};

/// Collects events until `count` have arrived (ignoring progress notifications).
async fn collect(watcher: &mut Watcher, count: usize) -> Vec<(String, i64, EventKind)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let batch = watcher
            .next()
            .await
            .expect("the watch goes on")
            .expect("no watch error");
        for event in batch.events {
            assert!(event.revision() <= batch.revision);
            let key = String::from_utf8_lossy(&event.kv.key).into_owned();
            seen.push((key, event.revision(), event.kind));
        }
    }
    seen
}

#[tokio::test]
async fn watch_from_a_revision_sees_later_events_in_order() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        client.put("/w/before", "x").await.unwrap();
        let start = client.put("/w/a", "1").await.unwrap();
        client.put("/other", "not watched").await.unwrap();
        client.put("/w/b", "2").await.unwrap();
        client.delete("/w/a").await.unwrap();

        let mut watcher = client.watch_prefix("/w/", start);
        let seen = within(Duration::from_secs(10), "events", collect(&mut watcher, 3)).await;
        let keys: Vec<(&str, EventKind)> = seen
            .iter()
            .map(|(k, _, kind)| (k.as_str(), *kind))
            .collect();
        assert_eq!(
            keys,
            [
                ("/w/a", EventKind::Put),
                ("/w/b", EventKind::Put),
                ("/w/a", EventKind::Delete)
            ]
        );
        assert_eq!(seen[0].1, start);
        assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");

        // Changes made after the watch started arrive too.
        let later = client.put("/w/c", "3").await.unwrap();
        let more = within(
            Duration::from_secs(10),
            "a later event",
            collect(&mut watcher, 1),
        )
        .await;
        assert_eq!(more, [("/w/c".to_owned(), later, EventKind::Put)]);
    })
    .await;
}

#[tokio::test]
async fn watch_resumes_after_its_member_is_killed() {
    bounded(async {
        let Some(mut cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let start = client.put("/r/0", "0").await.unwrap();
        // A fresh client starts on the first endpoint: the watch stream runs on member 0.
        let mut watcher = client.watch_prefix("/r/", start);
        for i in 1..5 {
            client.put(format!("/r/{i}"), i.to_string()).await.unwrap();
        }
        let first = within(Duration::from_secs(10), "events", collect(&mut watcher, 5)).await;

        cluster.kill(0);
        // Writes right after a kill may stall until their deadline if member 0 led (see the
        // failover tests); this test is about the watch, so let the cluster recover first.
        cluster.wait_healthy(Duration::from_secs(20)).await.unwrap();
        for i in 5..10 {
            client.put(format!("/r/{i}"), i.to_string()).await.unwrap();
        }
        let rest = within(
            Duration::from_secs(20),
            "events after the kill",
            collect(&mut watcher, 5),
        )
        .await;

        let all: Vec<String> = first
            .iter()
            .chain(&rest)
            .map(|(k, _, _)| k.clone())
            .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("/r/{i}")).collect();
        assert_eq!(all, expected, "every event once, in order");
        let revisions: Vec<i64> = first.iter().chain(&rest).map(|e| e.1).collect();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    })
    .await;
}

#[tokio::test]
async fn a_compacted_start_revision_is_a_distinct_error() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let first = client.put("/c/a", "1").await.unwrap();
        client.put("/c/a", "2").await.unwrap();
        let compacted = client.put("/c/a", "3").await.unwrap();
        client.compact(compacted, true).await.unwrap();

        let mut watcher = client.watch_prefix("/c/", first);
        let end = within(
            Duration::from_secs(10),
            "the compaction error",
            watcher.next(),
        )
        .await;
        match end {
            Some(Err(Error::Compacted { compact_revision })) => {
                assert_eq!(compact_revision, compacted)
            }
            other => panic!("expected a compaction error, got {other:?}"),
        }
        assert!(
            watcher.next().await.is_none(),
            "the watch ends after the error"
        );

        // From the compact revision on, the history is there.
        let mut watcher = client.watch_prefix("/c/", compacted);
        let seen = within(Duration::from_secs(10), "events", collect(&mut watcher, 1)).await;
        assert_eq!(seen[0].1, compacted);
    })
    .await;
}
