//! Durability through a write-ahead log, so that a durable acknowledgement costs one append and
//! one `fdatasync` on a dedicated thread instead of a sled flush.
//!
//! Every store write runs as a transaction ([`Tx`], `tx`) under the log's lock: its closure reads
//! through the overlay of pending changes (`overlay`), and its changes become one checksummed
//! record (`record`) with the next sequence number, appended to an in-memory buffer and added to
//! the overlay. The order of records is the order of the writes. The write is [`Staged`]; awaiting
//! it resolves once the record is on disk.
//!
//! - **Group commit.** The flusher thread takes the whole buffer and every waiter, writes the
//!   buffer to the current segment file, `fdatasync`s once and answers the round's waiters: their
//!   writes are durable. It hands the records to the applier thread, which applies them to sled
//!   in order and then drops them from the overlay, while the flusher goes on with the next
//!   round: a write waits for the syncs before it, not for a large apply (an expiry burst puts
//!   thousands of index changes in one round). A small round ([`INLINE_APPLY_OPS`]), with the
//!   applier idle, the flusher applies itself: cheaper than waking another thread. Past
//!   [`MAX_UNAPPLIED_OPS`] changes not applied, the flusher waits for the applier. The
//!   applier and the checkpointer run at a lower CPU priority ([`BACKGROUND_NICE`]). Without
//!   waiters the flusher still writes every [`BACKGROUND_WRITE_EVERY`]. A write that nobody
//!   waits for can wait without asking for a sync ([`Staged::ride`]): it is answered by
//!   whichever round makes it durable.
//! - **Reads see durable state, and every acknowledged write.** sled holds only changes whose
//!   records are on disk, so a read of sled (the store's plain reads, which take no lock here
//!   when sled is up to date) never sees a change that a crash could still take back. A plain
//!   read first waits until sled holds every write answered before it (`settle`: at once,
//!   unless a round's apply is under way), so a caller that was answered never reads state
//!   without its write. Transactions read the overlay, and wait for nothing.
//! - **Request ids not looked for.** A transaction's read of a `requests` key (a Bind's
//!   request id) skips sled when a Bloom filter of the keys sled and the overlay may hold
//!   rules it out (`request_keys`): nearly every Bind brings a new request id, and its two
//!   misses in sled under the log's lock were 8.5 % of the daemon's CPU in a profile of X-mode
//!   Binds (BENCHMARKS.md). Staged writes note their keys; the `xpool-requests` thread builds
//!   the filter from sled, at a lower CPU priority, a few seconds after open, unless a clean
//!   close saved it; until then nothing is ruled out.
//! - **sled is never ahead of the log.** sled's state after a crash (a prefix of the flusher's
//!   writes, as sled recovers) is a prefix of the log, and replaying the log from any earlier
//!   point onto it gives the log's end state. This is why no write needs a sled transaction
//!   (each of which costs sled a log-buffer write and a `sync_file_range`).
//! - **Checkpoints.** Every [`CHECKPOINT_EVERY`] the checkpointer notes the last record applied
//!   to sled, runs `sled::Db::flush` (sled's own timer flush is off) and deletes the full segments
//!   up to that record. The flusher starts a new segment past [`SEGMENT_BYTES`].
//! - **Prepared segments.** Between checkpoints the checkpointer prepares a spare segment
//!   ([`SPARE`]): its header, then zeros to [`SEGMENT_BYTES`], written and synced. It does so
//!   once the log has written [`SPARE_AFTER`] into a segment it had to create itself (the first
//!   after open), and a quarter into a prepared one: a log that writes little never pays for
//!   one. The flusher moves to the spare when its segment is full, and early from a segment it
//!   created. A record written over zeros the disk already holds needs a sync of its data
//!   only; one that grows the file also commits the file system's journal. A sync over zeros
//!   took 25–50 % less time here (BENCHMARKS.md, "The write-ahead log against okaywal").
//! - **Recovery** (`recover`, at open) reads and checks every segment first, and only if the
//!   whole log is sound applies it to sled, flushes sled and empties the log.
//! - **Close** flushes, stops the threads (the applier once it has applied every record),
//!   flushes sled and deletes the log: a cleanly closed store has no log to replay.
//!
//! Imports run one way: `mod.rs` → `recover`, `tx` → `overlay` → `request_keys` → `record`.
//!
//! - **Failure.** A failed write, sync, apply or checkpoint ends this log: nothing more is
//!   written or acknowledged (the state of a file whose `fdatasync` failed is unknown), every
//!   later write is refused with [`StoreError::Unavailable`], and the records not yet durable are
//!   kept in memory, in order. The store then reopens the database and a new log (`Store::recover`)
//!   and writes them again: the in-memory state built on them stays true, and nothing is lost.

pub(super) mod inspect;
mod leader;
pub(super) mod mark;
mod overlay;
mod record;
mod recover;
#[cfg(test)]
mod repair_tests;
pub(super) mod request_keys;
#[cfg(test)]
pub(super) mod tests;
mod tx;

use std::fs::{File, OpenOptions};
use std::future::{Future, IntoFuture};
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
#[cfg(test)]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use leader::{Lane, LeaderRecord, Term};
pub use record::TreeId;
pub(super) use recover::recover;
pub use tx::{BindingChange, Tx};
pub(super) use tx::{Trees, TxResult, TxTree};

use super::error::{StoreError, is_full};
use super::faults::{self, Point};
use leader::LeaderWrites;
pub(super) use mark::Mark;
use overlay::{Overlay, Pending};
use record::Op;
use request_keys::{Bloom, RequestKeys};

/// How often buffered records are written even when no caller waits for them (a staged write
/// that was dropped); never in unit tests, which look at staged writes before they are durable.
#[cfg(not(test))]
pub const BACKGROUND_WRITE_EVERY: Duration = Duration::from_millis(200);
#[cfg(test)]
pub const BACKGROUND_WRITE_EVERY: Duration = Duration::from_secs(3600);

/// How often sled is flushed so the log can be trimmed (this bounds the work of a recovery).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A group commit or checkpoint this slow is logged (a disk that stalls, or sled that does).
const SLOW_ROUND: Duration = Duration::from_millis(100);

/// Size past which the flusher starts a new segment file (tiny in tests, so they rotate).
#[cfg(not(test))]
pub const SEGMENT_BYTES: u64 = 32 << 20;
#[cfg(test)]
pub const SEGMENT_BYTES: u64 = 4 << 10;

/// The spare segment in the log's directory, prepared by the checkpointer for the flusher to
/// move to. Not a `.wal` file: recovery never reads it, and a stale one is deleted at start.
const SPARE: &str = "next.wal-spare";

/// What the log writes into a segment it created itself before it wants a spare.
const SPARE_AFTER: u64 = SEGMENT_BYTES / 32;

/// Free space the disk must keep besides a spare for the checkpointer to prepare one: a nearly
/// full disk is left to the log's records and sled, which need it more than a faster sync.
const SPARE_HEADROOM: u64 = 4 * SEGMENT_BYTES;

/// Changes synced and not yet applied to sled past which the flusher waits for the applier
/// before its next round (a fraction of a second of applies): what sled does not hold stays
/// in memory until it does.
const MAX_UNAPPLIED_OPS: usize = 1 << 16;

/// Changes in a round up to which the flusher applies the round itself, when the applier is
/// idle: a round of Binds (a few changes each) costs less to apply than to hand over to
/// another thread and wake it (on two cores an X-mode Bind cost a tenth more CPU when every
/// round was handed over: BENCHMARKS.md, "Scenario 5: sled applied on a thread of its own").
/// An expiry batch is larger, and goes to the applier.
pub(super) const INLINE_APPLY_OPS: usize = 256;

/// Changes the applier applies to sled between two announcements of its progress (see
/// [`apply_round`]): one expiry batch (5 changes per binding), a few dozen Binds. Each
/// announcement writes the log's mark to sled and takes the log's lock once.
const PUBLISH_EVERY_OPS: usize = 256;

