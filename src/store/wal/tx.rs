//! The store's one write path: a closure that reads and writes through a [`Tx`], whose changes
//! become one write-ahead-log record.
//!
//! Writes are serialized by the log's lock, so a closure runs once, alone, and sees sled, the
//! changes still pending in the overlay and its own earlier writes, newest first. Nothing it does
//! touches sled: its changes go to the log and the overlay, and reach sled only after the log
//! record is on disk.

use std::cell::{Cell, RefCell};

use sled::IVec;

use super::overlay::Overlay;
use super::record::{Op, TreeId};
use crate::store::{BindingRecord, StoreError, keys};

/// A binding a transaction wrote: the record before (`None`: new) and after (`None`: deleted).
pub type BindingChange = (Option<BindingRecord>, Option<BindingRecord>);

/// What a read or write inside a transaction returns.
pub(in crate::store) type TxResult<T> = Result<T, StoreError>;

/// The store's sled trees (handles are cheap clones of one database).
#[derive(Clone)]
pub(in crate::store) struct Trees {
    /// id → `BindingRecord`.
    pub bindings: sled::Tree,
    /// (app, request_id) → id.
    pub requests: sled::Tree,
    /// (app, number) → `NumberRecord`.
    pub numbers: sled::Tree,
    /// (deadline, id) → empty.
    pub expiry: sled::Tree,
    /// (app, x, id) → empty, for bindings holding a slot.
    pub slots: sled::Tree,
    /// id → empty, for PENDING and RELEASING bindings.
    pub open: sled::Tree,
    /// Format version, job progress.
    pub meta: sled::Tree,
    /// (left service at, id) → empty, for RELEASED and EXPIRED bindings.
    pub released: sled::Tree,
    /// (left service at, id) → `RequestRef`, for request ids still remembered for a binding
    /// that left service (its record may already be gone).
    pub remembered: sled::Tree,
    /// call id → `CallStored`.
    pub calls: sled::Tree,
    /// (app, session_id) → call id.
    pub sessions: sled::Tree,
    /// (binding id, call id) → empty: a binding's calls.
    pub call_links: sled::Tree,
    /// message id → `MessageStored`.
    pub messages: sled::Tree,
    /// (app, smsIdentifier ‖ mode) → message id.
    pub message_ids: sled::Tree,
    /// seq (u64 BE) → `ChangeStored`: the change feed.
    pub changes: sled::Tree,
    /// (app, subscriptionId) → binding id.
    pub subscriptions: sled::Tree,
}

impl Trees {
    pub(in crate::store) fn open(db: &sled::Db) -> sled::Result<Trees> {
        Ok(Trees {
            bindings: db.open_tree(keys::BINDINGS)?,
            requests: db.open_tree(keys::REQUESTS)?,
            numbers: db.open_tree(keys::NUMBERS)?,
            expiry: db.open_tree(keys::EXPIRY)?,
            slots: db.open_tree(keys::SLOTS)?,
            open: db.open_tree(keys::OPEN)?,
            meta: db.open_tree(keys::META)?,
            released: db.open_tree(keys::RELEASED)?,
            remembered: db.open_tree(keys::REMEMBERED)?,
            calls: db.open_tree(keys::CALLS)?,
            sessions: db.open_tree(keys::SESSIONS)?,
            call_links: db.open_tree(keys::CALL_LINKS)?,
            messages: db.open_tree(keys::MESSAGES)?,
            message_ids: db.open_tree(keys::MESSAGE_IDS)?,
            changes: db.open_tree(keys::CHANGES)?,
            subscriptions: db.open_tree(keys::SUBSCRIPTIONS)?,
        })
    }

    pub fn tree(&self, id: TreeId) -> &sled::Tree {
        match id {
            TreeId::Bindings => &self.bindings,
            TreeId::Requests => &self.requests,
            TreeId::Numbers => &self.numbers,
            TreeId::Expiry => &self.expiry,
            TreeId::Slots => &self.slots,
            TreeId::Open => &self.open,
            TreeId::Meta => &self.meta,
            TreeId::Released => &self.released,
            TreeId::Remembered => &self.remembered,
            TreeId::Calls => &self.calls,
            TreeId::Sessions => &self.sessions,
            TreeId::CallLinks => &self.call_links,
            TreeId::Messages => &self.messages,
            TreeId::MessageIds => &self.message_ids,
            TreeId::Changes => &self.changes,
            TreeId::Subscriptions => &self.subscriptions,
        }
    }

    /// Applies logged changes to sled, in order (after their record is on disk, and in
    /// recovery).
    pub(super) fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        for op in ops {
            let tree = self.tree(op.tree);
            match &op.value {
                Some(value) => _ = tree.insert(op.key.as_slice(), value.as_slice())?,
                None => _ = tree.remove(&op.key)?,
            }
        }
        Ok(())
    }

    /// Runs `f` once as one transaction that reads the `overlay` of pending changes before
    /// sled; its value and the changes it made (none if it failed). The feed's next number
    /// (`next_change`, the log's) moves on only if `f` succeeds.
    pub(super) fn transact<T, E>(
        &self,
        overlay: Overlay<'_>,
        next_change: &mut Option<u64>,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<(T, Vec<Op>), E> {
        let ops = RefCell::new(Vec::new());
        let tree = |id| TxTree {
            trees: self,
            overlay,
            id,
            ops: &ops,
        };
        let tx = Tx {
            binding_changes: RefCell::default(),
            next_change: Cell::new(*next_change),
            feed_floor_written: Cell::new(false),
            bindings: tree(TreeId::Bindings),
            requests: tree(TreeId::Requests),
            numbers: tree(TreeId::Numbers),
            expiry: tree(TreeId::Expiry),
            slots: tree(TreeId::Slots),
            open: tree(TreeId::Open),
            meta: tree(TreeId::Meta),
            released: tree(TreeId::Released),
            remembered: tree(TreeId::Remembered),
            calls: tree(TreeId::Calls),
            sessions: tree(TreeId::Sessions),
            call_links: tree(TreeId::CallLinks),
            messages: tree(TreeId::Messages),
            message_ids: tree(TreeId::MessageIds),
            changes: tree(TreeId::Changes),
            subscriptions: tree(TreeId::Subscriptions),
        };
        let out = f(&tx)?;
        *next_change = tx.next_change.get();
        Ok((out, ops.into_inner()))
    }
}

