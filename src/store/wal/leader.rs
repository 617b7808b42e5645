//! Cluster mode: the writes of the apps this replica leads, on their way to etcd
//! (docs/cluster.md, "Write path").
//!
//! A leader's transaction runs like any other, under the log's lock and through the overlay, but
//! its record is not appended to the local log: etcd is where it becomes durable. It waits in
//! [`LeaderWrites`] until the cluster's writer takes it ([`Wal::take_leader_records`]), commits it
//! to etcd in a transaction fenced by its [`Term`], and reports the outcome
//! ([`Wal::finish_leader_records`]) once this replica's copy of etcd has applied it. Until then
//! its changes stay in the leader overlay, which the app's next transactions read first; the
//! copy's own writes do not read it (see `Overlay`).
//!
//! - **Never in sled directly.** Only the copy writes what etcd committed, so sled never holds
//!   a change etcd refused, and a deposed leader has nothing to undo.
//! - **A term that failed stays failed.** Once one record of a term fails (the fence no longer
//!   holds, or etcd's answer was lost), every later write of that term is refused, also one
//!   queued before the failure and not yet taken by the writer: it may have read the failed
//!   one's changes. The app's pool is rebuilt from the copy if this replica leads the app
//!   again, under a new term.
//! - **A transaction that changed nothing** but may have read a leader's pending change (an
//!   idempotent retry finding a binding staged a moment ago) is answered only once the records
//!   before it are: it waits as a record without changes.
//! - **What is kept.** Changes of `meta` keys local to the replica are dropped; a change the
//!   replication does not know ([`Class::Unknown`]) refuses the transaction (a bug to fix, not
//!   a write to lose). Feed entries travel to etcd but stay out of the overlay: the numbers the
//!   leader gave them are provisional, and only the copy's numbers are ever shown.
//!
//! [`Wal::take_leader_records`]: super::Wal::take_leader_records
//! [`Wal::finish_leader_records`]: super::Wal::finish_leader_records

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Notify, oneshot};

use super::overlay::Pending;
use super::record::{Op, TreeId};
use crate::store::StoreError;
use crate::store::replica::{Class, classify};

/// One term of this replica's leadership of an app: writes staged in it are committed to etcd
/// only while the app's leader key still has the create revision `token`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    pub app: String,
    /// The leader key's create revision when this replica won it (the fence).
    pub token: i64,
}

/// Which write path a transaction takes.
#[derive(Debug, Clone, Copy)]
pub enum Lane<'a> {
    /// The local log: a single node's writes, and in cluster mode the replica's own `meta`.
    Local,
    /// The local log, for the copy of etcd (cluster mode): the only local writes of replicated
    /// entries.
    Copy,
    /// A leader's write in cluster mode: to etcd, fenced by the term.
    Leader(&'a Arc<Term>),
}

/// How a leader's write is answered.
pub(super) type Answer = oneshot::Sender<Result<(), StoreError>>;

/// A leader's record on its way to etcd.
#[derive(Debug)]
pub struct LeaderRecord {
    /// Numbers the record's changes in the leader overlay.
    id: u64,
    term: Arc<Term>,
    /// Replicated and feed changes, in the order the transaction made them; none for a record
    /// that only waits for the ones before it.
    ops: Vec<Op>,
    answer: Option<Answer>,
}

impl LeaderRecord {
    /// The term the record was staged in.
    pub fn term(&self) -> &Arc<Term> {
        &self.term
    }

    /// Its changes as (tree, key, value; `None`: removed), in order.
    pub fn ops(&self) -> impl Iterator<Item = (TreeId, &[u8], Option<&[u8]>)> {
        self.ops
            .iter()
            .map(|op| (op.tree, op.key.as_slice(), op.value.as_deref()))
    }

    /// How many changes it carries.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether it only waits for the records before it.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The leader lane's state, under the log's lock.
#[derive(Debug, Default)]
pub(super) struct LeaderWrites {
    /// Changes of every record not yet finished, which leaders' transactions read first.
    pub pending: Pending,
    /// Records staged and not yet taken by the writer, in order.
    queue: Vec<LeaderRecord>,
    /// Records taken and not yet finished.
    in_flight: usize,
    next_id: u64,
    /// Terms with a failed record: their later writes are refused.
    ended: HashSet<Arc<Term>>,
    /// Wakes the writer when a record is queued.
    pub wake: Arc<Notify>,
}

impl LeaderWrites {
    /// Refuses a write in `term` once the term has failed.
    pub fn check(&self, term: &Arc<Term>) -> Result<(), StoreError> {
        if self.ended.contains(term) {
            return Err(not_leader(
                term,
                "this replica's leadership of the app ended",
            ));
        }
        Ok(())
    }

    /// What a leader keeps of a transaction's changes (see the module docs).
    pub fn keep(term: &Term, ops: Vec<Op>) -> Result<Vec<Op>, StoreError> {
        let mut kept = Vec::with_capacity(ops.len());
        for op in ops {
            match classify(op.tree, &op.key) {
                Class::Replicated | Class::Feed => kept.push(op),
                Class::Local => {}
                Class::Unknown => {
                    return Err(StoreError::Corrupt {
                        tree: "meta",
                        detail: format!(
                            "app {}: a write of {} that cluster mode does not replicate (a bug)",
                            term.app,
                            crate::store::keys::describe(&op.key)
                        ),
                    });
                }
            }
        }
        Ok(kept)
    }

