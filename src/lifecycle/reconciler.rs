//! Reconciliation runs over every app, one at a time — asked for on demand (gRPC, the `xpool
//! reconcile` command) or on a schedule — and what each found and did. [`Reconciler::submit`]
//! queues a run; the `jobs` worker carries queued runs out in order ([`Reconciler::next`],
//! [`Reconciler::execute`]) and cancels what is left at shutdown ([`Reconciler::close`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::reconcile_runs::{Entry, Runs};
pub use super::reconcile_runs::{KEEP, ReconcileRun, RunId, RunRequest, RunState};
use super::{AppPool, BindingId, Clock, Pool, PoolError, Reason, lock};

/// Runs waiting at most; beyond that Reconcile is refused until one has started.
pub const MAX_QUEUED: usize = 20;

/// Errors a run lists one by one (the rest are only counted).
pub const MAX_ERRORS: usize = 100;

/// What to do with a binding the platform has and xpool does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrphanPolicy {
    /// Record it as ACTIVE, so its slot is never handed out.
    #[default]
    Adopt,
    /// Unbind it on the platform.
    Release,
}

/// How one reconciliation goes: what it covers and the daemon's settings.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Only this app (all when `None`).
    pub app: Option<String>,
    /// Only these Xs (all of each app's numbers when empty).
    pub numbers: Vec<String>,
    /// Count the differences, change nothing.
    pub dry_run: bool,
    /// A local binding younger than this is never freed as a ghost.
    pub grace_ms: i64,
    pub orphan_policy: OrphanPolicy,
}

/// Something a reconciliation could not do, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunError {
    /// The app; empty for an error of the run as a whole.
    pub app: String,
    pub number: Option<String>,
    pub binding_id: Option<BindingId>,
    /// The platform's result code, when the error is the platform's answer.
    pub platform_code: Option<String>,
    /// For callers: no app key, no platform text.
    pub message: String,
}

/// What a reconciliation found and did (so far, while it runs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// The numbers it is to check, once known.
    pub xs_total: u64,
    pub xs_checked: u64,
    pub orphans_adopted: u64,
    pub orphans_released: u64,
    pub ghosts_freed: u64,
    pub fields_corrected: u64,
    pub pending_resolved: u64,
    pub numbers_removed: u64,
    /// The first `MAX_ERRORS` errors.
    pub errors: Vec<RunError>,
    /// All errors.
    pub error_count: u64,
}

impl ReconcileReport {
    pub fn push_error(&mut self, e: RunError) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    /// Adds `d`'s counts and errors.
    pub fn merge(&mut self, d: ReconcileReport) {
        self.xs_total += d.xs_total;
        self.xs_checked += d.xs_checked;
        self.orphans_adopted += d.orphans_adopted;
        self.orphans_released += d.orphans_released;
        self.ghosts_freed += d.ghosts_freed;
        self.fields_corrected += d.fields_corrected;
        self.pending_resolved += d.pending_resolved;
        self.numbers_removed += d.numbers_removed;
        let listed = d.errors.len() as u64;
        for e in d.errors {
            self.push_error(e);
        }
        self.error_count += d.error_count.saturating_sub(listed);
    }
}

/// Where a reconciliation reports its counts as it goes: each call adds a delta.
pub(super) type Progress<'a> = &'a (dyn Fn(ReconcileReport) + Sync);

impl Pool {
    /// Reconciles the apps and numbers `opts` names, reporting to `progress` as it goes: first
    /// the number of Xs it will check, then each X's counts. Errors of one X or binding are
    /// reported there; an error that stops the run is returned.
    pub(super) async fn reconcile(
        &self,
        opts: &ReconcileOptions,
        progress: Progress<'_>,
    ) -> Result<(), RunError> {
        let stopped = |app: &str, e: PoolError| RunError {
            app: app.to_owned(),
            message: e.to_string(),
            ..Default::default()
        };
        let apps: Vec<Arc<AppPool>> = match &opts.app {
            Some(name) => vec![self.app(name).map_err(|e| stopped(name, e))?],
            None => {
                let mut all: Vec<_> = self.apps().collect();
                all.sort_by(|a, b| a.name().cmp(b.name()));
                all
            }
        };
        // X mode: the platform has no bindings to compare with.
        let mut plans = Vec::new();
        for app in apps.into_iter().filter(|a| a.on_platform()) {
            let xs = app
                .reconcile_plan(opts)
                .map_err(|e| stopped(app.name(), e))?;
            plans.push((app, xs));
        }
        progress(ReconcileReport {
            xs_total: plans.iter().map(|(_, xs)| xs.len() as u64).sum(),
            ..Default::default()
        });
        for (app, xs) in plans {
            app.reconcile(xs, opts, progress)
                .await
                .map_err(|e| stopped(app.name(), e))?;
        }
        Ok(())
    }
}

/// Reconciliation runs of one pool: queued by [`Reconciler::submit`], carried out one at a time
/// by the `jobs` worker.
#[derive(Debug)]
pub struct Reconciler {
    pool: Arc<Pool>,
    clock: Arc<dyn Clock>,
    grace_ms: i64,
    policy: OrphanPolicy,
    runs: Mutex<Runs>,
    /// Signalled when a run is queued; the worker waits on it.
    queued: Notify,
    /// Told of each run that finished (for metrics).
    observer: Option<RunObserver>,
}

/// What is told of each finished run.
pub struct RunObserver(Box<dyn Fn(&ReconcileRun) + Send + Sync>);

impl RunObserver {
    pub fn new(f: impl Fn(&ReconcileRun) + Send + Sync + 'static) -> Self {
        RunObserver(Box::new(f))
    }
}

