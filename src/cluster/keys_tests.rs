//! Every encoding of `keys`, pinned.

use super::*;
use crate::store::keys as store_keys;

fn keys() -> Keys {
    Keys::new("/xpool/")
}

#[test]
fn prefixes() {
    assert_eq!(keys().prefix(), b"/xpool/");
    assert_eq!(keys().data_prefix(), b"/xpool/d/");
    assert_eq!(keys().feed_prefix(), b"/xpool/f/");
    assert_eq!(keys().applied_prefix(), b"/xpool/applied/");
    assert_eq!(keys().applied("node-1"), b"/xpool/applied/node-1");
}

#[test]
fn data_key_is_the_tree_byte_then_the_store_key() {
    let number = store_keys::number("ride", "+861").unwrap();
    let key = keys().data(TreeId::Numbers, &number).unwrap();
    let mut expected = b"/xpool/d/\x02".to_vec();
    expected.extend_from_slice(&[0, 4, b'r', b'i', b'd', b'e', 0, 4, b'+', b'8', b'6', b'1']);
    assert_eq!(key, expected);
    assert_eq!(
        keys().parse(&key),
        EtcdKey::Data {
            tree: TreeId::Numbers,
            key: &number
        }
    );
    let job = keys().data(TreeId::Meta, b"job/reconcile/ride").unwrap();
    assert_eq!(job, b"/xpool/d/\x06job/reconcile/ride");
    assert_eq!(
        keys().parse(&job),
        EtcdKey::Data {
            tree: TreeId::Meta,
            key: b"job/reconcile/ride"
        }
    );
}

#[test]
fn entries_that_are_not_data_have_no_data_key() {
    let refused = |tree, key: &[u8]| keys().data(tree, key).unwrap_err().class;
    assert_eq!(refused(TreeId::Changes, &[0; 8]), Class::Feed);
    assert_eq!(refused(TreeId::Meta, b"format"), Class::Local);
    assert_eq!(refused(TreeId::Meta, b"replica/applied"), Class::Local);
    assert_eq!(refused(TreeId::Meta, b"mystery"), Class::Unknown);
    fn parse(key: &[u8]) -> EtcdKey<'_> {
        keys().parse(key)
    }
    assert!(matches!(parse(b"/xpool/d/"), EtcdKey::Invalid(_)));
    assert!(
        matches!(parse(b"/xpool/d/\x63key"), EtcdKey::Invalid(_)),
        "tree 99"
    );
    assert!(matches!(
        parse(b"/xpool/d/\x0e\0\0\0\0\0\0\0\x01"),
        EtcdKey::Invalid(_)
    ));
    assert!(matches!(
        parse(b"/xpool/d/\x06wal/applied"),
        EtcdKey::Invalid(_)
    ));
}

#[test]
fn feed_key_carries_its_place_in_the_transaction() {
    assert_eq!(feed_n(3, 1), 385);
    assert_eq!(feed_position(385), 1);
    assert_eq!(feed_position(feed_n(7, 127)), 127);
    let key = keys().feed("ride", "node-1", feed_n(3, 1));
    assert_eq!(key, b"/xpool/f/ride/node-1/00000000000000000385");
    assert_eq!(
        keys().parse(&key),
        EtcdKey::Feed {
            id: b"ride/node-1/00000000000000000385",
            position: 1
        }
    );
    assert_eq!(keys().feed_key(b"ride/node-1/00000000000000000385"), key);
    let max = keys().feed("a", "n", u64::MAX);
    assert_eq!(max, b"/xpool/f/a/n/18446744073709551615");
    assert!(matches!(
        keys().parse(&max),
        EtcdKey::Feed { position: 127, .. }
    ));
    for bad in [
        &b"/xpool/f/ride/00000000000000000385"[..],
        b"/xpool/f/ride/n/385",
        b"/xpool/f/ride/n/0000000000000000038x",
    ] {
        assert!(matches!(keys().parse(bad), EtcdKey::Invalid(_)), "{bad:?}");
    }
}

#[test]
fn other_keys_are_not_the_copys() {
    assert_eq!(
        keys().parse(b"/xpool/applied/n1"),
        EtcdKey::Applied { node_id: b"n1" }
    );
    assert_eq!(keys().parse(b"/xpool/leader/ride"), EtcdKey::Other);
    assert_eq!(keys().parse(b"/xpool/nodes/n1"), EtcdKey::Other);
    assert_eq!(keys().parse(b"/other/d/\x02x"), EtcdKey::Other);
    assert_eq!(applied_value(1234), "1234");
    assert_eq!(parse_applied(b"1234"), Some(1234));
    assert_eq!(parse_applied(b"12a"), None);
}

#[test]
fn events_become_store_events() {
    let kv = |key: Vec<u8>, value: &[u8]| KeyValue {
        key,
        value: value.to_vec(),
        create_revision: 5,
        mod_revision: 5,
        version: 1,
        lease: 0,
    };
    let event = |kind, kv| Event { kind, kv };
    let data = keys().data(TreeId::Bindings, &[1; 16]).unwrap();
    assert_eq!(
        keys().event(&event(EventKind::Put, kv(data.clone(), b"v"))),
        Some(Ok(ReplicaEvent::Data {
            tree: TreeId::Bindings,
            key: vec![1; 16],
            value: Some(b"v".to_vec())
        }))
    );
    assert_eq!(
        keys().event(&event(EventKind::Delete, kv(data, b""))),
        Some(Ok(ReplicaEvent::Data {
            tree: TreeId::Bindings,
            key: vec![1; 16],
            value: None
        }))
    );
    let feed = keys().feed("ride", "n1", feed_n(9, 2));
    let id = b"ride/n1/00000000000000001154".to_vec();
    assert_eq!(
        keys().snapshot_entry(&kv(feed.clone(), b"c")),
        Some(Ok(ReplicaEvent::FeedPut {
            id: id.clone(),
            position: 2,
            change: b"c".to_vec()
        }))
    );
    assert_eq!(
        keys().event(&event(EventKind::Delete, kv(feed, b""))),
        Some(Ok(ReplicaEvent::FeedDelete { id }))
    );
    assert_eq!(keys().snapshot_entry(&kv(keys().applied("n1"), b"3")), None);
    assert!(matches!(
        keys().snapshot_entry(&kv(b"/xpool/d/".to_vec(), b"")),
        Some(Err(_))
    ));
}
