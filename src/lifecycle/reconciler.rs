//! Runs reconciliations one at a time — on demand (gRPC, the `xpool reconcile` command) and on
//! a schedule (`jobs::reconcile`) — and keeps the running and the last report for status calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AppPool, Clock, Pool, PoolError, Reason, lock};

/// What to do with a binding the platform has and xpool does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrphanPolicy {
    /// Record it as ACTIVE, so its slot is never handed out.
    #[default]
    Adopt,
    /// Unbind it on the platform.
    Release,
}

/// One reconciliation request.
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

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub xs_checked: u64,
    pub orphans_adopted: u64,
    pub orphans_released: u64,
    pub ghosts_freed: u64,
    pub fields_corrected: u64,
    pub pending_resolved: u64,
    pub numbers_removed: u64,
    pub errors: Vec<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

impl Pool {
    /// Reconciles the apps and numbers `opts` names. `report` is updated as it goes, so a
    /// status call can show a running reconciliation.
    pub async fn reconcile(
        &self,
        opts: &ReconcileOptions,
        report: &std::sync::Mutex<ReconcileReport>,
    ) -> Result<(), PoolError> {
        let apps: Vec<Arc<AppPool>> = match &opts.app {
            Some(name) => vec![Arc::clone(self.app(name)?)],
            None => {
                let mut all: Vec<_> = self.apps().cloned().collect();
                all.sort_by(|a, b| a.name().cmp(b.name()));
                all
            }
        };
        for app in apps {
            if !app.on_platform() {
                continue; // X mode: the platform has no bindings to compare with.
            }
            app.reconcile(opts, report).await?;
        }
        Ok(())
    }
}

/// A report and the app it covered (empty: all apps).
#[derive(Debug, Clone, Default)]
pub struct Scoped {
    pub app: String,
    pub report: ReconcileReport,
}

#[derive(Debug, Default)]
struct Status {
    /// The running reconciliation's live counts.
    running: Option<(String, Arc<Mutex<ReconcileReport>>)>,
    last: Option<Scoped>,
}

/// Reconciliations of one pool, one at a time.
#[derive(Debug)]
pub struct Reconciler {
    pool: Arc<Pool>,
    clock: Arc<dyn Clock>,
    grace_ms: i64,
    policy: OrphanPolicy,
    /// Held for the length of a run: reconciliations never overlap.
    run_lock: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
    /// The daemon's shutdown: a running reconciliation stops at its next await.
    cancel: CancellationToken,
}

impl Reconciler {
    /// Runs over `pool`; a local binding younger than `grace` is never freed as a ghost.
    pub fn new(
        pool: Arc<Pool>,
        clock: Arc<dyn Clock>,
        grace: Duration,
        policy: OrphanPolicy,
        cancel: CancellationToken,
    ) -> Self {
        Reconciler {
            pool,
            clock,
            grace_ms: grace.as_millis() as i64,
            policy,
            run_lock: tokio::sync::Mutex::new(()),
            status: Mutex::new(Status::default()),
            cancel,
        }
    }

    /// The daemon's shutdown, which ends scheduled and running reconciliations.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Reconciles `app` (all apps when `None`), only `numbers` when given.
    pub async fn run_once(
        &self,
        app: Option<String>,
        numbers: Vec<String>,
        dry_run: bool,
    ) -> Result<ReconcileReport, PoolError> {
        if let Some(name) = &app {
            self.pool.app(name)?;
        } else if !numbers.is_empty() {
            return Err(PoolError::invalid("numbers", "give app with numbers"));
        }
        let _running = self.run_lock.lock().await;
        let report = Arc::new(Mutex::new(ReconcileReport {
            dry_run,
            started_at_ms: self.clock.now_ms(),
            ..Default::default()
        }));
        let scope = app.clone().unwrap_or_default();
        lock(&self.status).running = Some((scope.clone(), Arc::clone(&report)));
        let opts = ReconcileOptions {
            app,
            numbers,
            dry_run,
            grace_ms: self.grace_ms,
            orphan_policy: self.policy,
        };
        // Every step is crash-safe, so stopping between two awaits is like a crash there.
        let result = tokio::select! {
            result = self.pool.reconcile(&opts, &report) => result,
            () = self.cancel.cancelled() => Err(PoolError::refused(
                Reason::ShuttingDown,
                "stopped: the daemon is shutting down",
            )),
        };
        let mut finished = lock(&report).clone();
        if let Err(e) = &result {
            finished.errors.push(e.to_string());
        }
        finished.finished_at_ms = Some(self.clock.now_ms());
        let mut status = lock(&self.status);
        status.running = None;
        status.last = Some(Scoped {
            app: scope,
            report: finished.clone(),
        });
        tracing::info!(
            xs = finished.xs_checked,
            adopted = finished.orphans_adopted,
            released = finished.orphans_released,
            ghosts = finished.ghosts_freed,
            corrected = finished.fields_corrected,
            pending = finished.pending_resolved,
            errors = finished.errors.len(),
            dry_run,
            "reconciliation finished"
        );
        Ok(finished)
    }

    /// The running reconciliation (counts so far) and the last finished one.
    pub fn status(&self) -> (Option<Scoped>, Option<Scoped>) {
        let status = lock(&self.status);
        let running = status.running.as_ref().map(|(app, r)| Scoped {
            app: app.clone(),
            report: lock(r).clone(),
        });
        (running, status.last.clone())
    }
}

/// Adds one X's counts to the run's.
pub(super) fn merge(total: &mut ReconcileReport, d: ReconcileReport) {
    total.xs_checked += d.xs_checked;
    total.orphans_adopted += d.orphans_adopted;
    total.orphans_released += d.orphans_released;
    total.ghosts_freed += d.ghosts_freed;
    total.fields_corrected += d.fields_corrected;
    total.pending_resolved += d.pending_resolved;
    total.numbers_removed += d.numbers_removed;
    total.errors.extend(d.errors);
}