impl std::fmt::Debug for RunObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunObserver")
    }
}

impl Reconciler {
    /// Runs over `pool`; a local binding younger than `grace` is never freed as a ghost.
    pub fn new(
        pool: Arc<Pool>,
        clock: Arc<dyn Clock>,
        grace: Duration,
        policy: OrphanPolicy,
    ) -> Self {
        Reconciler {
            pool,
            clock,
            grace_ms: i64::try_from(grace.as_millis()).unwrap_or(i64::MAX),
            policy,
            runs: Mutex::new(Runs::default()),
            queued: Notify::new(),
            observer: None,
        }
    }

    /// Tells `observer` of each run that finishes.
    pub fn observed(mut self, observer: RunObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Checks `request` and queues a run of it; the run as queued. Refused: an unknown app or
    /// number (NOT_FOUND naming it; INVALID_ARGUMENT for an unknown app), numbers without an app
    /// (INVALID_ARGUMENT), too many runs waiting or a shutdown under way (UNAVAILABLE).
    pub fn submit(&self, request: RunRequest) -> Result<ReconcileRun, PoolError> {
        match &request.app {
            Some(name) => {
                let app = self.pool.app(name)?;
                if let Some((i, x)) = request
                    .numbers
                    .iter()
                    .enumerate()
                    .find(|(_, x)| !app.has_number(x))
                {
                    return Err(PoolError::number_not_in_pool(
                        format!("numbers[{i}]"),
                        name,
                        x,
                    ));
                }
            }
            None if !request.numbers.is_empty() => {
                return Err(PoolError::invalid("numbers", "give app with numbers"));
            }
            None => {}
        }
        let mut runs = lock(&self.runs);
        if runs.queued() >= MAX_QUEUED {
            return Err(PoolError::refused(
                Reason::ReconcileQueueFull,
                format!("{MAX_QUEUED} reconciliations are queued already"),
            ));
        }
        let entry = runs.add(request, self.clock.now_ms()).ok_or_else(|| {
            PoolError::refused(Reason::ShuttingDown, "the daemon is shutting down")
        })?;
        runs.trim();
        drop(runs);
        self.queued.notify_one();
        let run = entry.snapshot();
        tracing::info!(run = %run.id, app = ?run.request.app, dry_run = run.request.dry_run, "reconciliation queued");
        Ok(run)
    }

    /// The run `id` as it is now.
    pub fn get(&self, id: RunId) -> Option<ReconcileRun> {
        lock(&self.runs).get(id).map(|e| e.snapshot())
    }

    /// The run `id` as it changes (the channel's value is the run now).
    pub fn watch(&self, id: RunId) -> Option<watch::Receiver<ReconcileRun>> {
        lock(&self.runs).get(id).map(|e| e.subscribe())
    }

    /// Up to `limit` runs created before the run `before` names (all when `None`), newest
    /// first, and the `before` of the next page while there are older runs.
    pub fn list(&self, before: Option<u64>, limit: usize) -> (Vec<ReconcileRun>, Option<u64>) {
        lock(&self.runs).page(before, limit)
    }

    /// Waits until a run is queued and takes the oldest.
    pub async fn next(&self) -> RunId {
        loop {
            if let Some(entry) = lock(&self.runs).next_queued() {
                entry.update(|run| {
                    run.state = RunState::Running;
                    run.start_time_ms = Some(self.clock.now_ms());
                });
                return entry.id();
            }
            self.queued.notified().await;
        }
    }

    /// Carries out run `id`, which [`Reconciler::next`] started. Dropping the future stops it
    /// at its next await (every step is crash-safe); [`Reconciler::close`] then cancels it.
    pub async fn execute(&self, id: RunId) {
        let Some(entry) = lock(&self.runs).get(id) else {
            return;
        };
        let request = entry.snapshot().request;
        let opts = ReconcileOptions {
            app: request.app,
            numbers: request.numbers,
            dry_run: request.dry_run,
            grace_ms: self.grace_ms,
            orphan_policy: self.policy,
        };
        let progress = |delta: ReconcileReport| entry.update(|run| run.report.merge(delta));
        let result = self.pool.reconcile(&opts, &progress).await;
        self.finish(&entry, result);
    }

    fn finish(&self, entry: &Entry, result: Result<(), RunError>) {
        let run = entry.update(|run| {
            if let Err(e) = result {
                run.report.push_error(e);
            }
            run.state = if run.report.error_count == 0 {
                RunState::Succeeded
            } else {
                RunState::Failed
            };
            run.end_time_ms = Some(self.clock.now_ms());
            run.clone()
        });
        lock(&self.runs).trim();
        if let Some(observer) = &self.observer {
            (observer.0)(&run);
        }
        let r = &run.report;
        tracing::info!(
            run = %run.id,
            state = ?run.state,
            xs = r.xs_checked,
            adopted = r.orphans_adopted,
            released = r.orphans_released,
            ghosts = r.ghosts_freed,
            corrected = r.fields_corrected,
            pending = r.pending_resolved,
            removed = r.numbers_removed,
            errors = r.error_count,
            dry_run = run.request.dry_run,
            "reconciliation finished"
        );
    }

    /// Shutdown: the running run and every queued one end CANCELLED, and no run is queued
    /// from now on.
    pub fn close(&self) {
        let cancelled = lock(&self.runs).close(self.clock.now_ms());
        if cancelled > 0 {
            tracing::info!(cancelled, "shutdown: reconciliations cancelled");
        }
    }
}
