//! The copy: every replica's local store follows etcd (`docs/cluster.md`, "Every replica: the
//! copy").
//!
//! One task per replica ([`Copy::run`]) watches every key under the prefix from the revision
//! after the one its store has applied. One watch on the whole prefix, not one per data and
//! feed prefix: a transaction writes both, and only one stream says when all of a revision's
//! events have arrived (etcd never splits a revision over two responses). Events of other keys
//! (leadership, the registry, `applied/`) apply nothing but still move the applied revision on,
//! so a new leader waiting for the revision at which it won sees it reached.
//!
//! Each watch response becomes one store record ([`Store::apply_revisions`]): its revisions'
//! data and feed events, and the revision now applied. Once that is durable, the revision is
//! published on [`Copy::applied`] (the leader answers a write once its revision is there, so a
//! read after the answer sees the write on this replica). A response with nothing for the
//! store writes nothing; the revision it reached is recorded at the next tick.
//!
//! A store that never applied anything, one whose full copy was cut short, and a start
//! revision that etcd has compacted away all start a full copy: one paged range read of
//! `P d/` and `P f/` at the revision of its first page, replacing the store's replicated
//! entries ([`Store::begin_full_copy`]), then the watch from the revision after it.
//!
//! Every second the task writes `P applied/<node_id>` if the revision moved for a reason other
//! than other nodes' `applied/` keys (otherwise nodes would echo each other's writes forever),
//! and warns while it lags the revisions etcd reports by more than [`LAG_WARNING`]. The etcd
//! client resumes the watch on another member when one fails; a round that fails for any other
//! reason is logged and started again from what the store holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use xpool_etcd::{Client, Error as EtcdError, KeyValue, Range, RangeResponse, WatchBatch};

use super::keys::{self, EtcdKey, Keys};
use crate::store::replica::{ReplicaEvent, ReplicaRevision};
use crate::store::{Store, StoreError};

/// Keys per page of a full copy's range reads.
const PAGE: i64 = 500;
/// How often `P applied/<node_id>` is written (when it moved) and the lag looked at.
const TICK: Duration = Duration::from_secs(1);
/// Revisions behind etcd past which the copy warns (each tick, at most every
/// `WARN_EVERY`).
pub const LAG_WARNING: u64 = 1000;
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Pause after a failed round, doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Why a round of the copy ended.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// etcd failed a call, or ended the watch with an error.
    #[error("etcd: {0}")]
    Etcd(#[from] EtcdError),
    /// The store refused a write or read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The watch ended without an error (its task stopped).
    #[error("the watch ended")]
    WatchEnded,
}

/// The copy task of one replica; see the module docs.
#[derive(Debug)]
pub struct Copy {
    client: Client,
    store: Arc<Store>,
    keys: Keys,
    node_id: String,
    /// The revision the store has applied (every change up to it is readable in sled); only
    /// rises. Sent by `run`; receivers see it closed once `run` has returned.
    applied: watch::Sender<u64>,
}

/// What one `run` remembers across rounds.
#[derive(Debug, Default)]
struct Progress {
    /// The revision published (and applied).
    applied: u64,
    /// The last revision recorded in the store.
    recorded: u64,
    /// The revision last written to `P applied/<node_id>`.
    announced: u64,
    /// The applied revision moved for a reason other than `applied/` keys since the last
    /// announcement.
    worth_announcing: bool,
    /// The highest store revision etcd reported.
    seen: u64,
    /// The watch reported the start revision compacted: the next round copies in full.
    compacted: bool,
    /// When the last lag warning was logged.
    warned: Option<Instant>,
}

impl Copy {
    /// The copy of `store` from the etcd behind `client`, under `keys`, for node `node_id`.
    pub fn new(client: Client, store: Arc<Store>, keys: Keys, node_id: impl Into<String>) -> Copy {
        Copy {
            client,
            store,
            keys,
            node_id: node_id.into(),
            applied: watch::Sender::new(0),
        }
    }

    /// The revision this replica has applied, as it rises (0 until the copy has started).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Follows etcd until `cancel`: rounds of (full copy if needed, then watch and apply),
    /// each failed one logged and started again after a pause.
    pub async fn run(self, cancel: CancellationToken) {
        let mut progress = Progress::default();
        let mut pause = FIRST_PAUSE;
        loop {
            let before = progress.applied;
            let ended = tokio::select! {
                () = cancel.cancelled() => return,
                ended = self.round(&mut progress) => ended,
            };
            match ended {
                Err(CopyError::Etcd(EtcdError::Compacted { compact_revision })) => {
                    tracing::warn!(
                        applied = progress.applied,
                        compact_revision,
                        "copy: etcd compacted the revisions this replica still needed; copying in full"
                    );
                    progress.compacted = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, applied = progress.applied, "copy: round failed; starting again")
                }
                Ok(()) => {}
            }
            if progress.applied > before {
                pause = FIRST_PAUSE; // the round got somewhere: not a failing streak
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// One round: returns only with the error that ended it.
    async fn round(&self, progress: &mut Progress) -> Result<(), CopyError> {
        let state = self.store.replica_state()?;
        let start = if state.applied == 0 || state.copying.is_some() || progress.compacted {
            self.full_copy().await?
        } else {
            state.applied
        };
        progress.compacted = false;
        progress.recorded = start;
        self.publish(progress, start, true);
        let mut watcher = self
            .client
            .watch_prefix(self.keys.prefix(), to_etcd(start + 1));
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.tick(progress).await?,
                batch = watcher.next() => match batch {
                    None => return Err(CopyError::WatchEnded),
                    Some(batch) => self.apply(progress, batch?).await?,
                },
            }
        }
    }