/// How much of a spare is written before it is synced: the disk never has a whole segment of
/// zeros to write at once, ahead of a group commit's sync.
const SPARE_CHUNK: usize = 1 << 20;

/// How a flush is answered.
type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// Told once when the log fails, with the error later writes get.
pub(super) type OnFailure = Arc<dyn Fn(&StoreError) + Send + Sync>;

/// Records that were staged but never made durable, in order: what a failed log leaves for the
/// next one to write.
#[derive(Default, Clone)]
pub(super) struct Retained(Vec<(u64, Vec<Op>)>);

impl Retained {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Applies the records to `trees`, in order.
    pub fn apply_to(&self, trees: &Trees) -> Result<(), StoreError> {
        self.0.iter().try_for_each(|(_, ops)| trees.apply(ops))
    }

    /// Adds what a later failed log left (the next records in order).
    pub fn extend(&mut self, later: Retained) {
        self.0.extend(later.0);
    }
}

/// The log: its lock (held by writers), its flusher, applier, checkpointer and request-keys
/// threads.
pub(super) struct Wal {
    shared: Arc<Shared>,
    /// The threads; `close` (or dropping the `Wal`) marks the log closed, which ends them, and
    /// joins them.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// For the final checkpoint in `close`.
    db: sled::Db,
    /// The segment directory.
    dir: PathBuf,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher when the first waiter arrives, or on close.
    flusher_wake: Condvar,
    /// Wakes the checkpointer early, on close.
    checkpointer_wake: Condvar,
    /// Wakes the applier when a synced round is handed to it, or on close.
    applier_wake: Condvar,
    /// Wakes the builder of the `requests` keys' filter when one is wanted, or on close.
    request_keys_wake: Condvar,
    /// Told when the log fails.
    on_failure: OnFailure,
    /// The store directory, which names its injected faults.
    store_dir: PathBuf,
    /// `fdatasync` calls made by the flusher.
    syncs: AtomicU64,
    /// Where each group commit is measured.
    metrics: super::LogObserver,
    /// Bumped each time records became durable and readable in sled, and once when the log
    /// fails (so that [`Wal::settled`] stops waiting).
    applied: tokio::sync::watch::Sender<u64>,
    /// Every record up to this one is in a synced segment: durable, and acknowledged. Written
    /// under the state's lock (so that a waiter checks it and registers in one step), read
    /// without it by [`settle`].
    synced_seq: AtomicU64,
    /// Every record up to this one is applied to sled too (at most `synced_seq`). Written
    /// under the state's lock.
    applied_seq: AtomicU64,
    /// Wakes the readers waiting in [`settle`] once a round is applied, or the log failed.
    settled: Condvar,
    /// Tests: the checkpointer skips its rounds (so the log's segments stay as written).
    #[cfg(test)]
    checkpoints_paused: AtomicBool,
    /// Tests: the checkpointer prepares spare segments (off unless a test turns it on, so that
    /// the others' segments are written by the flusher alone, one record after another).
    #[cfg(test)]
    spares: AtomicBool,
    /// Tests: the free space a spare needs besides itself ([`SPARE_HEADROOM`] unless set).
    #[cfg(test)]
    spare_headroom: AtomicU64,
}

struct State {
    /// Records appended since the flusher last took the buffer, encoded.
    buf: Vec<u8>,
    /// The same records' changes, to apply to sled once they are on disk.
    records: Vec<(u64, Vec<Op>)>,
    /// Changes of every record not yet applied to sled, which transactions see first.
    pending: Pending,
    /// Which `requests` keys sled or a pending change may hold (see `request_keys`).
    request_keys: RequestKeys,
    /// Records synced (and answered) and not yet applied to sled, in order: the applier's
    /// queue.
    unapplied: Vec<(u64, Vec<Op>)>,
    /// Changes in `unapplied`: past [`MAX_UNAPPLIED_OPS`] the flusher waits for the applier.
    unapplied_ops: usize,
    /// The flusher has handed over its last round (it has ended): the applier ends once its
    /// queue is empty.
    flusher_done: bool,
    /// A thread is applying records to sled: the applier, or the flusher a small round of its
    /// own (see [`INLINE_APPLY_OPS`]). One at a time, in order.
    applying: bool,
    /// The flusher waits for the applier (past [`MAX_UNAPPLIED_OPS`]): wake it after an apply.
    flusher_held: bool,
    /// Sequence number of the last record appended.
    last_seq: u64,
    /// The change feed's next number, once a transaction has needed it (see
    /// `Tx::next_change`); kept here so that appending to the feed writes no counter.
    next_change: Option<u64>,
    /// Readers waiting in [`settle`] for sled to catch up with the log.
    settling: usize,
    /// Callers waiting until `Shared::synced_seq` reaches the number they carry.
    waiters: Vec<(u64, Waiter)>,
    /// The same, for writes that do not ask for a sync of their own ([`Staged::ride`]): they
    /// are answered by whichever round makes their record durable.
    riders: Vec<(u64, Waiter)>,
    /// Segments the flusher has moved on from, oldest first, with the last sequence number in
    /// each; the checkpointer deletes them once sled holds that record.
    full_segments: Vec<(PathBuf, u64)>,
    /// No more writes; the threads finish and end.
    closed: bool,
    /// Set at the first failed write, sync, apply or checkpoint: what every later write gets.
    failed: Option<StoreError>,
    /// Once failed: the records not durable, which the next log writes again.
    retained: Retained,
    /// While a backup copies sled: every record applied meanwhile, for the copy to replay.
    capture: Option<Vec<(u64, Vec<Op>)>>,
    /// Cluster mode: the writes of the apps this replica leads, on their way to etcd
    /// (`leader`). `None` on a single node.
    leader: Option<LeaderWrites>,
    /// Where the [`SPARE`] segment is.
    spare: Spare,
    /// The flusher's segment has written enough to want a spare after it (see
    /// [`Segment::wants_a_spare`]).
    spare_wanted: bool,
}

/// Where the [`SPARE`] segment is. Only the checkpointer makes one (`Absent` → `Ready`), and
/// only the flusher takes one (`Ready` → `Taken` → `Absent`), so neither touches the file
/// while the other does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spare {
    /// None, or one the checkpointer is preparing.
    Absent,
    /// Prepared and synced, for the flusher to take.
    Ready,
    /// The flusher is moving to it (or cleaning up after failing to).
    Taken,
}

