//! The leader's write path (docs/cluster.md, "Write path"): commits the records of the apps
//! this replica leads to etcd, each in a transaction fenced by its term, and answers them once
//! this replica's copy has applied the revision.
//!
//! # Fencing
//! Every transaction is `If(create_revision(P leader/<app>) == token) Then(puts and deletes)`.
//! etcd orders transactions, and the leader key with this create revision is deleted (lease
//! expired, resigned) before any other replica can create it again, with a higher create
//! revision. So once another replica leads the app, every transaction of this term fails its
//! compare and changes nothing: a deposed leader can never commit a slot the new leader hands
//! out. The new leader serves only after its copy has applied the revision at which it won,
//! so it has seen everything this term committed.
//!
//! # Rounds
//! The writer takes every queued record, groups them by term (records of one app stay in
//! order; apps commit side by side), and packs each group's records whole into transactions
//! of at most [`MAX_OPS`] operations (etcd's default `--max-txn-ops`). A key written twice in
//! one transaction keeps its last write (etcd refuses a key twice). A single record larger
//! than a transaction is split over several, in order: it is then not atomic in etcd (only
//! bulk writes are that large: numbers added, a retention batch).
//!
//! - A compare that fails: another replica leads the app. The group's records fail with
//!   [`StoreError::NotLeader`], and the term is over ([`Writer::ended`]).
//! - etcd unavailable or timed out: whether the transaction committed is unknown, so the term
//!   is over as well (the daemon resigns the app and rebuilds it from the copy if it leads it
//!   again); the callers' retries with the same request id are safe on any replica.
//! - Committed: the records are answered once [`Copy::applied`](super::copy::Copy::applied)
//!   reaches the revision, so a read on this replica after the answer sees the write.
//!
//! # Feed entries
//! A record's change-feed entries become puts of `P f/<app>/<node_id>/<n>`, with `n =
//! group × 128 + position`, `position` the entry's place among the transaction's feed puts. A
//! group is never reused for one (app, node): it is the greater of the last one plus one and the
//! wall clock in microseconds, so a restart (even with an empty disk) starts past every group
//! used before. A deleted entry (retention) becomes a delete of its etcd key, which the copy's
//! map gives ([`Store::feed_id_of`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xpool_etcd::{Client, Compare, CompareOp, Txn, TxnOp};

use super::keys::{Keys, feed_n};
use crate::store::keys::parse_change;
use crate::store::{LeaderRecord, Store, StoreError, Term, TreeId};

/// Operations per etcd transaction: etcd's default `--max-txn-ops`.
pub const MAX_OPS: usize = 128;

/// How long a committed write waits for this replica's copy to apply it before its caller is
/// told the outcome is unknown (the copy is stuck: etcd unreachable for watches, or a slow
/// disk).
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A term the writer ended, and why (for the daemon to resign the app and drop its pool).
#[derive(Debug, Clone)]
pub struct Ended {
    pub term: Arc<Term>,
    pub why: String,
}

/// The writer task; see the module docs.
#[derive(Debug)]
pub struct Writer {
    inner: Arc<Inner>,
    wake: Arc<Notify>,
    ended: mpsc::UnboundedReceiver<Ended>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    store: Arc<Store>,
    keys: Keys,
    node_id: String,
    applied: watch::Receiver<u64>,
    /// The last feed group used.
    group: Mutex<u64>,
    ended: mpsc::UnboundedSender<Ended>,
}

/// One etcd transaction being packed: its operations by etcd key (the last write wins) and
/// how many are feed puts.
#[derive(Default)]
struct Packed {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    at: HashMap<Vec<u8>, usize>,
    feed_puts: u8,
    group: u64,
}

impl Packed {
    fn push(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.at.get(&key) {
            Some(&i) => self.ops[i].1 = value,
            None => {
                self.at.insert(key.clone(), self.ops.len());
                self.ops.push((key, value));
            }
        }
    }

    fn len(&self) -> usize {
        self.ops.len()
    }
}