/// One tree inside a write: reads see the write's own changes, then pending ones, then sled;
/// writes are recorded as [`Op`]s.
pub(in crate::store) struct TxTree<'a> {
    trees: &'a Trees,
    overlay: Overlay<'a>,
    id: TreeId,
    ops: &'a RefCell<Vec<Op>>,
}

impl TxTree<'_> {
    pub fn get(&self, key: impl AsRef<[u8]>) -> TxResult<Option<IVec>> {
        let key = key.as_ref();
        let own = self
            .ops
            .borrow()
            .iter()
            .rev()
            .find(|op| op.tree == self.id && op.key == key)
            .map(|op| op.value.clone());
        if let Some(value) = own {
            return Ok(value.map(IVec::from));
        }
        match self.overlay.get(self.id, key) {
            Some(value) => Ok(value.map(IVec::from)),
            None if !self.overlay.sled_may_hold(self.id, key) => Ok(None),
            None => Ok(self.trees.tree(self.id).get(key)?),
        }
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> TxResult<()> {
        self.record(key.as_ref(), Some(value.as_ref()));
        Ok(())
    }

    /// The greatest key this tree holds or held: in this transaction's changes, the pending
    /// ones or sled. A key removed but not yet applied still counts (a caller that numbers
    /// entries must not reuse it).
    pub fn last_key(&self) -> TxResult<Option<Vec<u8>>> {
        let own = self
            .ops
            .borrow()
            .iter()
            .filter(|op| op.tree == self.id)
            .map(|op| op.key.clone())
            .max();
        let pending = self.overlay.last_key(self.id).map(<[u8]>::to_vec);
        let durable = self
            .trees
            .tree(self.id)
            .last()?
            .map(|(key, _)| key.to_vec());
        Ok(own.max(pending).max(durable))
    }

    /// Removes `key` without reading it first, for a key the caller knows is there (an index
    /// entry its record implies, or one it has just read): a read through the overlay and sled
    /// saved per entry. Removing a key that is not there changes nothing.
    pub fn delete(&self, key: impl AsRef<[u8]>) {
        self.record(key.as_ref(), None);
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> TxResult<bool> {
        let key = key.as_ref();
        let present = self.get(key)?.is_some();
        if present {
            self.delete(key);
        }
        Ok(present)
    }

    fn record(&self, key: &[u8], value: Option<&[u8]>) {
        self.ops.borrow_mut().push(Op {
            tree: self.id,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        });
    }
}

/// One transaction: it runs alone, under the log's lock, and sees every change made before it
/// (durable or not) and its own. Its typed reads and writes are defined beside the data they
/// touch (`store/bindings.rs`, `store/mod.rs`); what it writes becomes one log record.
pub struct Tx<'a> {
    /// Every binding this transaction wrote, as (before, after), in order.
    pub(in crate::store) binding_changes: RefCell<Vec<BindingChange>>,
    /// The change feed's next number, if known (the log keeps it between transactions).
    pub(in crate::store) next_change: Cell<Option<u64>>,
    /// Whether this transaction already wrote the feed's floor to `meta` (see
    /// `Tx::delete_change`).
    pub(in crate::store) feed_floor_written: Cell<bool>,
    pub(in crate::store) bindings: TxTree<'a>,
    pub(in crate::store) requests: TxTree<'a>,
    pub(in crate::store) numbers: TxTree<'a>,
    pub(in crate::store) expiry: TxTree<'a>,
    pub(in crate::store) slots: TxTree<'a>,
    pub(in crate::store) open: TxTree<'a>,
    pub(in crate::store) meta: TxTree<'a>,
    pub(in crate::store) released: TxTree<'a>,
    pub(in crate::store) remembered: TxTree<'a>,
    pub(in crate::store) calls: TxTree<'a>,
    pub(in crate::store) sessions: TxTree<'a>,
    pub(in crate::store) call_links: TxTree<'a>,
    pub(in crate::store) messages: TxTree<'a>,
    pub(in crate::store) message_ids: TxTree<'a>,
    pub(in crate::store) changes: TxTree<'a>,
    pub(in crate::store) subscriptions: TxTree<'a>,
}

impl Tx<'_> {
    /// The bindings this transaction wrote so far, (before, after), in order; taken, so a
    /// second call returns only later ones.
    pub fn take_binding_changes(&self) -> Vec<BindingChange> {
        std::mem::take(&mut *self.binding_changes.borrow_mut())
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("changes", &self.bindings.ops.borrow().len())
            .finish()
    }
}
