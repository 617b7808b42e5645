//! The reconciliation runs a daemon keeps in memory: every queued and running run, and the last
//! [`KEEP`] finished ones. Each run is a watch channel, so callers can follow it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use super::reconciler::ReconcileReport;

/// Finished runs kept for Get and List; older ones are forgotten.
pub const KEEP: usize = 50;

/// A run's id: a UUID (v7, so ids sort by creation), hyphenated for callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(uuid::Uuid);

impl RunId {
    fn new() -> Self {
        RunId(uuid::Uuid::now_v7())
    }

    /// Parses the form callers see.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text).ok().map(RunId)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Running,
    /// Every number checked, no error.
    Succeeded,
    /// Ended with errors (some numbers or bindings not reconciled, or stopped early).
    Failed,
    /// The daemon shut down first.
    Cancelled,
}

impl RunState {
    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

/// What a run was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// Only this app (all when `None`).
    pub app: Option<String>,
    /// Only these Xs of `app` (all of each app's numbers when empty).
    pub numbers: Vec<String>,
    /// Count the differences, change nothing.
    pub dry_run: bool,
}

/// A run as it is at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRun {
    pub id: RunId,
    pub request: RunRequest,
    pub state: RunState,
    /// Counts and errors so far.
    pub report: ReconcileReport,
    pub create_time_ms: i64,
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
}

/// One kept run.
#[derive(Debug)]
pub(super) struct Entry {
    /// Creation order, for paging (newest first) and for picking the next queued run.
    seq: u64,
    /// The run as it is now. Owned here; the receivers of Watch calls see each change and see
    /// the channel close when the run is forgotten (after its final state).
    status: watch::Sender<ReconcileRun>,
}

impl Entry {
    pub fn snapshot(&self) -> ReconcileRun {
        self.status.borrow().clone()
    }

    pub fn id(&self) -> RunId {
        self.status.borrow().id
    }

    /// Changes the run; its watchers see the change.
    pub fn update<T>(&self, change: impl FnOnce(&mut ReconcileRun) -> T) -> T {
        let mut out = None;
        self.status.send_modify(|run| out = Some(change(run)));
        out.expect("send_modify runs the closure")
    }

    pub fn subscribe(&self) -> watch::Receiver<ReconcileRun> {
        self.status.subscribe()
    }

    fn state(&self) -> RunState {
        self.status.borrow().state
    }
}

/// The runs, oldest first.
#[derive(Debug, Default)]
pub(super) struct Runs {
    next_seq: u64,
    all: VecDeque<Arc<Entry>>,
    /// Set at shutdown: no run is added after it.
    closed: bool,
}

impl Runs {
    /// Adds a QUEUED run of `request` made at `now_ms`; `None` once closed.
    pub fn add(&mut self, request: RunRequest, now_ms: i64) -> Option<Arc<Entry>> {
        if self.closed {
            return None;
        }
        let run = ReconcileRun {
            id: RunId::new(),
            request,
            state: RunState::Queued,
            report: ReconcileReport::default(),
            create_time_ms: now_ms,
            start_time_ms: None,
            end_time_ms: None,
        };
        let entry = Arc::new(Entry {
            seq: self.next_seq,
            status: watch::Sender::new(run),
        });
        self.next_seq += 1;
        self.all.push_back(Arc::clone(&entry));
        Some(entry)
    }

    /// Forgets the oldest finished runs beyond [`KEEP`].
    pub fn trim(&mut self) {
        let mut finished = self.all.iter().filter(|e| e.state().is_final()).count();
        self.all.retain(|e| {
            if finished > KEEP && e.state().is_final() {
                finished -= 1;
                false
            } else {
                true
            }
        });
    }

    pub fn queued(&self) -> usize {
        self.all
            .iter()
            .filter(|e| e.state() == RunState::Queued)
            .count()
    }

    /// The oldest QUEUED run.
    pub fn next_queued(&self) -> Option<Arc<Entry>> {
        self.all
            .iter()
            .find(|e| e.state() == RunState::Queued)
            .cloned()
    }

    pub fn get(&self, id: RunId) -> Option<Arc<Entry>> {
        self.all.iter().find(|e| e.id() == id).cloned()
    }