impl State {
    /// Makes record `seq`'s changes visible to the transactions that follow, its request keys
    /// noted first.
    fn add_pending(&mut self, shared: &Shared, seq: u64, ops: &[Op]) {
        if self.request_keys.note(ops) {
            shared.request_keys_wake.notify_one();
        }
        self.pending.add(seq, ops);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked (every change is one step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the log at its first failure: later writes get `Unavailable`, and the store is told.
    fn fail(&self, state: &mut State, e: &StoreError) {
        if state.failed.is_none() {
            let refused = e.unavailable();
            (self.on_failure)(&refused);
            state.failed = Some(refused);
            if state.settling > 0 {
                self.settled.notify_all();
            }
            // Wakes `Wal::settled`, which sees the failure.
            self.applied.send_modify(|_| {});
        }
    }

    /// The injected fault at `point`, if a test set one for this store.
    fn fault(&self, point: Point) -> std::io::Result<()> {
        faults::check(&self.store_dir, point)
    }
}

/// A write whose record is in the log's buffer: its outcome is known, its durability is not.
/// Awaiting it (or [`Staged::durable`]) resolves once the record, and every record before it, is
/// on disk; only then may the write be acknowledged. sled holds it a moment later; plain reads
/// wait for that (see `settle`). Dropping it does not undo the
/// write, which becomes durable with the next sync.
#[must_use = "a staged write is not durable until it is awaited"]
pub struct Staged<T> {
    value: T,
    wait: Wait,
}

/// What a staged write waits for.
enum Wait {
    /// The local log: the record that must be durable, this write's or, for a transaction
    /// that changed nothing, the last one it may have read.
    Log { seq: u64, shared: Arc<Shared> },
    /// A leader's write (cluster mode): etcd's outcome, once the copy has applied it.
    Leader(oneshot::Receiver<Result<(), StoreError>>),
    /// Nothing: a leader's transaction that changed nothing and read nothing unfinished.
    Nothing,
}

impl Wait {
    async fn done(self, sync: SyncRequest) -> Result<(), StoreError> {
        match self {
            Wait::Log { seq, shared } => wait_durable(&shared, seq, sync).await,
            Wait::Leader(outcome) => outcome.await.map_err(|_| StoreError::Closed)?,
            Wait::Nothing => Ok(()),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Staged<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Staged");
        out.field("value", &self.value);
        match &self.wait {
            Wait::Log { seq, .. } => out.field("seq", seq),
            Wait::Leader(_) => out.field("leader", &true),
            Wait::Nothing => out.field("leader", &false),
        };
        out.finish()
    }
}

impl<T> Staged<T> {
    /// What the transaction returned. It is decided, but not yet durable: use it to order
    /// in-memory state with the write, never to answer a caller.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The same write, carrying `f` of what the transaction returned.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Staged<U> {
        Staged {
            value: f(self.value),
            wait: self.wait,
        }
    }

    /// Waits until the write is durable and returns what the transaction returned.
    pub async fn durable(self) -> Result<T, StoreError> {
        self.wait.done(SyncRequest::Ask).await?;
        Ok(self.value)
    }

    /// This write's record in the local log, to wait until sled holds it
    /// ([`LogRecord::applied`]); `None` for a leader's write (cluster mode).
    pub fn log_record(&self) -> Option<LogRecord> {
        match &self.wait {
            Wait::Log { seq, shared } => Some(LogRecord {
                seq: *seq,
                shared: Arc::clone(shared),
            }),
            Wait::Leader(_) | Wait::Nothing => None,
        }
    }

    /// Like [`Staged::durable`], without asking for a sync: the write rides the next group
    /// commit another writer asks for, or the background write within
    /// `BACKGROUND_WRITE_EVERY`. For writes that nobody waits for (a callin's event, answered
    /// already), so that they add no `fdatasync` of their own.
    pub async fn ride(self) -> Result<T, StoreError> {
        self.wait.done(SyncRequest::Ride).await?;
        Ok(self.value)
    }
}

impl<T> Staged<Option<T>> {
    /// `None` if the transaction returned `None`; otherwise the same write, carrying the value.
    pub fn transpose(self) -> Option<Staged<T>> {
        let Staged { value, wait } = self;
        value.map(|value| Staged { value, wait })
    }
}

impl<T> IntoFuture for Staged<T> {
    type Output = Result<T, StoreError>;
    type IntoFuture = Durable<T>;

    fn into_future(self) -> Durable<T> {
        let Staged { value, wait } = self;
        Durable {
            value: Some(value),
            wait: Box::pin(wait.done(SyncRequest::Ask)),
        }
    }
}

/// A staged write's record in the local log ([`Staged::log_record`]).
pub struct LogRecord {
    seq: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LogRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRecord").field("seq", &self.seq).finish()
    }
}

impl LogRecord {
    /// Waits until sled holds the record (the applier trails the syncs), so that a plain read
    /// sees the write; it asks for no sync. Unlike [`Wal::settled`], it waits for this record
    /// only, not for every record synced by then.
    pub async fn applied(self) -> Result<(), StoreError> {
        applied_through(&self.shared, self.seq).await
    }
}

/// A [`Staged`] write being awaited.
#[must_use = "futures do nothing unless awaited"]
pub struct Durable<T> {
    value: Option<T>,
    wait: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>,
}

impl<T> std::fmt::Debug for Durable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

/// The value is never pinned (only moved out once the wait is over).
impl<T> Unpin for Durable<T> {}

impl<T> Future for Durable<T> {
    type Output = Result<T, StoreError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        this.wait.as_mut().poll(cx).map(|waited| {
            waited?;
            this.value.take().ok_or(StoreError::Closed)
        })
    }
}

