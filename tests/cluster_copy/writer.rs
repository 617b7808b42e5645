//! The writer that plays an app's leader: each transaction runs on a plain single-node store
//! (what a single node would hold) and what it changed goes to etcd as one fenced transaction,
//! as `docs/cluster.md` describes; and the workload it runs.

use std::collections::BTreeMap;

use xpool::cluster::keys::{Keys, feed_n};
use xpool::platform::Mode;
use xpool::store::replica::{Class, Entry};
use xpool::store::{
    BindingId, BindingRecord, BindingState, CallOptionsRecord, ChangeKindStored, ChangeStored,
    NumberRecord, NumberState, PlatformStatus, Store, StoreError, TreeId, Tx,
};
use xpool_etcd::{Client, Compare, CompareOp, Txn, TxnOp};

use super::{APP, PREFIX};

type Entries = Vec<Entry>;

/// The app's leader, writing to a plain store and, fenced, to etcd.
pub struct Leader {
    pub client: Client,
    pub keys: Keys,
    /// What a single node would hold after the same transactions.
    pub expected: Store,
    pub fence: Vec<u8>,
    /// The create revision of the leader key: the fencing token.
    pub term: i64,
    /// Feed groups used so far (one per transaction).
    pub groups: u64,
    /// The plain store's feed numbers → the etcd keys of their entries.
    pub feed: BTreeMap<u64, Vec<u8>>,
    /// The revision of the last transaction.
    pub revision: u64,
    pub steps: u64,
}

impl Leader {
    pub async fn start(client: Client) -> Leader {
        let fence = format!("{PREFIX}leader/{APP}").into_bytes();
        let term = client.put(fence.clone(), "writer").await.unwrap();
        Leader {
            client,
            keys: Keys::new(PREFIX),
            expected: Store::open_temporary().unwrap(),
            fence,
            term,
            groups: 0,
            feed: BTreeMap::new(),
            revision: 0,
            steps: 0,
        }
    }

    /// Runs `f` on the plain store, then writes what it changed to etcd in one transaction.
    pub async fn write<T: Send>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>) -> T {
        let before = by_key(self.expected.entries_of(Class::Replicated).unwrap());
        let value = self.expected.commit(f).await.unwrap();
        let after = by_key(self.expected.entries_of(Class::Replicated).unwrap());
        let mut ops = Vec::new();
        for ((_, key), (tree, value)) in &after {
            if before.get(&(*tree as u8, key.clone())).map(|(_, v)| v) != Some(value) {
                ops.push(TxnOp::put(
                    self.keys.data(*tree, key).unwrap(),
                    value.clone(),
                ));
            }
        }
        for ((_, key), (tree, _)) in &before {
            if !after.contains_key(&(*tree as u8, key.clone())) {
                ops.push(TxnOp::delete(self.keys.data(*tree, key).unwrap()));
            }
        }
        let feed: BTreeMap<u64, Vec<u8>> = self
            .expected
            .entries_of(Class::Feed)
            .unwrap()
            .into_iter()
            .map(|(_, key, value)| (u64::from_be_bytes(key.try_into().unwrap()), value))
            .collect();
        let gone: Vec<u64> = self
            .feed
            .keys()
            .filter(|n| !feed.contains_key(n))
            .copied()
            .collect();
        for number in gone {
            ops.push(TxnOp::delete(self.feed.remove(&number).unwrap()));
        }
        let group = self.groups;
        self.groups += 1;
        let new: Vec<_> = feed
            .iter()
            .filter(|(n, _)| !self.feed.contains_key(n))
            .collect();
        for (index, (number, change)) in new.into_iter().enumerate() {
            let n = feed_n(group, u8::try_from(index).unwrap());
            let key = self.keys.feed(APP, "writer", n);
            ops.push(TxnOp::put(key.clone(), change.clone()));
            self.feed.insert(*number, key);
        }
        assert!(ops.len() <= 128, "{} operations", ops.len());
        if !ops.is_empty() {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.fence.clone(),
                    CompareOp::Equal,
                    self.term,
                )])
                .and_then(ops);
            let done = self.client.txn(txn).await.unwrap();
            assert!(done.succeeded, "the writer lost its fence");
            self.revision = u64::try_from(done.revision).unwrap();
        }
        value
    }

    /// One step of a mixed workload: numbers, bindings through their life, job progress, feed
    /// entries (1–3 per transaction) and their retention (oldest first, part of a revision).
    pub async fn step(&mut self) {
        let i = self.steps;
        self.steps += 1;
        let n = i % 7;
        self.write(|tx| tx.put_number(&number(n, i))).await;
        if i % 5 == 4 {
            self.write(|tx| tx.delete_number(APP, &format!("+8617000000{:03}", (i + 3) % 7)))
                .await;
        }
        match i % 3 {
            0 => self.write(|tx| tx.insert_binding(&binding(i))).await,
            1 => {
                self.write(|tx| {
                    let id = binding(i - 1).id;
                    match tx.get_binding(&id)? {
                        Some(old) => tx.replace_binding(&old, &released(old.clone(), i)),
                        None => Ok(()),
                    }
                })
                .await
            }
            _ => {
                if i >= 5 {
                    self.write(|tx| {
                        tx.purge_binding(&binding(i - 5).id, i.is_multiple_of(2))
                            .map(drop)
                    })
                    .await;
                }
            }
        }
        let changes: Vec<ChangeStored> = (0..=i % 3).map(|k| change(i, k)).collect();
        self.write(|tx| tx.append_changes(&changes)).await;
        if i % 4 == 3 {
            self.write(|tx| tx.put_meta("reconcile/ride", i.to_string().as_bytes()))
                .await;
            let oldest: Vec<u64> = self.feed.keys().take(2).copied().collect();
            self.write(|tx| oldest.iter().try_for_each(|n| tx.delete_change(*n)))
                .await;
        }
    }
}

