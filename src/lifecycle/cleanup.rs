//! Defensive unbinds after expiry: best-effort calls that must not compete with Binds.
//!
//! The platform expires AXB, AXE and AXYB bindings itself, so the unbind xpool sends after
//! marking one EXPIRED only makes sure. A burst of expiries (a shared deadline) would otherwise
//! start one task and one platform call per binding at once, taking the daemon's CPU and the
//! app's rate from the Binds arriving meanwhile. Here they wait in a bounded queue that one task
//! drains a few at a time, at background priority. What does not fit in the queue is dropped
//! (the platform expires those bindings anyway), with a log line saying how many.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lock;
use super::upstream_calls;
use crate::store::BindingRecord;
use crate::upstream::{AppClient, CallOpts, Priority};

/// Unbinds waiting at most; more are dropped.
const QUEUE_LIMIT: usize = 100_000;

/// Unbinds in flight at once.
const CONCURRENCY: usize = 8;

/// One app's queue of defensive unbinds.
#[derive(Debug)]
pub struct Cleanup {
    /// Where the drain task runs, so shutdown waits for it.
    tasks: TaskTracker,
    /// Shutdown: the drain stops (what is left is best-effort anyway).
    cancel: CancellationToken,
    /// (expired binding, unbind only its Y-B relation).
    queue: Mutex<VecDeque<(BindingRecord, bool)>>,
    /// A drain task is running.
    draining: AtomicBool,
    /// Unbinds dropped because the queue was full.
    dropped: AtomicU64,
}

impl Cleanup {
    pub fn new(tasks: TaskTracker, cancel: CancellationToken) -> Self {
        Cleanup {
            tasks,
            cancel,
            queue: Mutex::default(),
            draining: AtomicBool::default(),
            dropped: AtomicU64::default(),
        }
    }

    /// Queues a defensive unbind of `expired` and makes sure a task drains the queue.
    pub fn push(
        self: &Arc<Self>,
        app: &str,
        client: &Arc<AppClient>,
        expired: BindingRecord,
        only_yb: bool,
    ) {
        {
            let mut queue = lock(&self.queue);
            if queue.len() >= QUEUE_LIMIT {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::info!(
                        app,
                        dropped,
                        "defensive unbind queue full; the platform expires those bindings itself"
                    );
                }
                return;
            }
            queue.push_back((expired, only_yb));
        }
        if !self.draining.swap(true, Ordering::AcqRel) {
            self.tasks
                .spawn(Arc::clone(self).drain(app.to_owned(), Arc::clone(client)));
        }
    }

    async fn drain(self: Arc<Self>, app: String, client: Arc<AppClient>) {
        let mut running = JoinSet::new();
        loop {
            while running.len() < CONCURRENCY {
                let Some((expired, only_yb)) = self.pop() else {
                    break;
                };
                let client = Arc::clone(&client);
                running.spawn(async move {
                    let id = expired.id;
                    let background = CallOpts::priority(Priority::Background);
                    let result =
                        upstream_calls::unbind(&client, &expired, only_yb, background).await;
                    (id, result)
                });
            }
            let next = tokio::select! {
                next = running.join_next() => next,
                () = self.cancel.cancelled() => return,
            };
            match next {
                Some(Ok((_, Ok(_)))) => {}
                Some(Ok((id, Err(e)))) => {
                    tracing::debug!(%app, %id, error = %e, "defensive unbind after expiry failed");
                }
                Some(Err(e)) => tracing::debug!(%app, error = %e, "defensive unbind task failed"),
                None => {
                    // Empty and idle: stop, unless a push came in between.
                    self.draining.store(false, Ordering::Release);
                    if self.is_empty() || self.draining.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        }
    }

    fn pop(&self) -> Option<(BindingRecord, bool)> {
        lock(&self.queue).pop_front()
    }

    fn is_empty(&self) -> bool {
        lock(&self.queue).is_empty()
    }
}