impl Wal {
    /// Starts the threads over `dir`, whose log `recover` has just emptied into `trees` up to
    /// record `applied`; the log goes on from the record after it, and is marked open (not
    /// clean) once its first segment exists.
    pub fn start(
        db: sled::Db,
        trees: &Trees,
        dir: &Path,
        applied: u64,
        on_failure: OnFailure,
        on_durable: tokio::sync::watch::Sender<u64>,
        metrics: super::LogObserver,
    ) -> Result<Wal, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::new(),
                records: Vec::new(),
                pending: Pending::default(),
                request_keys: RequestKeys::load(dir, applied),
                unapplied: Vec::new(),
                unapplied_ops: 0,
                flusher_done: false,
                applying: false,
                flusher_held: false,
                last_seq: applied,
                next_change: None,
                settling: 0,
                waiters: Vec::new(),
                riders: Vec::new(),
                full_segments: Vec::new(),
                closed: false,
                failed: None,
                retained: Retained::default(),
                capture: None,
                leader: None,
                spare: Spare::Absent,
                spare_wanted: false,
            }),
            flusher_wake: Condvar::new(),
            checkpointer_wake: Condvar::new(),
            applier_wake: Condvar::new(),
            request_keys_wake: Condvar::new(),
            on_failure,
            store_dir: dir.parent().unwrap_or(dir).to_path_buf(),
            syncs: AtomicU64::new(0),
            metrics,
            applied: on_durable,
            synced_seq: AtomicU64::new(applied),
            applied_seq: AtomicU64::new(applied),
            settled: Condvar::new(),
            #[cfg(test)]
            checkpoints_paused: AtomicBool::new(false),
            #[cfg(test)]
            spares: AtomicBool::new(false),
            #[cfg(test)]
            spare_headroom: AtomicU64::new(SPARE_HEADROOM),
        });
        remove_spare(dir)?;
        let segment = Segment::create(&shared, dir, applied + 1)?;
        Mark {
            applied,
            clean: false,
        }
        .write(&trees.meta)?;
        db.flush()?;
        let flusher = {
            let (shared, dir, trees) = (Arc::clone(&shared), dir.to_path_buf(), trees.clone());
            std::thread::Builder::new()
                .name("xpool-wal".into())
                .spawn(move || run_flusher(&shared, &trees, &dir, segment))
        };
        let applier = {
            let (shared, trees) = (Arc::clone(&shared), trees.clone());
            std::thread::Builder::new()
                .name("xpool-apply".into())
                .spawn(move || run_applier(&shared, &trees))
        };
        let checkpointer = {
            let (shared, db, dir) = (Arc::clone(&shared), db.clone(), dir.to_path_buf());
            std::thread::Builder::new()
                .name("xpool-checkpoint".into())
                .spawn(move || run_checkpointer(&shared, &db, &dir, applied))
        };
        let request_keys = {
            let (shared, requests) = (Arc::clone(&shared), trees.requests.clone());
            std::thread::Builder::new()
                .name("xpool-requests".into())
                .spawn(move || run_request_keys(&shared, &requests))
        };
        let threads = [flusher, applier, checkpointer, request_keys]
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| log_error(dir, "starting its threads", &e))?;
        Ok(Wal {
            shared,
            threads: Mutex::new(threads),
            db,
            dir: dir.to_path_buf(),
        })
    }

    /// Runs `f` as the next transaction under the log's lock and appends what it changed as one
    /// record. Fails with `Closed` once the store is closed, and with the log's first failure
    /// once it has failed (a write that can never be made durable is refused). If `f` fails,
    /// nothing is written.
    ///
    /// `lane` says where the record goes: the local log, or in cluster mode a leader's way to
    /// etcd (`leader`). In cluster mode a local transaction may change only the replica's own
    /// `meta` keys, unless it is the copy's.
    pub fn stage<T, E: From<StoreError>>(
        &self,
        trees: &Trees,
        lane: Lane<'_>,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<Staged<T>, E> {
        let mut state = self.shared.lock();
        if let Some(e) = &state.failed {
            return Err(e.clone().into());
        }
        if state.closed {
            return Err(StoreError::Closed.into());
        }
        let state = &mut *state;
        if let Lane::Leader(term) = lane {
            return self.stage_leader(state, trees, term, f);
        }
        let overlay = Overlay {
            leader: None,
            log: &state.pending,
            request_keys: &state.request_keys,
        };
        let (value, ops) = trees.transact(overlay, &mut state.next_change, f)?;
        let local_only = state.leader.is_some() && matches!(lane, Lane::Local);
        if local_only
            && let Some(op) = ops
                .iter()
                .find(|op| replica_class(op) != crate::store::replica::Class::Local)
        {
            return Err(StoreError::NotLeader {
                app: String::new(),
                why: format!(
                    "in cluster mode {:?} entries are written only by an app's leader \
                     (a write that names no app: a bug)",
                    op.tree
                ),
            }
            .into());
        }
        if !ops.is_empty() {
            let state = &mut *state;
            let seq = state.last_seq + 1;
            record::encode(seq, &ops, &mut state.buf);
            state.add_pending(&self.shared, seq, &ops);
            state.records.push((seq, ops));
            state.last_seq = seq;
        }
        Ok(Staged {
            value,
            wait: Wait::Log {
                seq: state.last_seq,
                shared: Arc::clone(&self.shared),
            },
        })
    }

    /// A leader's transaction (see `leader`): read through both overlays, queued for etcd.
    fn stage_leader<T, E: From<StoreError>>(
        &self,
        state: &mut State,
        trees: &Trees,
        term: &Arc<Term>,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<Staged<T>, E> {
        let Some(leader) = &mut state.leader else {
            return Err(StoreError::NotLeader {
                app: term.app.clone(),
                why: "this store does not take leaders' writes (not in cluster mode)".into(),
            }
            .into());
        };
        leader.check(term)?;
        let overlay = Overlay {
            leader: Some(&leader.pending),
            log: &state.pending,
            request_keys: &state.request_keys,
        };
        let (value, ops) = trees.transact(overlay, &mut state.next_change, f)?;
        let ops = LeaderWrites::keep(term, ops)?;
        // Noted before the leader's pending changes show them to the next transaction.
        if state.request_keys.note(&ops) {
            self.shared.request_keys_wake.notify_one();
        }
        let wait = match leader.stage(term, ops) {
            Some(outcome) => Wait::Leader(outcome),
            None => Wait::Nothing,
        };
        Ok(Staged { value, wait })
    }

    /// Cluster mode: from now on leaders' writes are taken (and local writes of replicated
    /// entries refused, except the copy's); `wake` is told when a leader's record is queued.
    pub fn enable_leader_writes(&self, wake: Arc<tokio::sync::Notify>) {
        let mut state = self.shared.lock();
        state.leader.get_or_insert_with(LeaderWrites::default).wake = wake;
    }

    /// Tests: the entries the last record staged and not yet written touches, as (tree, key).
    #[cfg(test)]
    pub fn last_staged(&self) -> Vec<(TreeId, Vec<u8>)> {
        let state = self.shared.lock();
        let ops = state.records.last().map(|(_, ops)| ops.as_slice());
        ops.unwrap_or_default()
            .iter()
            .map(|op| (op.tree, op.key.clone()))
            .collect()
    }

    /// Tests: how many filters of the `requests` keys were built and put in use, and whether
    /// one is in use (built, or saved by a clean close).
    #[cfg(test)]
    pub fn request_keys_filter(&self) -> (u64, bool) {
        let state = self.shared.lock();
        (state.request_keys.builds, state.request_keys.in_use())
    }

    /// Every leader's record queued so far, in order, for the writer to commit to etcd.
    pub fn take_leader_records(&self) -> Vec<LeaderRecord> {
        let mut state = self.shared.lock();
        state
            .leader
            .as_mut()
            .map(LeaderWrites::take)
            .unwrap_or_default()
    }

    /// Answers leaders' records the writer took, with their outcomes (see `leader`).
    pub fn finish_leader_records(&self, outcomes: Vec<(LeaderRecord, Result<(), StoreError>)>) {
        let mut state = self.shared.lock();
        if let Some(leader) = &mut state.leader {
            leader.finish(outcomes);
        }
    }

    /// Appends what a failed log left, numbered as they were: the records after `applied` (the
    /// last one recovery found on disk) go in, in order, as if staged now. Returns the write to
    /// await.
    pub fn relog(&self, retained: Retained) -> Result<Staged<()>, StoreError> {
        let mut state = self.shared.lock();
        if let Some(e) = &state.failed {
            return Err(e.clone());
        }
        let state = &mut *state;
        for (seq, ops) in retained.0 {
            if seq <= state.last_seq {
                continue; // recovery found it whole on disk and applied it
            }
            if seq != state.last_seq + 1 {
                return Err(StoreError::Corrupt {
                    tree: "write-ahead log",
                    detail: format!(
                        "records kept after a failure start at {seq}, the log is at {}",
                        state.last_seq
                    ),
                });
            }
            record::encode(seq, &ops, &mut state.buf);
            state.add_pending(&self.shared, seq, &ops);
            state.records.push((seq, ops));
            state.last_seq = seq;
        }
        Ok(Staged {
            value: (),
            wait: Wait::Log {
                seq: state.last_seq,
                shared: Arc::clone(&self.shared),
            },
        })
    }

    /// [`Wal::relog`], durable on return.
    pub async fn relog_and_wait(&self, retained: &Retained) -> Result<(), StoreError> {
        self.relog(retained.clone())?.durable().await
    }

    /// Resolves once every record appended so far is durable.
    async fn flush(&self) -> Result<(), StoreError> {
        let last = self.shared.lock().last_seq;
        wait_durable(&self.shared, last, SyncRequest::Ask).await
    }

    /// Stops a failed log's threads (writing nothing more) and hands over the records it did
    /// not make durable, for the next log to write.
    pub fn abandon(&self) -> Retained {
        self.mark_closed();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            if thread.join().is_err() {
                tracing::warn!("a write-ahead log thread panicked");
            }
        }
        let mut state = self.shared.lock();
        let (unapplied, later) = (
            std::mem::take(&mut state.unapplied),
            std::mem::take(&mut state.records),
        );
        retain(&mut state, unapplied);
        retain(&mut state, later);
        std::mem::take(&mut state.retained)
    }

    /// Makes everything durable, stops the threads, flushes sled and deletes the log. Later
    /// writes fail with `Closed`; closing again is a no-op.
    pub async fn close(&self) -> Result<(), StoreError> {
        let flushed = self.flush().await;
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        if threads.is_empty() {
            return flushed;
        }
        self.mark_closed();
        let (db, dir, shared) = (self.db.clone(), self.dir.clone(), Arc::clone(&self.shared));
        let checkpoint = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::warn!("a write-ahead log thread panicked");
                }
            }
            let state = shared.lock();
            if let Some(e) = &state.failed {
                // The log is what recovery needs to judge what happened: keep it.
                return Err(e.clone());
            }
            let applied = shared.applied_seq.load(Ordering::Acquire);
            if let Err(e) = state.request_keys.save(&dir, applied) {
                tracing::warn!(error = %e, "cannot save the filter of request ids; the next start builds it");
            }
            drop(state);
            // Every change is in sled; once sled is on disk the log holds nothing needed.
            let meta = db.open_tree(crate::store::keys::META)?;
            Mark {
                applied,
                clean: true,
            }
            .write(&meta)?;
            db.flush()?;
            for path in segment_files(&dir)? {
                std::fs::remove_file(&path).map_err(|e| log_error(&path, "deleting", &e))?;
            }
            remove_spare(&dir)
        })
        .await
        .unwrap_or(Err(StoreError::Closed));
        flushed.and(checkpoint)
    }

    /// Starts noting every record applied to sled from now on (for a backup that copies sled
    /// while it changes); returns the last record sled holds now. One at a time.
    pub fn start_capture(&self) -> Result<u64, StoreError> {
        let mut state = self.shared.lock();
        if state.capture.is_some() {
            return Err(StoreError::Conflict("a backup is already running".into()));
        }
        state.capture = Some(Vec::new());
        Ok(self.shared.applied_seq.load(Ordering::Acquire))
    }

    /// Waits until every record staged so far is applied, stops noting, and returns the
    /// records applied since [`Wal::start_capture`] (numbered on from what it returned, in
    /// order) and the last one.
    pub async fn end_capture(&self) -> Result<(Retained, u64), StoreError> {
        let flushed = self.flush().await;
        let settled = match &flushed {
            Ok(()) => {
                let shared = Arc::clone(&self.shared);
                tokio::task::spawn_blocking(move || settle(&shared))
                    .await
                    .unwrap_or(Err(StoreError::Closed))
            }
            Err(_) => Ok(()),
        };
        let mut state = self.shared.lock();
        let captured = state.capture.take().unwrap_or_default();
        flushed.and(settled)?;
        Ok((
            Retained(captured),
            self.shared.applied_seq.load(Ordering::Acquire),
        ))
    }

    /// Runs `f` unless the log has failed, under the lock a failure is reported under (so `f`
    /// cannot undo a report of a failure that happened just before).
    pub fn if_healthy(&self, f: impl FnOnce()) -> Result<(), StoreError> {
        let state = self.shared.lock();
        match &state.failed {
            Some(e) => Err(e.clone()),
            None => {
                f();
                Ok(())
            }
        }
    }

    /// Blocks until sled holds every write acknowledged so far (see [`settle`]); at once,
    /// unless a round's apply is under way.
    pub fn settle(&self) -> Result<(), StoreError> {
        settle(&self.shared)
    }

    /// [`Wal::settle`] without blocking a thread: waits until sled holds every write
    /// acknowledged so far.
    pub async fn settled(&self) -> Result<(), StoreError> {
        let need = self.shared.synced_seq.load(Ordering::Acquire);
        applied_through(&self.shared, need).await
    }

    /// Fails the log with `e` (a read met sled's own I/O failure), unless it has failed already.
    pub fn fail(&self, e: &StoreError) {
        let mut state = self.shared.lock();
        self.shared.fail(&mut state, e);
    }

    /// Tests: no checkpoint trims the log from now on (one already running may still finish).
    #[cfg(test)]
    pub fn pause_checkpoints(&self) {
        self.shared.checkpoints_paused.store(true, Ordering::SeqCst);
    }

    /// Tests: the checkpointer prepares spare segments from its next round on, as it always
    /// does outside tests.
    #[cfg(test)]
    pub fn prepare_spares(&self) {
        self.shared.spares.store(true, Ordering::SeqCst);
    }

    /// Tests: a spare is prepared only if the disk has `bytes` free besides it.
    #[cfg(test)]
    pub fn set_spare_headroom(&self, bytes: u64) {
        self.shared.spare_headroom.store(bytes, Ordering::SeqCst);
    }

    /// Records appended and not yet durable: the group commit's queue.
    pub fn backlog(&self) -> u64 {
        let state = self.shared.lock();
        state
            .last_seq
            .saturating_sub(self.shared.synced_seq.load(Ordering::Acquire))
    }

    /// `fdatasync` calls made so far (to observe group commit).
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    fn mark_closed(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        if let Some(leader) = &mut state.leader {
            leader.abandon(&StoreError::Closed);
        }
        drop(state);
        self.shared.flusher_wake.notify_all();
        self.shared.checkpointer_wake.notify_all();
        self.shared.applier_wake.notify_all();
        self.shared.request_keys_wake.notify_all();
        self.shared.settled.notify_all();
    }
}

