//! Leadership and fencing against a real 3-member cluster, and the node registry.

mod common;

use std::time::Duration;

use common::{EtcdCluster, bounded, within};
use xpool_etcd::{
    Txn, TxnOp,
    election::{self, Campaign},
    registry,
};

const TTL: Duration = Duration::from_secs(2);

#[tokio::test]
async fn one_of_two_wins_and_the_other_takes_over_within_the_ttl() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let (a, b) = (cluster.client(), cluster.client());
        let lease_a = a.grant_kept_alive(TTL).await.unwrap();
        let lease_b = b.grant_kept_alive(TTL).await.unwrap();

        // Both campaign at once: exactly one wins, the loser sees the winner's value.
        let (ra, rb) = tokio::join!(
            election::campaign(&a, "/lead/app", "a", &lease_a),
            election::campaign(&b, "/lead/app", "b", &lease_b),
        );
        let (leader, leader_lease, candidate, candidate_lease, name) =
            match (ra.unwrap(), rb.unwrap()) {
                (Campaign::Won(l), Campaign::Lost { holder, .. }) => {
                    assert_eq!(holder.value, b"a");
                    (l, lease_a, b, lease_b, "b")
                }
                (Campaign::Lost { holder, .. }, Campaign::Won(l)) => {
                    assert_eq!(holder.value, b"b");
                    (l, lease_b, a, lease_a, "a")
                }
                (x, y) => panic!("exactly one must win: {x:?} {y:?}"),
            };
        let first_token = leader.token();
        assert_eq!(
            election::holder(&candidate, "/lead/app")
                .await
                .unwrap()
                .unwrap()
                .create_revision,
            first_token
        );

        // The loser waits; the leader's keep-alive stops (dropped, as if its task died).
        let waiting = tokio::spawn({
            let candidate = candidate.clone();
            async move {
                election::campaign_until_won(&candidate, "/lead/app", name, &candidate_lease).await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "the loser must not lead while the leader's lease lives"
        );
        drop(leader_lease);
        let next = within(TTL + Duration::from_secs(1), "the takeover", waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(next.token() > first_token, "fencing tokens grow");
        within(
            Duration::from_secs(2),
            "the old leader noticing",
            leader.lost(),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_deposed_leaders_fenced_write_fails() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let (a, b) = (cluster.client(), cluster.client());
        let lease_a = a.grant_kept_alive(TTL).await.unwrap();
        let Campaign::Won(old) = election::campaign(&a, "/lead/x", "a", &lease_a)
            .await
            .unwrap()
        else {
            panic!("the only candidate wins")
        };
        let fenced = |leader: &election::Leadership, value: &str| {
            Txn::new()
                .when([leader.fence()])
                .and_then([TxnOp::put("/data/x", value.to_owned())])
        };
        assert!(a.txn(fenced(&old, "from a")).await.unwrap().succeeded);

        // The old leader's lease lapses (it keeps its Leadership handle, as a frozen process
        // would); another candidate takes the key.
        let lease_b = b.grant_kept_alive(TTL).await.unwrap();
        drop(lease_a);
        let new = within(
            TTL + Duration::from_secs(1),
            "the takeover",
            election::campaign_until_won(&b, "/lead/x", "b", &lease_b),
        )
        .await
        .unwrap();

        let late = a.txn(fenced(&old, "stale write from a")).await.unwrap();
        assert!(
            !late.succeeded,
            "a deposed leader's fenced write must not commit"
        );
        assert!(b.txn(fenced(&new, "from b")).await.unwrap().succeeded);
        assert_eq!(
            b.get("/data/x").await.unwrap().first().unwrap().value,
            b"from b"
        );
    })
    .await;
}

#[tokio::test]
async fn deleting_the_key_or_resigning_ends_leadership() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let lease = client
            .grant_kept_alive(Duration::from_secs(5))
            .await
            .unwrap();

        let Campaign::Won(first) = election::campaign(&client, "/lead/y", "n1", &lease)
            .await
            .unwrap()
        else {
            panic!("the only candidate wins")
        };
        // Campaigning again under the same lease finds the key already ours (a retried campaign).
        let Campaign::Won(again) = election::campaign(&client, "/lead/y", "n1", &lease)
            .await
            .unwrap()
        else {
            panic!("the holder's own lease counts as won")
        };
        assert_eq!(again.token(), first.token());
        drop(again);

        // An operator deletes the key: the leader notices, though its lease lives on.
        client.delete("/lead/y").await.unwrap();
        within(Duration::from_secs(3), "the loss", first.lost()).await;
        assert!(!lease.is_lost());

        let Campaign::Won(second) = election::campaign(&client, "/lead/y", "n1", &lease)
            .await
            .unwrap()
        else {
            panic!("the key is free again")
        };
        assert!(second.token() > first.token());
        second.resign().await.unwrap();
        assert!(
            election::holder(&client, "/lead/y")
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn registered_nodes_are_listed_until_their_lease_ends() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let one = client.grant_kept_alive(TTL).await.unwrap();
        let two = client.grant_kept_alive(TTL).await.unwrap();
        registry::register(&client, "/nodes/", "n1", "10.0.0.1:50051", &one)
            .await
            .unwrap();
        registry::register(&client, "/nodes/", "n2", "10.0.0.2:50051", &two)
            .await
            .unwrap();

        let (nodes, _) = registry::list_nodes(&client, "/nodes/").await.unwrap();
        let listed: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.node_id.as_str(), n.advertise_addr.as_str()))
            .collect();
        assert_eq!(listed, [("n1", "10.0.0.1:50051"), ("n2", "10.0.0.2:50051")]);

        drop(two);
        within(TTL + Duration::from_secs(3), "n2 dropping out", async {
            while registry::list_nodes(&client, "/nodes/")
                .await
                .unwrap()
                .0
                .len()
                != 1
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        registry::deregister(&client, "/nodes/", "n1")
            .await
            .unwrap();
        assert!(
            registry::list_nodes(&client, "/nodes/")
                .await
                .unwrap()
                .0
                .is_empty()
        );
    })
    .await;
}