impl Writer {
    /// The writer for `store` (whose leader writes it enables), committing under `keys` as
    /// node `node_id`; `applied` is the copy's applied revision.
    pub fn new(
        client: Client,
        store: Arc<Store>,
        keys: Keys,
        node_id: impl Into<String>,
        applied: watch::Receiver<u64>,
    ) -> Result<Writer, StoreError> {
        let wake = store.enable_leader_writes()?;
        let (ended_tx, ended) = mpsc::unbounded_channel();
        Ok(Writer {
            inner: Arc::new(Inner {
                client,
                store,
                keys,
                node_id: node_id.into(),
                applied,
                group: Mutex::new(0),
                ended: ended_tx,
            }),
            wake,
            ended,
        })
    }

    /// Terms this writer ended (a failed compare, or an outcome etcd did not confirm), as they
    /// end; taken once.
    pub fn ended(&mut self) -> mpsc::UnboundedReceiver<Ended> {
        std::mem::replace(&mut self.ended, mpsc::unbounded_channel().1)
    }

    /// Commits leaders' records until `cancel`. Records still queued then are answered when
    /// the store closes.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let records = self.inner.store.take_leader_records();
            if records.is_empty() {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = self.wake.notified() => continue,
                }
            }
            let mut by_term: Vec<(Arc<Term>, Vec<LeaderRecord>)> = Vec::new();
            for record in records {
                match by_term.iter_mut().find(|(term, _)| term == record.term()) {
                    Some((_, group)) => group.push(record),
                    None => by_term.push((Arc::clone(record.term()), vec![record])),
                }
            }
            let mut commits = JoinSet::new();
            for (term, records) in by_term {
                let inner = Arc::clone(&self.inner);
                commits.spawn(async move { inner.commit_term(&term, records).await });
            }
            while let Some(done) = commits.join_next().await {
                match done {
                    Ok(outcomes) => self.inner.store.finish_leader_records(outcomes),
                    // The records it held were dropped: their callers see the store closed.
                    Err(e) => tracing::error!(error = %e, "cluster writer: a commit task failed"),
                }
            }
        }
    }
}

/// One term's records in one round: packed into transactions, sent in order.
struct TermRound<'a> {
    inner: &'a Inner,
    term: &'a Arc<Term>,
    packed: Packed,
    /// Records whose changes are all in `packed` (or sent), not yet committed.
    waiting: Vec<LeaderRecord>,
    /// Records whose every transaction committed.
    committed: Vec<LeaderRecord>,
    /// The revision of the last committed transaction.
    revision: u64,
}

impl TermRound<'_> {
    /// Adds `record`, sending what is packed first when the record would not fit with it,
    /// and sending on the way when the record alone is larger than a transaction.
    async fn add(&mut self, record: LeaderRecord) -> Result<(), (LeaderRecord, StoreError)> {
        match self.pack(&record).await {
            Ok(()) => {
                self.waiting.push(record);
                Ok(())
            }
            Err(e) => Err((record, e)),
        }
    }

    async fn pack(&mut self, record: &LeaderRecord) -> Result<(), StoreError> {
        if self.packed.len() + record.len() > MAX_OPS {
            self.send().await?;
        }
        for (tree, key, value) in record.ops() {
            if self.packed.len() >= MAX_OPS {
                self.send().await?;
            }
            self.inner
                .etcd_op(self.term, tree, key, value, &mut self.packed)?;
        }
        Ok(())
    }

    /// Sends what is packed (if anything); on success the records waiting for it are
    /// committed.
    async fn send(&mut self) -> Result<(), StoreError> {
        let packed = std::mem::take(&mut self.packed);
        if packed.len() > 0 {
            self.revision = self.inner.send(self.term, packed).await?;
        }
        self.committed.append(&mut self.waiting);
        Ok(())
    }
}