/// Whether a wait for durability asks the flusher for a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncRequest {
    Ask,
    Ride,
}

/// Waits until sled holds every record up to `seq` (synced already, or to be).
async fn applied_through(shared: &Shared, seq: u64) -> Result<(), StoreError> {
    let mut applied = shared.applied.subscribe();
    loop {
        if shared.applied_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        if let Some(e) = &shared.lock().failed {
            return Err(e.clone());
        }
        if applied.changed().await.is_err() {
            return Err(StoreError::Closed);
        }
    }
}

async fn wait_durable(shared: &Shared, seq: u64, sync: SyncRequest) -> Result<(), StoreError> {
    let answer = {
        let mut state = shared.lock();
        if shared.synced_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        if let Some(e) = &state.failed {
            return Err(e.clone());
        }
        if state.closed {
            return Err(StoreError::Closed);
        }
        let (waiter, answer) = oneshot::channel();
        match sync {
            SyncRequest::Ride => state.riders.push((seq, waiter)),
            SyncRequest::Ask => {
                state.waiters.push((seq, waiter));
                // The flusher only sleeps with no waiters, so only the first one needs to wake
                // it.
                if state.waiters.len() == 1 {
                    shared.flusher_wake.notify_one();
                }
            }
        }
        answer
    };
    answer.await.map_err(|_| StoreError::Closed)?
}

