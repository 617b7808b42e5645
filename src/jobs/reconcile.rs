//! Reconciliation: the worker that carries out queued runs one at a time (on-demand and
//! scheduled alike, so they never overlap), and the schedule that queues a run of every app
//! every interval.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lifecycle::{Reconciler, RunRequest};

/// Carries out queued runs in the order they were queued.
#[derive(Debug)]
pub struct ReconcileWorker {
    pub reconciler: Arc<Reconciler>,
}

impl ReconcileWorker {
    /// Works until `cancel`; then the running run (stopped at its next await: every step is
    /// crash-safe) and the queued ones end CANCELLED, and nothing more is queued.
    pub async fn run(self, cancel: CancellationToken) {
        let reconciler = &self.reconciler;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                id = reconciler.next() => {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = reconciler.execute(id) => {}
                    }
                }
            }
        }
        reconciler.close();
    }
}

/// Queues a run over every app every `every`, and waits for it before the next.
#[derive(Debug)]
pub struct ScheduledReconcile {
    pub reconciler: Arc<Reconciler>,
    pub every: Duration,
}

impl ScheduledReconcile {
    pub async fn run(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = self.once() => {}
                    }
                }
            }
        }
    }

    async fn once(&self) {
        let run = match self.reconciler.submit(RunRequest::default()) {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(error = %e, "scheduled reconciliation not queued");
                return;
            }
        };
        if let Some(mut watch) = self.reconciler.watch(run.id) {
            // The worker logs how it ended.
            let _ = watch.wait_for(|r| r.state.is_final()).await;
        }
    }
}