    /// Queues a record of `term` with `ops` (kept ones) and returns how its outcome arrives;
    /// `None` when nothing needs waiting for (no changes, and no record before it unfinished).
    pub fn stage(
        &mut self,
        term: &Arc<Term>,
        ops: Vec<Op>,
    ) -> Option<oneshot::Receiver<Result<(), StoreError>>> {
        if ops.is_empty() && self.queue.is_empty() && self.in_flight == 0 {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        for op in ops.iter().filter(|op| op.tree != TreeId::Changes) {
            self.pending.add(id, std::slice::from_ref(op));
        }
        let (answer, outcome) = oneshot::channel();
        self.queue.push(LeaderRecord {
            id,
            term: Arc::clone(term),
            ops,
            answer: Some(answer),
        });
        self.wake.notify_one();
        Some(outcome)
    }

    /// Takes every queued record, in order.
    pub fn take(&mut self) -> Vec<LeaderRecord> {
        let taken = std::mem::take(&mut self.queue);
        self.in_flight += taken.len();
        taken
    }

    /// Drops finished records' changes from the overlay, ends the terms of failed ones and
    /// answers them. Records of an ended term still queued are refused with it: they were
    /// staged while the failed one was unfinished, so they may have read its changes (a
    /// read-only transaction that found a binding staged a moment ago would otherwise be
    /// answered with a binding etcd never held).
    pub fn finish(&mut self, outcomes: Vec<(LeaderRecord, Result<(), StoreError>)>) {
        let mut failed = false;
        for (mut record, outcome) in outcomes {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.pending.applied(record.id, &record.ops);
            if outcome.is_err() {
                failed = true;
                self.ended.insert(Arc::clone(&record.term));
            }
            if let Some(answer) = record.answer.take() {
                // A caller that gave up needs no answer.
                let _ = answer.send(outcome);
            }
        }
        if failed {
            self.refuse_ended();
        }
    }

    /// Takes the queued records of ended terms out of the queue and refuses them.
    fn refuse_ended(&mut self) {
        let (refused, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|record| self.ended.contains(&record.term));
        self.queue = kept;
        for mut record in refused {
            self.pending.applied(record.id, &record.ops);
            let e = not_leader(
                &record.term,
                "an earlier write of this replica's leadership of the app failed",
            );
            if let Some(answer) = record.answer.take() {
                let _ = answer.send(Err(e));
            }
        }
    }

    /// Fails every queued record (the store is closing or its log failed).
    pub fn abandon(&mut self, e: &StoreError) {
        let queued = self.take();
        self.finish(queued.into_iter().map(|r| (r, Err(e.clone()))).collect());
    }
}

/// The error of a leader's write that cannot commit: the caller may retry on whichever replica
/// leads the app now.
fn not_leader(term: &Term, why: &str) -> StoreError {
    StoreError::NotLeader {
        app: term.app.clone(),
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(token: i64) -> Arc<Term> {
        Arc::new(Term {
            app: "app".into(),
            token,
        })
    }

    fn put(key: &[u8]) -> Vec<Op> {
        vec![Op {
            tree: TreeId::Bindings,
            key: key.to_vec(),
            value: Some(b"v".to_vec()),
        }]
    }

    /// A record queued behind one that fails, and taken only after the failure, is refused:
    /// it may have read the failed one's changes (here a read-only transaction waiting for the
    /// binding it found), and must never be answered as if they were committed.
    #[test]
    fn a_record_queued_behind_a_failed_one_is_refused() {
        let (mine, other) = (term(1), term(2));
        let mut writes = LeaderWrites::default();
        let first = writes.stage(&mine, put(b"b1")).expect("a change waits");
        let taken = writes.take();
        assert_eq!(taken.len(), 1);
        // The next records are staged while `b1`'s is unfinished: their transactions could
        // read it through the overlay.
        assert_eq!(
            writes.pending.get(TreeId::Bindings, b"b1"),
            Some(Some(&b"v"[..]))
        );
        let mut reader = writes.stage(&mine, Vec::new()).expect("it waits for b1");
        let mut writer = writes.stage(&mine, put(b"b2")).expect("a change waits");
        let mut elsewhere = writes.stage(&other, put(b"c1")).expect("a change waits");

        let lost = not_leader(&mine, "etcd did not confirm the write");
        writes.finish(taken.into_iter().map(|r| (r, Err(lost.clone()))).collect());

        assert!(matches!(
            first.blocking_recv(),
            Ok(Err(StoreError::NotLeader { .. }))
        ));
        for refused in [&mut reader, &mut writer] {
            let outcome = refused.try_recv().expect("answered at once");
            assert!(
                matches!(outcome, Err(StoreError::NotLeader { .. })),
                "{outcome:?}"
            );
        }
        assert_eq!(writes.pending.get(TreeId::Bindings, b"b2"), None);
        assert_eq!(writes.pending.get(TreeId::Bindings, b"b1"), None);
        // Another term's record goes on to the writer.
        let next = writes.take();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].term(), &other);
        assert!(elsewhere.try_recv().is_err(), "not answered yet");
        assert!(
            writes.check(&mine).is_err(),
            "the failed term takes no more writes"
        );
    }
}