    /// Applies one watch response.
    async fn apply(&self, progress: &mut Progress, batch: WatchBatch) -> Result<(), CopyError> {
        progress.seen = progress.seen.max(from_etcd(batch.revision));
        let through = from_etcd(batch.events.last().map_or(batch.revision, |e| e.revision()));
        if through <= progress.applied {
            return Ok(());
        }
        let mut revisions: Vec<ReplicaRevision> = Vec::new();
        let mut worth_announcing = batch.events.is_empty();
        for event in &batch.events {
            let revision = from_etcd(event.revision());
            worth_announcing |= !matches!(self.keys.parse(&event.kv.key), EtcdKey::Applied { .. });
            match self.keys.event(event) {
                None => continue,
                Some(Err(why)) => {
                    tracing::error!(key = %show(&event.kv.key), revision, why, "copy: skipping a malformed key");
                    continue;
                }
                Some(Ok(store_event)) => push(&mut revisions, revision, store_event),
            }
        }
        if !revisions.is_empty() {
            self.store.apply_revisions(through, &revisions).await?;
            progress.recorded = through;
        }
        self.publish(progress, through, worth_announcing);
        Ok(())
    }

    /// Records the revision reached, announces it, and reports lag.
    async fn tick(&self, progress: &mut Progress) -> Result<(), CopyError> {
        if progress.recorded < progress.applied {
            self.store.apply_revisions(progress.applied, &[]).await?;
            progress.recorded = progress.applied;
        }
        if progress.worth_announcing && progress.announced != progress.applied {
            let key = self.keys.applied(&self.node_id);
            match self
                .client
                .put(key, keys::applied_value(progress.applied))
                .await
            {
                Ok(_) => {
                    progress.announced = progress.applied;
                    progress.worth_announcing = false;
                }
                Err(e) => tracing::debug!(error = %e, "copy: could not write the applied revision"),
            }
        }
        let lag = progress.seen.saturating_sub(progress.applied);
        let due = progress.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if lag > LAG_WARNING && due {
            tracing::warn!(
                applied = progress.applied,
                etcd = progress.seen,
                lag,
                "copy: behind etcd"
            );
            progress.warned = Some(Instant::now());
        }
        Ok(())
    }

    fn publish(&self, progress: &mut Progress, revision: u64, worth_announcing: bool) {
        progress.applied = progress.applied.max(revision);
        progress.seen = progress.seen.max(revision);
        progress.worth_announcing |= worth_announcing;
        self.applied.send_if_modified(|published| {
            let rises = revision > *published;
            *published = (*published).max(revision);
            rises
        });
    }

    /// Replaces the store's replicated entries with etcd's at one revision; that revision.
    async fn full_copy(&self) -> Result<u64, CopyError> {
        let started = std::time::Instant::now();
        tracing::info!(node_id = %self.node_id, "copy: copying everything from etcd");
        let data = self.keys.data_prefix();
        let first = self
            .client
            .range(Range::prefix(data.clone()).limit(PAGE))
            .await?;
        let revision = first.revision;
        self.store.begin_full_copy(from_etcd(revision)).await?;
        let mut entries = self.copy_pages(&data, first, revision).await?;
        let feed = self.keys.feed_prefix();
        let first = Range::prefix(feed.clone()).revision(revision).limit(PAGE);
        let first = self.client.range(first).await?;
        entries += self.copy_pages(&feed, first, revision).await?;
        self.store.finish_full_copy(from_etcd(revision)).await?;
        tracing::info!(revision, entries, took = ?started.elapsed(), "copy: full copy done");
        Ok(from_etcd(revision))
    }

    /// Writes `page` and every later page of `prefix` at `revision`; how many entries.
    async fn copy_pages(
        &self,
        prefix: &[u8],
        mut page: RangeResponse,
        revision: i64,
    ) -> Result<usize, CopyError> {
        let mut entries = 0;
        loop {
            let mut revisions = Vec::new();
            for kv in &page.kvs {
                match self.keys.snapshot_entry(kv) {
                    Some(Ok(event)) => push(&mut revisions, from_etcd(kv.mod_revision), event),
                    Some(Err(why)) => {
                        tracing::error!(key = %show(&kv.key), why, "copy: skipping a malformed key")
                    }
                    None => {}
                }
            }
            entries += revisions.iter().map(|r| r.events.len()).sum::<usize>();
            self.store.copy_page(&revisions).await?;
            let Some(next) = page.more.then(|| after(page.kvs.last())).flatten() else {
                return Ok(entries);
            };
            let range = Range::prefix(prefix.to_vec()).starting_at(next);
            page = self
                .client
                .range(range.revision(revision).limit(PAGE))
                .await?;
        }
    }
}

/// Adds `event` to the revision it belongs to (the last one, or a new one after it).
fn push(revisions: &mut Vec<ReplicaRevision>, revision: u64, event: ReplicaEvent) {
    match revisions.last_mut() {
        Some(last) if last.revision == revision => last.events.push(event),
        _ => revisions.push(ReplicaRevision {
            revision,
            events: vec![event],
        }),
    }
}

/// The first key after `kv`'s.
fn after(kv: Option<&KeyValue>) -> Option<Vec<u8>> {
    let mut key = kv?.key.clone();
    key.push(0);
    Some(key)
}

/// etcd's revisions are positive i64s.
fn from_etcd(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn to_etcd(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// A key for the log: text where it is text.
fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}