    /// Up to `limit` runs older than the run numbered `before` (all when `None`), newest first,
    /// and the token of the next page if there are older runs still.
    pub fn page(&self, before: Option<u64>, limit: usize) -> (Vec<ReconcileRun>, Option<u64>) {
        let mut older = self
            .all
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.seq < b));
        let page: Vec<&Arc<Entry>> = older.by_ref().take(limit).collect();
        let next = match (page.last(), older.next()) {
            (Some(last), Some(_)) => Some(last.seq),
            _ => None,
        };
        (page.iter().map(|e| e.snapshot()).collect(), next)
    }

    /// Shutdown: every queued or running run ends CANCELLED at `now_ms`, and no run is added
    /// from now on. Returns how many were cancelled.
    pub fn close(&mut self, now_ms: i64) -> usize {
        self.closed = true;
        let mut cancelled = 0;
        for e in self.all.iter().filter(|e| !e.state().is_final()) {
            e.update(|run| {
                run.state = RunState::Cancelled;
                run.end_time_ms = Some(now_ms);
            });
            cancelled += 1;
        }
        cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(e: &Entry) {
        e.update(|r| r.state = RunState::Succeeded);
    }

    fn ids(runs: &[ReconcileRun]) -> Vec<RunId> {
        runs.iter().map(|r| r.id).collect()
    }

    #[test]
    fn runs_are_queued_in_order_and_picked_oldest_first() {
        let mut runs = Runs::default();
        let a = runs.add(RunRequest::default(), 1).unwrap();
        let b = runs.add(RunRequest::default(), 2).unwrap();
        assert_eq!(runs.queued(), 2);
        assert_eq!(runs.next_queued().unwrap().id(), a.id());
        a.update(|r| r.state = RunState::Running);
        assert_eq!(runs.next_queued().unwrap().id(), b.id());
        assert_eq!(runs.queued(), 1);
        assert_eq!(a.snapshot().create_time_ms, 1);
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn only_finished_runs_beyond_keep_are_forgotten_oldest_first() {
        let mut runs = Runs::default();
        let first = runs.add(RunRequest::default(), 0).unwrap();
        let all: Vec<_> = (0..KEEP + 5)
            .map(|i| runs.add(RunRequest::default(), i as i64).unwrap())
            .collect();
        // The first stays queued: never forgotten.
        for e in &all {
            finish(e);
        }
        runs.trim();
        assert!(runs.get(first.id()).is_some());
        assert!(runs.get(all[4].id()).is_none());
        assert!(runs.get(all[5].id()).is_some());
        assert_eq!(runs.all.len(), KEEP + 1);
    }

    #[test]
    fn pages_run_newest_first_and_survive_forgotten_runs() {
        let mut runs = Runs::default();
        let all: Vec<_> = (0..5)
            .map(|i| runs.add(RunRequest::default(), i).unwrap())
            .collect();
        let newest_first: Vec<RunId> = all.iter().rev().map(|e| e.id()).collect();
        let (page, next) = runs.page(None, 2);
        assert_eq!(ids(&page), newest_first[..2]);
        let (page, next) = runs.page(next, 2);
        assert_eq!(ids(&page), newest_first[2..4]);
        // The run a token names may be forgotten meanwhile: the next page still follows it.
        runs.all.retain(|e| e.seq != 2);
        let (page, next) = runs.page(next, 2);
        assert_eq!(ids(&page), newest_first[4..]);
        assert_eq!(next, None);
        assert_eq!(runs.page(None, 10).1, None);
        assert!(runs.page(Some(0), 10).0.is_empty());
    }

    #[test]
    fn closing_cancels_what_has_not_finished_and_refuses_new_runs() {
        let mut runs = Runs::default();
        let done = runs.add(RunRequest::default(), 0).unwrap();
        finish(&done);
        let running = runs.add(RunRequest::default(), 0).unwrap();
        running.update(|r| r.state = RunState::Running);
        let queued = runs.add(RunRequest::default(), 0).unwrap();
        let watch = queued.subscribe();
        assert_eq!(runs.close(7), 2);
        assert_eq!(done.snapshot().state, RunState::Succeeded);
        for e in [&running, &queued] {
            let run = e.snapshot();
            assert_eq!((run.state, run.end_time_ms), (RunState::Cancelled, Some(7)));
        }
        assert!(watch.has_changed().unwrap());
        assert!(runs.add(RunRequest::default(), 8).is_none());
    }
}
