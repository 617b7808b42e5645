//! Member failures against a real 3-member cluster: one member down keeps the cluster serving;
//! quorum lost makes calls fail within their deadline, and recovery follows the restart.

mod common;

use std::time::Duration;

use common::{EtcdCluster, bounded, within};
use xpool_etcd::{Client, Txn, TxnOp};

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

        // The first endpoint, where the client's calls go.
        cluster.kill(0);
        tokio::time::sleep(NOTICE).await;
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
        let only_zero = Client::new(xpool_etcd::ClientConfig::new([cluster.endpoint(0)])).unwrap();
        assert_eq!(
            only_zero.get("k").await.unwrap().first().unwrap().value,
            b"after"
        );
    })
    .await;
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