fn by_key(entries: Entries) -> BTreeMap<(u8, Vec<u8>), (TreeId, Vec<u8>)> {
    entries
        .into_iter()
        .map(|(tree, key, value)| ((tree as u8, key), (tree, value)))
        .collect()
}

pub fn number(n: u64, at: u64) -> NumberRecord {
    NumberRecord {
        app: APP.into(),
        number: format!("+8617000000{n:03}"),
        area_code: "0755".into(),
        state: NumberState::Active,
        needs_reconcile: false,
        updated_at_ms: i64::try_from(at).unwrap(),
        platform_status: PlatformStatus::Normal,
        status_cause: None,
    }
}

pub fn binding(i: u64) -> BindingRecord {
    let mut id = [0; 16];
    id[8..].copy_from_slice(&i.to_be_bytes());
    BindingRecord {
        id: BindingId(id),
        app: APP.into(),
        mode: Mode::Axb,
        state: BindingState::Active,
        x: format!("+8617000000{:03}", i % 7),
        extension: None,
        y: None,
        party_a: format!("+86139{i:08}"),
        party_b: Some("+8613900000002".into()),
        area_code: "0755".into(),
        subscription_id: Some(format!("sub-{i}")),
        request_id: Some(format!("req-{i}")),
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        expires_at_ms: Some(1_000_000 + i64::try_from(i).unwrap()),
        released_at_ms: None,
        ttl_seconds: 60,
        call_options: CallOptionsRecord::default(),
        user_data: None,
        reason: "copy test".into(),
    }
}

pub fn released(record: BindingRecord, at: u64) -> BindingRecord {
    let at = 2_000 + i64::try_from(at).unwrap();
    BindingRecord {
        state: BindingState::Released,
        released_at_ms: Some(at),
        updated_at_ms: at,
        ..record
    }
}

pub fn change(i: u64, k: u64) -> ChangeStored {
    ChangeStored {
        at_ms: i64::try_from(i * 10 + k).unwrap(),
        app: APP.into(),
        kind: ChangeKindStored::NumberStatus,
        binding: None,
        number: None,
        call_event: None,
        message: None,
    }
}