impl Drop for Wal {
    /// Without `close`: the threads write and sync what is buffered, answer their waiters and
    /// end; waiting for them means no file of the store is written once the `Store` is gone.
    fn drop(&mut self) {
        self.mark_closed();
        let threads = std::mem::take(
            self.threads
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The flusher: writes and syncs the buffered records, answers their waiters and hands the
/// records to the applier, until the log is closed.
fn run_flusher(shared: &Shared, trees: &Trees, dir: &Path, mut segment: Segment) {
    let _done = FlusherDone(shared);
    let mut batch = Vec::new();
    loop {
        let (last, records, waiters, closing, failed) = {
            let mut state = shared.lock();
            loop {
                // Far behind the applier, a round waits for it: what sled does not hold yet
                // stays in memory (the overlay and the applier's queue) meanwhile.
                let behind = state.unapplied_ops >= MAX_UNAPPLIED_OPS && state.failed.is_none();
                state.flusher_held = behind;
                if state.closed || !state.waiters.is_empty() && !behind {
                    break;
                }
                let (next, wait) = shared
                    .flusher_wake
                    .wait_timeout(state, BACKGROUND_WRITE_EVERY)
                    .unwrap_or_else(PoisonError::into_inner);
                state = next;
                if wait.timed_out() && !state.buf.is_empty() && !behind {
                    break;
                }
            }
            std::mem::swap(&mut batch, &mut state.buf);
            (
                state.last_seq,
                std::mem::take(&mut state.records),
                std::mem::take(&mut state.waiters),
                state.closed,
                state.failed.is_some(),
            )
        };
        let written = !records.is_empty() && !failed;
        let started = Instant::now();
        let appended = if written {
            shared.syncs.fetch_add(1, Ordering::Relaxed);
            let appended = segment.append(shared, &batch);
            if let Some(metrics) = shared.metrics.get() {
                metrics
                    .sync_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.batch_records.observe(records.len() as f64);
            }
            appended
        } else {
            Ok(())
        };
        if started.elapsed() >= SLOW_ROUND {
            tracing::warn!(
                records = records.len(),
                bytes = batch.len(),
                took = ?started.elapsed(),
                "a slow group commit: every write in it waited for the write and sync"
            );
        }
        batch.clear();
        // The round's records are on disk: every write in it is durable, and is answered now,
        // before sled holds it (the applier applies it next; readers of sled wait for that in
        // `settle`).
        let mut inline = None;
        let (acked, riders, rotate, spare, full) = {
            let mut state = shared.lock();
            match &appended {
                Ok(()) if written && state.failed.is_none() => {
                    shared.synced_seq.store(last, Ordering::Release);
                    let ops = records.iter().map(|(_, ops)| ops.len()).sum::<usize>();
                    if ops <= INLINE_APPLY_OPS && !state.applying && state.unapplied.is_empty() {
                        state.applying = true;
                        inline = Some(records);
                    } else {
                        state.unapplied_ops += ops;
                        state.unapplied.extend(records);
                        shared.applier_wake.notify_one();
                    }
                }
                Ok(()) => retain(&mut state, records),
                Err(e) => {
                    shared.fail(&mut state, e);
                    retain(&mut state, records);
                }
            }
            if state.failed.is_some() {
                // Nothing more is written here: keep what is staged and not durable.
                let later = std::mem::take(&mut state.records);
                retain(&mut state, later);
            }
            let acked = state.failed.clone().map_or(Ok(()), Err);
            let synced_seq = shared.synced_seq.load(Ordering::Acquire);
            // Once nothing more will be made durable (a failed or closing log), every rider
            // still waiting is answered too.
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.riders)
                .into_iter()
                .partition(|(seq, _)| *seq <= synced_seq || acked.is_err() || closing);
            state.riders = waiting;
            let riders: Vec<_> = done
                .into_iter()
                .map(|(seq, rider)| match &acked {
                    Ok(()) if seq > synced_seq => (rider, Err(StoreError::Closed)),
                    answer => (rider, answer.clone()),
                })
                .collect();
            let full = segment.len >= SEGMENT_BYTES;
            let rotate = acked.is_ok()
                && !closing
                && (full || !segment.prepared && state.spare == Spare::Ready);
            let spare = rotate && state.spare == Spare::Ready;
            if spare {
                state.spare = Spare::Taken;
            }
            state.spare_wanted = segment.wants_a_spare();
            (acked, riders, rotate, spare, full)
        };
        for (_, waiter) in waiters {
            // A waiter that gave up (dropped its receiver) needs no answer.
            let _ = waiter.send(acked.clone());
        }
        for (rider, answer) in riders {
            let _ = rider.send(answer);
        }
        if let Some(records) = inline {
            apply_round(shared, trees, records);
        }
        if closing {
            return;
        }
        if rotate {
            let next = next_segment(shared, dir, last + 1, spare, full);
            let mut state = shared.lock();
            if spare {
                state.spare = Spare::Absent;
            }
            match next {
                Ok(Some(next)) => {
                    let done = std::mem::replace(&mut segment, next);
                    state.full_segments.push((done.path, last));
                    state.spare_wanted = segment.wants_a_spare();
                }
                Ok(None) => {}
                Err(e) => shared.fail(&mut state, &e),
            }
        }
    }
}

/// How much lower the applier's and the checkpointer's CPU priority (nice value) is than the
/// daemon's. Requests wait on the flusher's syncs, not on these two, except through the bound
/// on what may stay unapplied and the plain reads that wait for sled to catch up. On two busy
/// cores, an expiry burst's applies at the same priority as the runtime's workers took a
/// Bind's p99 during the burst to 2.2–2.8× its p99 without it (median 2.56×); at nice 10, to
/// 1.8–2.4× (median 2.11×), the burst 2 % longer (BENCHMARKS.md, "Scenario 5: the applier at
/// a lower priority").
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority by [`BACKGROUND_NICE`] (Linux gives each thread
/// a nice value of its own). A thread that may not is left as it is: this is a preference, not
/// a rule anything depends on.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = Some(rustix::thread::gettid());
        let lowered = getpriority_process(tid)
            .and_then(|nice| setpriority_process(tid, (nice + BACKGROUND_NICE).min(19)));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "a store thread keeps the daemon's CPU priority");
        }
    }
}

/// Tells the applier, when the flusher ends (also by a panic), that no more rounds come.
struct FlusherDone<'a>(&'a Shared);

impl Drop for FlusherDone<'_> {
    fn drop(&mut self) {
        self.0.lock().flusher_done = true;
        self.0.applier_wake.notify_all();
    }
}

