//! Runs reconciliations one at a time — on demand (gRPC, the `xpool reconcile` command) and on
//! a schedule — and keeps the running and the last report for status calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::pool::{Clock, OrphanPolicy, Pool, PoolError, ReconcileOptions, ReconcileReport};

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Reconciler {
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
            () = self.cancel.cancelled() => Err(PoolError::unavailable(
                "stopped: the daemon is shutting down",
                None,
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

    /// Reconciles every app every `every` until the daemon shuts down.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let cancel = self.cancel.clone();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.run_once(None, Vec::new(), false).await {
                        tracing::warn!(error = %e, "scheduled reconciliation failed");
                    }
                }
            }
        }
    }
}
