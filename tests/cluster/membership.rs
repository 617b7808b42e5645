//! Membership: registration and the live node table, leaving, a lost lease rebuilt, and a
//! node id that is already registered.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use xpool::cluster::Prefix;
use xpool::cluster::leadership::LossReason;
use xpool::cluster::membership::{Membership, MembershipConfig, NodeInfo};

use crate::common::{EtcdCluster, Node, PREFIX, TTL, apps, bounded, eventually, fenced_write};

fn config(id: &str) -> MembershipConfig {
    MembershipConfig {
        node_id: id.to_owned(),
        info: NodeInfo {
            advertise_addr: format!("{id}.xpool:50051"),
            callbacks_addr: Some(format!("{id}.xpool:8090")),
            version: "9.9.9".to_owned(),
            started_at_ms: 1_700_000_000_123,
        },
        lease_ttl: TTL,
        retry_pause: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn replicas_see_each_other_until_one_leaves() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let cancel = CancellationToken::new();
        let prefix = Prefix::new(PREFIX);
        let one = Membership::join(cluster.client(), prefix.clone(), config("n1"), &cancel)
            .await
            .unwrap();
        let two = Membership::join(cluster.client(), prefix.clone(), config("n2"), &cancel)
            .await
            .unwrap();
        let nodes = one.nodes();
        eventually(Duration::from_secs(3), "n1 seeing n2", || {
            nodes.borrow().entries.len() == 2
        })
        .await;
        let table = nodes.borrow().clone();
        assert_eq!(
            table.entries["n2"].value,
            config("n2").info,
            "the JSON round-trips"
        );
        let raw = cluster.client().get(prefix.node("n2")).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&raw.kvs[0].value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "advertise_addr": "n2.xpool:50051",
                "callbacks_addr": "n2.xpool:8090",
                "version": "9.9.9",
                "started_at_ms": 1_700_000_000_123_u64,
            })
        );
        assert_eq!(
            raw.kvs[0].lease,
            two.session().borrow().as_ref().unwrap().lease.id()
        );

        two.leave().await.unwrap();
        eventually(Duration::from_secs(2), "n2 gone at once", || {
            nodes.borrow().entries.keys().eq(["n1"])
        })
        .await;
        one.leave().await.unwrap();
        assert!(
            cluster
                .client()
                .get_prefix(prefix.nodes())
                .await
                .unwrap()
                .kvs
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn a_lost_lease_is_rebuilt_and_the_apps_are_won_again() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let apps = apps(2);
        let node = Node::start(&cluster, "solo", &apps).await;
        eventually(Duration::from_secs(5), "solo leading both", || {
            node.leads().len() == 2
        })
        .await;
        let old = node.term(&apps[0]).unwrap();
        let session = node.membership.session();
        let first = session.borrow().clone().unwrap();
        assert_eq!(first.generation, 1);

        // etcd forgets the lease (an operator, or a partition longer than the TTL).
        let client = cluster.client();
        client.lease_revoke(first.lease.id()).await.unwrap();
        drop(first);
        eventually(Duration::from_secs(5), "a new session", || {
            session.borrow().as_ref().is_some_and(|s| s.generation == 2)
        })
        .await;
        let lease = session.borrow().as_ref().unwrap().lease.id();
        let registered = client.get(Prefix::new(PREFIX).node("solo")).await.unwrap();
        assert_eq!(
            registered.kvs[0].lease, lease,
            "registered again under the new lease"
        );
        eventually(Duration::from_secs(5), "both apps won again", || {
            node.leads().len() == 2 && node.losses.lock().unwrap().len() == 2
        })
        .await;
        assert!(
            node.losses
                .lock()
                .unwrap()
                .iter()
                // The keys' deletion may be seen before the keeper hears the lease is gone.
                .all(|(_, why)| matches!(why, LossReason::LeaseLost | LossReason::Deposed)),
            "{:?}",
            node.losses
        );
        let new = node.term(&apps[0]).unwrap();
        assert!(new.token() > old.token());
        assert!(!fenced_write(&client, &old, "old term").await);
        assert!(fenced_write(&client, &new, "new term").await);
        node.assert_orderly();
    })
    .await;
}

#[tokio::test]
async fn a_node_id_already_registered_is_waited_for_not_taken() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let cancel = CancellationToken::new();
        let prefix = Prefix::new(PREFIX);
        let first = Membership::join(cluster.client(), prefix.clone(), config("dup"), &cancel)
            .await
            .unwrap();
        let second = tokio::spawn({
            let client = cluster.client();
            let prefix = prefix.clone();
            let cancel = cancel.clone();
            async move { Membership::join(client, prefix, config("dup"), &cancel).await }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !second.is_finished(),
            "a live registration must not be overwritten"
        );
        first.leave().await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(3), second)
            .await
            .expect("joined once the first left")
            .unwrap()
            .unwrap();
        let registered = cluster.client().get(prefix.node("dup")).await.unwrap();
        let lease = second.session().borrow().as_ref().unwrap().lease.id();
        assert_eq!(registered.kvs[0].lease, lease);
        second.leave().await.unwrap();
    })
    .await;
}