impl Inner {
    /// Commits one term's records in order; their outcomes.
    async fn commit_term(
        &self,
        term: &Arc<Term>,
        records: Vec<LeaderRecord>,
    ) -> Vec<(LeaderRecord, Result<(), StoreError>)> {
        let mut round = TermRound {
            inner: self,
            term,
            packed: Packed::default(),
            waiting: Vec::new(),
            committed: Vec::new(),
            revision: 0,
        };
        let mut outcomes = Vec::new();
        let mut failed: Option<StoreError> = None;
        for record in records {
            if let Some(e) = &failed {
                outcomes.push((record, Err(e.clone())));
                continue;
            }
            if let Err((record, e)) = round.add(record).await {
                outcomes.push((record, Err(e.clone())));
                failed = Some(e);
            }
        }
        if failed.is_none()
            && let Err(e) = round.send().await
        {
            failed = Some(e);
        }
        if let Some(e) = &failed {
            // Packed or sent without an answer: not committed as far as anyone knows.
            outcomes.extend(round.waiting.drain(..).map(|r| (r, Err(e.clone()))));
            let _ = self.ended.send(Ended {
                term: Arc::clone(term),
                why: e.to_string(),
            });
        }
        let applied = self.wait_applied(term, round.revision).await;
        outcomes.extend(round.committed.into_iter().map(|r| (r, applied.clone())));
        outcomes
    }

    /// Adds the etcd operation for one change of a record of `term` to `packed`.
    fn etcd_op(
        &self,
        term: &Term,
        tree: TreeId,
        key: &[u8],
        value: Option<&[u8]>,
        packed: &mut Packed,
    ) -> Result<(), StoreError> {
        let (etcd_key, value) = match (tree, value) {
            (TreeId::Changes, Some(change)) => {
                if packed.group == 0 {
                    packed.group = self.next_group();
                }
                let n = feed_n(packed.group, packed.feed_puts);
                packed.feed_puts += 1;
                let key = self.keys.feed(&term.app, &self.node_id, n);
                (key, Some(change.to_vec()))
            }
            (TreeId::Changes, None) => {
                let id = parse_change(key)
                    .map(|number| self.store.feed_id_of(number))
                    .transpose()?
                    .flatten();
                match id {
                    Some(id) => (self.keys.feed_key(&id), None),
                    // Not in this replica's copy: nothing in etcd to delete.
                    None => return Ok(()),
                }
            }
            (tree, value) => match self.keys.data(tree, key) {
                Ok(etcd_key) => (etcd_key, value.map(<[u8]>::to_vec)),
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        tree: "etcd",
                        detail: format!("app {}: {e}", term.app),
                    });
                }
            },
        };
        packed.push(etcd_key, value);
        Ok(())
    }

    /// Commits `packed` fenced by `term`; the revision it committed at.
    async fn send(&self, term: &Term, packed: Packed) -> Result<u64, StoreError> {
        let ops = packed.ops.into_iter().map(|(key, value)| match value {
            Some(value) => TxnOp::put(key, value),
            None => TxnOp::delete(key),
        });
        let fence =
            Compare::create_revision(self.keys.leader(&term.app), CompareOp::Equal, term.token);
        let txn = Txn::new().when([fence]).and_then(ops);
        match self.client.txn(txn).await {
            Ok(response) if response.succeeded => Ok(u64::try_from(response.revision).unwrap_or(0)),
            Ok(_) => Err(not_leader(
                term,
                "another replica leads the app now (the leader key changed)",
            )),
            Err(e) => Err(not_leader(
                term,
                &format!("etcd did not confirm the write ({e}); whether it committed is unknown"),
            )),
        }
    }

    /// Waits until this replica's copy has applied `revision`.
    async fn wait_applied(&self, term: &Term, revision: u64) -> Result<(), StoreError> {
        if revision == 0 {
            return Ok(());
        }
        let mut applied = self.applied.clone();
        match tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|r| *r >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(not_leader(term, "this replica's copy of etcd stopped")),
            Err(_) => Err(not_leader(
                term,
                &format!(
                    "etcd committed the write at revision {revision}, but this replica's copy \
                     has not applied it within {APPLY_TIMEOUT:?}"
                ),
            )),
        }
    }

    /// The next feed group (see the module docs).
    fn next_group(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut last = self.group.lock().unwrap_or_else(PoisonError::into_inner);
        *last = (*last + 1).max(now);
        *last
    }
}

/// The error of a record this term could not commit.
fn not_leader(term: &Term, why: &str) -> StoreError {
    StoreError::NotLeader {
        app: term.app.clone(),
        why: why.to_owned(),
    }
}