/// The applier: applies the synced rounds to sled in order, all that are queued at once,
/// until the log is closed and its queue is empty. On its own thread, so that a write waits
/// for the syncs before it and never for a large apply (an expiry burst puts thousands of index
/// changes in one round).
fn run_applier(shared: &Shared, trees: &Trees) {
    lower_priority();
    loop {
        let records = {
            let mut state = shared.lock();
            // `applying` here: the flusher applies a small round of its own (never while
            // rounds are queued, but the two must never apply at once).
            while (state.unapplied.is_empty() || state.applying)
                && !(state.closed && state.flusher_done)
            {
                state = shared
                    .applier_wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.unapplied.is_empty() {
                return;
            }
            state.applying = true;
            state.unapplied_ops = 0;
            std::mem::take(&mut state.unapplied)
        };
        apply_round(shared, trees, records);
    }
}

/// Applies synced `records` to sled, in order, and drops them from the overlay; the caller
/// set `State::applying`, which this clears.
///
/// Progress is announced as it goes, every [`PUBLISH_EVERY_OPS`] changes or so and at the
/// end, not once for all the records taken: a writer waiting for its own record's apply
/// ([`LogRecord::applied`]) goes on while the applier applies the records queued after it.
/// The expiry round waits so for its oldest batch before it stages the next. Announced once
/// per take, that wait lasted until every batch queued behind was in sled too, and the applier
/// then idled while the next ones were staged and synced: it ran or waited for a core for
/// half of a 200k burst's time, against three fifths now, and the burst is some 5 % shorter
/// (BENCHMARKS.md, "Scenario 5: the applier announces each batch").
fn apply_round(shared: &Shared, trees: &Trees, mut records: Vec<(u64, Vec<Op>)>) {
    let started = Instant::now();
    let mut failure = None;
    // `records[..done]` are in sled and published.
    let mut done = 0;
    while done < records.len() {
        let end = chunk_end(&records, done);
        let chunk = &records[done..end];
        let last = chunk[chunk.len() - 1].0;
        // Synced records are applied even once the log has failed elsewhere (a write or sync
        // of a later round): they are durable, and recovery then finds sled holding them.
        let applied = shared
            .fault(Point::SledApply)
            .map_err(|e| StoreError::Sled(sled::Error::Io(e)))
            .and_then(|()| chunk.iter().try_for_each(|(_, ops)| trees.apply(ops)))
            .and_then(|()| mark::note_applied(&trees.meta, last));
        if let Err(e) = applied {
            // Part of the chunk may be in sled: it is kept whole, with the rest.
            failure = Some(e);
            break;
        }
        publish_applied(shared, chunk, last);
        done = end;
    }
    if started.elapsed() >= SLOW_ROUND {
        tracing::warn!(
            records = records.len(),
            took = ?started.elapsed(),
            "a slow apply to sled: reads of sled waited for it"
        );
    }
    let mut state = shared.lock();
    state.applying = false;
    if let Some(e) = failure {
        // Nothing more is applied: keep, in order, what sled may not hold.
        shared.fail(&mut state, &e);
        retain(&mut state, records.split_off(done));
        let queued = std::mem::take(&mut state.unapplied);
        state.unapplied_ops = 0;
        retain(&mut state, queued);
    }
    let (held, queued) = (state.flusher_held, !state.unapplied.is_empty());
    drop(state);
    if held {
        shared.flusher_wake.notify_all();
    }
    if queued {
        // The flusher queues only while another apply is under way or queued, so this is the
        // applier's own loop, unless that rule changes: never leave a queue unattended.
        shared.applier_wake.notify_one();
    }
}

/// Where the chunk of `records` that starts at `from` ends: after the record that brings it to
/// [`PUBLISH_EVERY_OPS`] changes, or at the end.
fn chunk_end(records: &[(u64, Vec<Op>)], from: usize) -> usize {
    let mut ops = 0;
    for (i, (_, record)) in records.iter().enumerate().skip(from) {
        ops += record.len();
        if ops >= PUBLISH_EVERY_OPS {
            return i + 1;
        }
    }
    records.len()
}

/// Tells everyone waiting that sled holds `chunk` now, up to record `last`: its changes leave
/// the overlay, a backup under way captures them, and the writers and readers waiting for the
/// apply go on.
fn publish_applied(shared: &Shared, chunk: &[(u64, Vec<Op>)], last: u64) {
    let mut state = shared.lock();
    for (seq, ops) in chunk {
        state.pending.applied(*seq, ops);
    }
    if let Some(capture) = &mut state.capture {
        capture.extend(chunk.iter().cloned());
    }
    shared.applied_seq.store(last, Ordering::Release);
    shared.applied.send_modify(|n| *n += 1);
    if state.settling > 0 {
        shared.settled.notify_all();
    }
}

/// Keeps `records` for the next log (see [`Retained`]): the flusher and the applier each
/// hand over what they hold, so the retained records are put in order here.
fn retain(state: &mut State, records: Vec<(u64, Vec<Op>)>) {
    if records.is_empty() {
        return;
    }
    let retained = &mut state.retained.0;
    let sorted = retained.last().is_none_or(|(last, _)| *last < records[0].0);
    retained.extend(records);
    if !sorted {
        retained.sort_by_key(|(seq, _)| *seq);
    }
}

/// Blocks until sled holds every record acknowledged before the call, so that a plain read of
/// sled sees every write acknowledged before it (writes are answered once their record is on
/// disk, and applied to sled just after). Fails with the log's failure if that can no longer
/// happen, and with `Closed` if the log is closed while it waits.
fn settle(shared: &Shared) -> Result<(), StoreError> {
    let need = shared.synced_seq.load(Ordering::Acquire);
    if shared.applied_seq.load(Ordering::Acquire) >= need {
        return Ok(());
    }
    let mut state = shared.lock();
    state.settling += 1;
    let settled = loop {
        if shared.applied_seq.load(Ordering::Acquire) >= need {
            break Ok(());
        }
        if let Some(e) = &state.failed {
            break Err(e.clone());
        }
        if state.closed {
            break Err(StoreError::Closed);
        }
        state = shared
            .settled
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    };
    state.settling -= 1;
    settled
}

/// The segment the flusher goes on in after record `first_seq - 1`: the spare if it took it
/// (`spare`), else a new one if its segment is `full`; `None` to stay in the segment it has (a
/// spare it could not take, when it moved early).
fn next_segment(
    shared: &Shared,
    dir: &Path,
    first_seq: u64,
    spare: bool,
    full: bool,
) -> Result<Option<Segment>, StoreError> {
    if spare {
        match Segment::from_spare(shared, dir, first_seq) {
            Ok(next) => return Ok(Some(next)),
            Err(e) => {
                tracing::warn!(error = %e, "could not move to the prepared log segment");
                // Whatever is left of it: the checkpointer prepares a new one.
                let _ = remove_spare(dir);
            }
        }
    }
    full.then(|| Segment::create(shared, dir, first_seq))
        .transpose()
}

/// How long the builder of the `requests` keys' filter waits before trying again after sled
/// failed to give it the keys.
const REQUEST_KEYS_RETRY: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_secs(30)
};

/// How long after the log starts the first build waits, so that it does not compete with the
/// daemon's start-up (rebuilding the index) for the cores: at a million request ids a build
/// took 1.7 s of a thread and delayed the first Bind after a restart by 0.3–0.6 s. Lookups
/// read sled meanwhile, as before.
const REQUEST_KEYS_FIRST_BUILD_AFTER: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_secs(5)
};

/// Keys the builder reads between two looks at whether the log closed.
const REQUEST_KEYS_CHUNK: usize = 4096;

/// The builder of the `requests` keys' filter (see `request_keys`): builds one when wanted,
/// reading sled's keys outside the log's lock, until the log closes or fails. (sled's
/// iterator yields every key present throughout the read; a key applied to sled during it was
/// pending when the build began, or noted since: in the filter either way.)
fn run_request_keys(shared: &Shared, requests: &sled::Tree) {
    lower_priority();
    let mut pause_before_build = Some(REQUEST_KEYS_FIRST_BUILD_AFTER);
    let over = |s: &State| s.closed || s.failed.is_some();
    loop {
        let bits = {
            let mut state = shared.lock();
            if let Some(pause) = pause_before_build.take()
                && !pause.is_zero()
            {
                state = shared
                    .request_keys_wake
                    .wait_timeout_while(state, pause, |s| !over(s))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let mut state = shared
                .request_keys_wake
                .wait_while(state, |s| !over(s) && !s.request_keys.build_wanted())
                .unwrap_or_else(PoisonError::into_inner);
            if over(&state) {
                return;
            }
            let state = &mut *state;
            let leader = state.leader.as_ref().map(|leader| &leader.pending);
            let pending = std::iter::once(&state.pending)
                .chain(leader)
                .flat_map(|pending| pending.keys(TreeId::Requests));
            state.request_keys.begin_build(pending)
        };
        let started = Instant::now();
        let read = read_request_keys(shared, requests, bits);
        let mut state = shared.lock();
        match read {
            Ok(Some(read)) => {
                state.request_keys.finish_build(&read);
                tracing::info!(
                    keys = read.keys(),
                    took = ?started.elapsed(),
                    "filter of the stored request ids built"
                );
            }
            Ok(None) => return,
            Err(e) => {
                state.request_keys.abandon_build();
                tracing::warn!(
                    error = %e,
                    "cannot read the stored request ids into their filter; a Bind with a \
                     request id reads sled for it meanwhile"
                );
                pause_before_build = Some(REQUEST_KEYS_RETRY);
            }
        }
    }
}

/// Every key of `requests`, in a filter of `bits` bits; `None` once the log has closed.
fn read_request_keys(
    shared: &Shared,
    requests: &sled::Tree,
    bits: u64,
) -> Result<Option<Bloom>, sled::Error> {
    let mut read = Bloom::with_bits(bits);
    let mut keys = requests.iter().keys();
    loop {
        for _ in 0..REQUEST_KEYS_CHUNK {
            match keys.next() {
                Some(key) => read.insert(&key?),
                None => {
                    shared.fault(Point::RequestKeys).map_err(sled::Error::Io)?;
                    return Ok(Some(read));
                }
            }
        }
        if shared.lock().closed {
            return Ok(None);
        }
    }
}

/// The checkpointer: flushes sled and trims the log every `CHECKPOINT_EVERY` until closed, and
/// keeps a spare segment ready for the flusher.
fn run_checkpointer(shared: &Shared, db: &sled::Db, dir: &Path, mut checkpointed: u64) {
    lower_priority();
    let mut spare_failed = false;
    loop {
        keep_a_spare(shared, dir, &mut spare_failed);
        let target = {
            let state = shared.lock();
            let (state, _) = shared
                .checkpointer_wake
                .wait_timeout_while(state, CHECKPOINT_EVERY, |s| !s.closed)
                .unwrap_or_else(PoisonError::into_inner);
            if state.closed {
                return;
            }
            shared.applied_seq.load(Ordering::Acquire)
        };
        #[cfg(test)]
        if shared.checkpoints_paused.load(Ordering::SeqCst) {
            continue;
        }
        if target == checkpointed {
            continue;
        }
        // Every record up to `target` is applied to sled.
        let started = Instant::now();
        let flushed = shared
            .fault(Point::Checkpoint)
            .map_err(sled::Error::Io)
            .and_then(|()| db.flush().map(drop));
        if started.elapsed() >= SLOW_ROUND {
            tracing::warn!(took = ?started.elapsed(), "a slow checkpoint (sled's flush)");
        }
        if let Err(e) = flushed {
            // sled fails every later call after an I/O error of its own: reopen it.
            let mut state = shared.lock();
            shared.fail(&mut state, &StoreError::Sled(e));
            return;
        }
        checkpointed = target;
        let done: Vec<PathBuf> = {
            let mut state = shared.lock();
            let keep = state
                .full_segments
                .partition_point(|(_, last)| *last <= target);
            state
                .full_segments
                .drain(..keep)
                .map(|(path, _)| path)
                .collect()
        };
        for path in done {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete a checkpointed log segment");
            }
        }
    }
}

