//! Group commit: one thread owns every `db.flush()`.
//!
//! Writers that want durability send a waiter (a oneshot sender) and await its answer. The
//! flusher thread takes every waiter already queued, runs ONE `db.flush()` and answers them all,
//! so a burst of N writers costs one flush rather than N. A waiter is only taken before its flush
//! starts, so every answer comes from a flush that began after the waiter was sent. The flusher
//! is a dedicated thread rather than a tokio task with `spawn_blocking`: each flush then costs
//! one thread handoff fewer, which on a small machine is a good part of a flush's CPU.
//! `sled::Db::flush_async` is never used (it deadlocks under load, sled #1308).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::error::StoreError;

/// How a flush is answered.
pub type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// The handle `Store` keeps on its flusher thread.
#[derive(Debug)]
pub struct Flusher {
    /// Sends waiters to the thread. `Store` owns it; `close` takes it out (later flushes fail
    /// with `Closed`), and dropping the `Store` drops it. The thread ends once it is gone and the
    /// queue is empty. The lock is only held to clone or take the sender, never across `.await`.
    queue: Mutex<Option<mpsc::Sender<Waiter>>>,
    /// The thread itself; `close` takes and joins it. Dropped with the `Store` (detached: the
    /// thread still answers queued waiters, then ends).
    thread: Mutex<Option<JoinHandle<()>>>,
    /// `db.flush()` calls made so far, shared with the thread.
    flushes: Arc<AtomicU64>,
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn spawn(db: sled::Db) -> Self {
        let (tx, rx) = mpsc::channel();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flushes);
        let thread = std::thread::Builder::new()
            .name("xpool-flusher".into())
            .spawn(move || run(&db, &rx, &counter))
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the store flusher thread");
        }
        Flusher {
            queue: Mutex::new(thread.is_some().then_some(tx)),
            thread: Mutex::new(thread),
            flushes,
        }
    }

    /// Resolves after a `db.flush()` that started after this call.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let queue = lock(&self.queue).clone().ok_or(StoreError::Closed)?;
        wait_for_flush(&queue).await
    }

    /// Flushes a last time, stops the thread and waits for it. Later `flush` calls fail with
    /// `Closed`; closing again is a no-op.
    pub async fn close(&self) -> Result<(), StoreError> {
        let Some(queue) = lock(&self.queue).take() else {
            return Ok(());
        };
        let thread = lock(&self.thread).take();
        let result = wait_for_flush(&queue).await;
        drop(queue);
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("store flusher thread failed");
            }
        }
        result
    }

    /// How many `db.flush()` calls the thread has made.
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
    queue.send(waiter).map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

/// The thread: ends when every sender is dropped and the queue is empty.
fn run(db: &sled::Db, queue: &mpsc::Receiver<Waiter>, flushes: &AtomicU64) {
    let mut waiters = Vec::new();
    while let Ok(first) = queue.recv() {
        waiters.push(first);
        waiters.extend(queue.try_iter());
        let result = db.flush().map(|_bytes| ()).map_err(StoreError::Sled);
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
