//! Member failures against a real 3-member cluster: one member down keeps the cluster serving;
//! quorum lost makes calls fail within their deadline, and recovery follows the restart.

mod common;

use std::time::Duration;

use common::{EtcdCluster, bounded, within};
use xpool_etcd::{Client, ClientConfig, Error, Txn, TxnOp};

/// How long after a kill the tests wait before writing: a write racing the kill on the dead
/// member's connection has an unknown outcome and is reported `Unavailable`, by design.
const NOTICE: Duration = Duration::from_millis(200);

#[tokio::test]
async fn one_member_down_reads_and_writes_go_on() {
    bounded(async {
        let Some(mut cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        client.put("k", "before").await.unwrap();

        // The first endpoint, where the client's calls go (a follower or the leader).
        cluster.kill(0);
        tokio::time::sleep(NOTICE).await;
        // Reads fail over within their deadline, whoever led.
        assert_eq!(
            client.get("k").await.unwrap().first().unwrap().value,
            b"before"
        );
        cluster.wait_healthy(Duration::from_secs(20)).await.unwrap();
        client.put("k", "after").await.unwrap();
        assert_eq!(
            client.get("k").await.unwrap().first().unwrap().value,
            b"after"
        );
        let txn = Txn::new().and_then([TxnOp::put("t", "x")]);
        assert!(client.txn(txn).await.unwrap().succeeded);
        let status = client.status_all().await;
        assert!(status[0].1.is_err(), "the killed member does not answer");
        assert!(status[1..].iter().all(|(_, s)| s.is_ok()), "{status:?}");
        assert_eq!(client.member_list().await.unwrap().len(), 3);

        // Back again, it catches up.
        cluster.restart(0);
        cluster.wait_healthy(Duration::from_secs(20)).await.unwrap();
        let only_zero = Client::new(ClientConfig::new([cluster.endpoint(0)])).unwrap();
        assert_eq!(
            only_zero.get("k").await.unwrap().first().unwrap().value,
            b"after"
        );
    })
    .await;
}

#[tokio::test]
async fn the_leader_killed_a_write_returns_within_its_deadline_and_then_writes_work() {
    bounded(async {
        let Some(mut cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let deadline = Duration::from_secs(3);
        let client = cluster.client().with_timeout(deadline);
        client.put("k", "before").await.unwrap();
        let leader = cluster.leader().await.expect("a leader");

        // Until the followers notice (an election timeout, 1 s), a write is forwarded to the dead
        // leader and lost; etcd 3.4 then waits for its own request timeout (7 s). So the write
        // may fail, with an unknown outcome, but it returns within its deadline.
        cluster.kill(leader);
        tokio::time::sleep(NOTICE).await;
        let racing = within(
            deadline + Duration::from_secs(3),
            "the racing write",
            client.put("k", "racing"),
        )
        .await;
        assert!(racing.as_ref().is_ok_or_else_unavailable(), "{racing:?}");

        cluster.wait_healthy(Duration::from_secs(20)).await.unwrap();
        client.put("k", "after").await.unwrap();
        assert_eq!(
            client.get("k").await.unwrap().first().unwrap().value,
            b"after"
        );
        assert_ne!(cluster.leader().await, Some(leader));
    })
    .await;
}

/// `Ok`, or an error that says "unavailable": the two outcomes a write racing a failure may have.
trait RacingOutcome {
    fn is_ok_or_else_unavailable(&self) -> bool;
}

impl<T> RacingOutcome for Result<&T, &Error> {
    fn is_ok_or_else_unavailable(&self) -> bool {
        self.is_ok() || self.is_err_and(|e| e.is_unavailable())
    }
}

#[tokio::test]
async fn quorum_lost_calls_fail_within_their_deadline_and_recover() {
    bounded(async {
        let Some(mut cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let deadline = Duration::from_secs(3);
        let client = cluster.client().with_timeout(deadline);
        client.put("q", "1").await.unwrap();

        cluster.kill(1);
        cluster.kill(2);
        tokio::time::sleep(NOTICE).await;
        // Each call returns (bounded by its deadline plus slack), with an unavailable error.
        let slack = deadline + Duration::from_secs(3);
        let write = within(slack, "the write's error", client.put("q", "2")).await;
        assert!(
            write.as_ref().is_err_and(|e| e.is_unavailable()),
            "{write:?}"
        );
        let read = within(slack, "the read's error", client.get("q")).await;
        assert!(read.as_ref().is_err_and(|e| e.is_unavailable()), "{read:?}");
        let txn = within(
            slack,
            "the txn's error",
            client.txn(Txn::new().and_then([TxnOp::put("q", "3")])),
        )
        .await;
        assert!(txn.as_ref().is_err_and(|e| e.is_unavailable()), "{txn:?}");

        cluster.restart(1);
        cluster.restart(2);
        cluster.wait_healthy(Duration::from_secs(20)).await.unwrap();
        client.put("q", "4").await.unwrap();
        assert_eq!(client.get("q").await.unwrap().first().unwrap().value, b"4");
    })
    .await;
}
