//! Leases against a real 3-member cluster: expiry deletes keys, keep-alive keeps them, loss is
//! reported.

mod common;

use std::time::Duration;

use common::{EtcdCluster, bounded, within};

#[tokio::test]
async fn an_expired_lease_deletes_its_keys_and_a_kept_one_does_not() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let ttl = Duration::from_secs(2);

        let lapsing = client.lease_grant(ttl).await.unwrap();
        assert_eq!(lapsing.ttl, ttl);
        client
            .put_with_lease("lapsing", "x", lapsing.id)
            .await
            .unwrap();
        let kept = client.grant_kept_alive(ttl).await.unwrap();
        client.put_with_lease("kept", "y", kept.id()).await.unwrap();
        assert_eq!(
            client.get("lapsing").await.unwrap().first().unwrap().lease,
            lapsing.id
        );

        within(
            ttl + Duration::from_secs(3),
            "the lapsing key's deletion",
            async {
                while !client.get("lapsing").await.unwrap().kvs.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        )
        .await;
        assert_eq!(client.lease_time_to_live(lapsing.id).await.unwrap(), None);

        // Twice the TTL later, the kept lease's key is still there.
        tokio::time::sleep(ttl * 2).await;
        assert!(!kept.is_lost());
        assert_eq!(client.get("kept").await.unwrap().kvs.len(), 1);
        assert!(
            client
                .lease_time_to_live(kept.id())
                .await
                .unwrap()
                .is_some()
        );
    })
    .await;
}

#[tokio::test]
async fn a_revoked_lease_is_reported_lost_and_its_keys_go() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let keeper = client
            .grant_kept_alive(Duration::from_secs(3))
            .await
            .unwrap();
        client
            .put_with_lease("held", "x", keeper.id())
            .await
            .unwrap();

        // Revoked behind the keeper's back: the next renewal learns it is gone.
        client.lease_revoke(keeper.id()).await.unwrap();
        assert!(client.get("held").await.unwrap().kvs.is_empty());
        within(
            Duration::from_secs(3),
            "the keeper's loss report",
            keeper.lost(),
        )
        .await;
        assert!(keeper.is_lost());

        // Revoking again is not an error; dropping a keeper reports it lost.
        client.lease_revoke(keeper.id()).await.unwrap();
        let other = client
            .grant_kept_alive(Duration::from_secs(3))
            .await
            .unwrap();
        let lost = other.lost_token();
        drop(other);
        assert!(lost.is_cancelled());
    })
    .await;
}
