//! Group commit: one task owns every `db.flush()`.
//!
//! Writers that want durability send a waiter (a oneshot sender) and await its answer. The task
//! takes every waiter already queued, runs ONE blocking `db.flush()` on the blocking pool and
//! answers them all, so a burst of N writers costs one flush rather than N. A waiter is only
//! taken before its flush starts, so every answer comes from a flush that began after the
//! waiter was sent. `sled::Db::flush_async` is never used (it deadlocks under load, sled #1308).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::StoreError;

/// How a flush is answered.
pub type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// Queued waiters beyond this make `flush()` callers wait to enqueue (back-pressure only).
const QUEUE: usize = 1024;

/// The handle `Store` keeps on its flusher task.
#[derive(Debug)]
pub struct Flusher {
    /// Sends waiters to the task. `Store` owns it; `close` takes it out (later flushes fail with
    /// `Closed`), and dropping the `Store` drops it. The task ends once every clone is gone.
    /// The lock is only held to clone or take the sender, never across `.await`.
    queue: Mutex<Option<mpsc::Sender<Waiter>>>,
    /// The task itself; `close` takes and awaits it. Dropped with the `Store` (detached: the task
    /// still answers queued waiters, then ends).
    task: Mutex<Option<JoinHandle<()>>>,
    /// `db.flush()` calls made so far, shared with the task.
    flushes: Arc<AtomicU64>,
}

impl Flusher {
    /// Spawns the task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(db: sled::Db) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let flushes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(db, rx, Arc::clone(&flushes)));
        Flusher {
            queue: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            flushes,
        }
    }

    /// Resolves after a `db.flush()` that started after this call.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let queue = lock(&self.queue).clone().ok_or(StoreError::Closed)?;
        wait_for_flush(&queue).await
    }

    /// Flushes a last time, stops the task and waits for it. Later `flush` calls fail with
    /// `Closed`; closing again is a no-op.
    pub async fn close(&self) -> Result<(), StoreError> {
        let Some(queue) = lock(&self.queue).take() else {
            return Ok(());
        };
        let task = lock(&self.task).take();
        let result = wait_for_flush(&queue).await;
        drop(queue);
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "store flusher task failed");
        }
        result
    }

    /// How many `db.flush()` calls the task has made.
    pub fn count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn wait_for_flush(queue: &mpsc::Sender<Waiter>) -> Result<(), StoreError> {
    let (waiter, answer) = oneshot::channel();
    queue.send(waiter).await.map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

/// The task: ends when every sender is dropped and the queue is empty.
async fn run(db: sled::Db, mut queue: mpsc::Receiver<Waiter>, flushes: Arc<AtomicU64>) {
    let mut waiters = Vec::new();
    while queue.recv_many(&mut waiters, QUEUE).await > 0 {
        let db = db.clone();
        let result = match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(_bytes)) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Sled(e)),
            Err(e) if e.is_cancelled() => Err(StoreError::Closed),
            Err(e) => Err(StoreError::Sled(sled::Error::ReportableBug(format!(
                "db.flush() panicked: {e}"
            )))),
        };
        flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::warn!(error = %e, waiters = waiters.len(), "store flush failed");
        }
        for waiter in waiters.drain(..) {
            // A waiter that gave up (dropped its receiver) needs no answer.
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::store::{NumberRecord, NumberState, Store, StoreError};

    fn number(app: &str, number: &str) -> NumberRecord {
        NumberRecord {
            app: app.into(),
            number: number.into(),
            area_code: "0755".into(),
            state: NumberState::Active,
            needs_reconcile: false,
            updated_at_ms: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_share_few_db_flushes() {
        let store = Arc::new(Store::open_temporary().unwrap());
        let calls: Vec<_> = (0..200)
            .map(|n| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let record = number("ride", &format!("+86138{n:08}"));
                    store.put_number(&record)?;
                    store.flush().await
                })
            })
            .collect();
        let all = async {
            for call in calls {
                call.await.unwrap().unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("flushes hung");
        assert_eq!(store.numbers(Some("ride")).unwrap().len(), 200);
        let flushes = store.flush_count();
        println!("200 flush() calls -> {flushes} db.flush() calls");
        assert!(
            (1..50).contains(&flushes),
            "{flushes} db.flush() calls for 200 waiters"
        );
    }

    #[tokio::test]
    async fn flush_waits_for_a_fresh_flush() {
        let store = Store::open_temporary().unwrap();
        store.flush().await.unwrap();
        let before = store.flush_count();
        store.flush().await.unwrap();
        assert_eq!(store.flush_count(), before + 1);
    }

    #[tokio::test]
    async fn close_flushes_then_refuses() {
        let store = Store::open_temporary().unwrap();
        store.close().await.unwrap();
        assert_eq!(store.flush_count(), 1, "close flushes a last time");
        assert!(matches!(store.flush().await, Err(StoreError::Closed)));
        store.close().await.unwrap();
    }
}
