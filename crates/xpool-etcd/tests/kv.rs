//! Key/value calls and transactions against a real 3-member cluster.

mod common;

use common::{EtcdCluster, bounded};
use xpool_etcd::{Compare, CompareOp, Error, Range, Txn, TxnOp, TxnOpResponse};

#[tokio::test]
async fn put_get_prefix_and_delete() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();

        let revision = client.put("/t/a", "1").await.unwrap();
        client.put("/t/b", "2").await.unwrap();
        client.put("/u/c", "3").await.unwrap();

        let a = client.get("/t/a").await.unwrap();
        let kv = a.first().unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.create_revision, kv.version),
            (&b"1"[..], revision, 1)
        );
        assert!(client.get("/t/missing").await.unwrap().kvs.is_empty());

        let prefix = client.get_prefix("/t/").await.unwrap();
        let keys: Vec<&[u8]> = prefix.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        assert_eq!(keys, [&b"/t/a"[..], b"/t/b"]);

        // A read at an older revision sees the older value.
        client.put("/t/a", "1b").await.unwrap();
        let old = client
            .range(Range::key("/t/a").revision(revision))
            .await
            .unwrap();
        assert_eq!(old.first().unwrap().value, b"1");

        assert_eq!(client.delete_prefix("/t/").await.unwrap().0, 2);
        assert!(client.get_prefix("/t/").await.unwrap().kvs.is_empty());
    })
    .await;
}

#[tokio::test]
async fn txn_compares_choose_the_branch() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let created = client.put("k", "v1").await.unwrap();

        // create_revision and value hold: the success branch runs and reports its revision.
        let txn = Txn::new()
            .when([
                Compare::create_revision("k", CompareOp::Equal, created),
                Compare::value("k", CompareOp::Equal, "v1"),
                Compare::version("k", CompareOp::Equal, 1),
            ])
            .and_then([TxnOp::put("k", "v2"), TxnOp::get(Range::key("k"))])
            .or_else([TxnOp::delete("k")]);
        let won = client.txn(txn).await.unwrap();
        assert!(won.succeeded);
        assert_eq!(won.revision, created + 1);
        assert_eq!(won.range(1).unwrap()[0].value, b"v2");

        // A stale mod_revision fails the compare: not an error, the failure branch runs.
        let stale = Txn::new()
            .when([Compare::mod_revision("k", CompareOp::Equal, created)])
            .and_then([TxnOp::put("k", "lost")])
            .or_else([TxnOp::get(Range::key("k"))]);
        let lost = client.txn(stale).await.unwrap();
        assert!(!lost.succeeded);
        assert_eq!(lost.range(0).unwrap()[0].mod_revision, created + 1);
        assert_eq!(client.get("k").await.unwrap().first().unwrap().value, b"v2");

        // A missing key has create_revision 0 (how leadership campaigns).
        let create = Txn::new()
            .when([Compare::create_revision("new", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("new", "x")]);
        assert!(client.txn(create.clone()).await.unwrap().succeeded);
        assert!(!client.txn(create).await.unwrap().succeeded);

        let deleted = client
            .txn(Txn::new().and_then([TxnOp::delete_prefix("ne")]))
            .await
            .unwrap();
        assert_eq!(deleted.responses, [TxnOpResponse::Delete { deleted: 1 }]);
    })
    .await;
}

#[tokio::test]
async fn limits_and_compaction_are_distinct_errors() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();

        // etcd 3.4's default --max-txn-ops is 128.
        let ops = (0..129).map(|i| TxnOp::put(format!("op/{i}"), "x"));
        let error = client.txn(Txn::new().and_then(ops)).await.unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
        let ops = (0..128).map(|i| TxnOp::put(format!("op/{i}"), "x"));
        assert!(
            client
                .txn(Txn::new().and_then(ops))
                .await
                .unwrap()
                .succeeded
        );

        let error = client.put("", "no key").await.unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");

        let first = client.put("c", "1").await.unwrap();
        let last = client.put("c", "2").await.unwrap();
        client.compact(last, true).await.unwrap();
        let error = client
            .range(Range::key("c").revision(first))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Compacted { .. }), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn scan_prefix_pages_at_one_revision() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let ops = (0..25).map(|i| TxnOp::put(format!("scan/{i:03}"), i.to_string()));
        client.txn(Txn::new().and_then(ops)).await.unwrap();
        client.put("scan0", "outside the prefix").await.unwrap();

        let all = client.scan_prefix("scan/", 7).await.unwrap();
        assert_eq!(all.kvs.len(), 25);
        assert!(all.kvs.windows(2).all(|w| w[0].key < w[1].key));
        assert_eq!(all.revision, client.get("x").await.unwrap().revision);
    })
    .await;
}

/// A page read at an older revision sees that revision's keys, while its header reports the
/// store's revision now: paging must hold on to the first page's revision.
#[tokio::test]
async fn pages_at_a_fixed_revision_ignore_writes_between_them() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let client = cluster.client();
        let ops = (0..3).map(|i| TxnOp::put(format!("page/{i}"), "old"));
        client.txn(Txn::new().and_then(ops)).await.unwrap();

        let first = client.range(Range::prefix("page/").limit(1)).await.unwrap();
        let revision = first.revision;
        assert!(first.more);
        client.put("page/1", "new").await.unwrap();
        client.put("page/3", "new").await.unwrap();

        let mut next = first.kvs[0].key.clone();
        next.push(0);
        let rest = Range::prefix("page/").starting_at(next).revision(revision);
        let rest = client.range(rest).await.unwrap();
        let values: Vec<(&[u8], &[u8])> = rest
            .kvs
            .iter()
            .map(|kv| (kv.key.as_slice(), kv.value.as_slice()))
            .collect();
        assert_eq!(values, [(&b"page/1"[..], &b"old"[..]), (b"page/2", b"old")]);
        assert_eq!(
            rest.revision,
            revision + 2,
            "the header is the store's revision now"
        );

        let all = client.scan_prefix("page/", 1).await.unwrap();
        assert_eq!(all.kvs.len(), 4);
        assert_eq!(all.revision, revision + 2);
    })
    .await;
}