/// Prepares a [`SPARE`] segment if the flusher's segment wants one and none is ready (and the
/// log is neither closed nor failed), and the disk has room for it and [`SPARE_HEADROOM`]
/// besides. A spare that cannot be prepared costs only speed: the flusher creates its segments
/// itself meanwhile. `failed` keeps a disk that stays short of room from being reported every
/// round.
fn keep_a_spare(shared: &Shared, dir: &Path, failed: &mut bool) {
    #[cfg(test)]
    if !shared.spares.load(Ordering::SeqCst) {
        return;
    }
    {
        let state = shared.lock();
        if !state.spare_wanted
            || state.spare != Spare::Absent
            || state.closed
            || state.failed.is_some()
        {
            return;
        }
    }
    #[cfg(not(test))]
    let headroom = SPARE_HEADROOM;
    #[cfg(test)]
    let headroom = shared.spare_headroom.load(Ordering::SeqCst);
    let needed = SEGMENT_BYTES.saturating_add(headroom);
    match free_bytes(dir) {
        Ok(free) if free >= needed => {}
        short => {
            if !std::mem::replace(failed, true) {
                let free =
                    short.map_or_else(|e| format!("unknown ({e})"), |b| format!("{} MiB", b >> 20));
                tracing::warn!(
                    free,
                    needed_mib = needed >> 20,
                    "not preparing the next log segment: the disk is nearly full; writes sync more slowly until it has room"
                );
            }
            return;
        }
    }
    match prepare_spare(shared, dir) {
        Ok(()) => {
            *failed = false;
            shared.lock().spare = Spare::Ready;
        }
        Err(e) => {
            if !std::mem::replace(failed, true) {
                tracing::warn!(error = %e, "could not prepare the next log segment; writes sync more slowly until it can");
            }
            let _ = remove_spare(dir);
        }
    }
}

/// The bytes an unprivileged writer may still use on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let fs = rustix::fs::statvfs(dir)?;
    Ok(fs.f_bavail.saturating_mul(fs.f_frsize))
}

/// Writes the [`SPARE`]: a segment header, then zeros to [`SEGMENT_BYTES`], synced a chunk at
/// a time.
fn prepare_spare(shared: &Shared, dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(SPARE);
    let zeros = vec![0; SPARE_CHUNK];
    let write = || {
        shared.fault(Point::LogCreate)?;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        file.write_all(record::MAGIC)?;
        let mut len = record::MAGIC.len() as u64;
        while len < SEGMENT_BYTES {
            let chunk =
                usize::try_from(SEGMENT_BYTES - len).map_or(SPARE_CHUNK, |n| n.min(SPARE_CHUNK));
            file.write_all(&zeros[..chunk])?;
            file.sync_data()?;
            len += chunk as u64;
        }
        file.sync_all()
    };
    write().map_err(|e| log_error(&path, "preparing", &e))
}

/// Deletes the [`SPARE`], if there is one.
fn remove_spare(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(SPARE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(log_error(&path, "deleting", &e)),
        _ => Ok(()),
    }
}

/// The segment file the flusher appends to.
struct Segment {
    file: File,
    path: PathBuf,
    /// Bytes written so far, the header included.
    len: u64,
    /// Made from a spare: zeros on disk from `len` to [`SEGMENT_BYTES`].
    prepared: bool,
}

impl Segment {
    /// Creates `<first_seq>.wal` in `dir`, durable (with its directory entry) before any record
    /// goes in it.
    fn create(shared: &Shared, dir: &Path, first_seq: u64) -> Result<Segment, StoreError> {
        let path = dir.join(format!("{first_seq:020}.wal"));
        shared
            .fault(Point::LogCreate)
            .map_err(|e| log_error(&path, "creating", &e))?;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| log_error(&path, "creating", &e))?;
        shared
            .fault(Point::LogWrite)
            .and_then(|()| file.write_all(record::MAGIC))
            .and_then(|()| shared.fault(Point::LogSync))
            .and_then(|()| file.sync_all())
            .and_then(|()| File::open(dir)?.sync_all())
            .map_err(|e| log_error(&path, "creating", &e))?;
        Ok(Segment {
            file,
            path,
            len: record::MAGIC.len() as u64,
            prepared: false,
        })
    }

    /// Whether the checkpointer should prepare a spare to follow this segment: once it holds
    /// [`SPARE_AFTER`] if the flusher created it, once a quarter is used if it was prepared
    /// (well before it fills, with the checkpointer's round a second apart).
    fn wants_a_spare(&self) -> bool {
        self.len
            >= if self.prepared {
                SEGMENT_BYTES / 4
            } else {
                SPARE_AFTER
            }
    }

    /// Makes the [`SPARE`] `<first_seq>.wal` (its name durable before any record goes in it);
    /// records are written from after its header, over its zeros.
    fn from_spare(shared: &Shared, dir: &Path, first_seq: u64) -> Result<Segment, StoreError> {
        let path = dir.join(format!("{first_seq:020}.wal"));
        let len = record::MAGIC.len() as u64;
        let open = || {
            shared.fault(Point::LogCreate)?;
            std::fs::rename(dir.join(SPARE), &path)?;
            File::open(dir)?.sync_all()?;
            let mut file = OpenOptions::new().write(true).open(&path)?;
            file.seek(std::io::SeekFrom::Start(len))?;
            Ok(file)
        };
        let file = open().map_err(|e: std::io::Error| log_error(&path, "creating", &e))?;
        Ok(Segment {
            file,
            path,
            len,
            prepared: true,
        })
    }

    fn append(&mut self, shared: &Shared, bytes: &[u8]) -> Result<(), StoreError> {
        let written = match shared.fault(Point::LogWrite) {
            // As a full disk does: part of the batch is written, then the write fails.
            Err(e) => self.file.write_all(&bytes[..bytes.len() / 2]).and(Err(e)),
            Ok(()) => self.file.write_all(bytes),
        };
        written.map_err(|e| log_error(&self.path, "writing", &e))?;
        shared
            .fault(Point::LogSync)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| log_error(&self.path, "syncing", &e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// The segment files in `dir`, oldest first (their names are zero-padded first sequence
/// numbers).
/// Removes the filter of request ids a clean close saved in the log's `dir` (see
/// `request_keys`): for a start that changes sled before the log opens (a migration).
pub(super) fn discard_saved_request_keys(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(request_keys::FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(log_error(&path, "removing", &e)),
        _ => Ok(()),
    }
}

fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| log_error(dir, "listing", &e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| log_error(dir, "listing", &e))?.path();
        if path.extension().is_some_and(|ext| ext == "wal") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn log_error(path: &Path, doing: &str, e: &std::io::Error) -> StoreError {
    StoreError::Log {
        path: path.display().to_string(),
        detail: format!("{doing}: {e}"),
        full: is_full(e),
    }
}

/// What replication does with the entry `op` changes.
fn replica_class(op: &Op) -> crate::store::replica::Class {
    crate::store::replica::classify(op.tree, &op.key)
}
