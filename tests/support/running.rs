//! A server task (simulator or daemon) with its shutdown signal.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A spawned server; dropping it signals shutdown without waiting.
#[derive(Debug)]
pub struct Running<E> {
    /// Cancelled on drop or [`Running::stop`]: the server's shutdown future completes.
    shutdown: CancellationToken,
    /// The server's task; taken by [`Running::stop`] or [`Running::exit`].
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E> Drop for Running<E> {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl<E: Debug + Send + 'static> Running<E> {
    /// Spawns `serve(shutdown)`.
    pub fn spawn<F>(serve: impl FnOnce(WaitForCancellationFutureOwned) -> F) -> Running<E>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(shutdown.clone().cancelled_owned()));
        Running {
            shutdown,
            task: Some(task),
        }
    }

    /// The server has returned (on its own, before any shutdown: a failed start-up).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// What the server returned; call once [`Running::is_finished`].
    pub async fn exit(&mut self) -> Result<(), E> {
        self.task.take().expect("not yet stopped").await.unwrap()
    }

    /// Signals shutdown and waits up to `limit` for `what` to return `Ok`.
    pub async fn stop(&mut self, limit: Duration, what: &str) {
        self.stop_with(limit, what)
            .await
            .unwrap_or_else(|e| panic!("{what} did not stop cleanly: {e:?}"));
    }

    /// Signals shutdown and waits up to `limit` for `what` to return; what it returned.
    pub async fn stop_with(&mut self, limit: Duration, what: &str) -> Result<(), E> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => tokio::time::timeout(limit, task)
                .await
                .unwrap_or_else(|_| panic!("{what} did not stop within {limit:?}"))
                .unwrap(),
            None => Ok(()),
        }
    }
}
