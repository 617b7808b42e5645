//! Defensive unbinds after expiry: best-effort calls that must not compete with Binds.
//!
//! The platform expires AXB, AXE and AXYB bindings itself, so the unbind xpool sends after
//! marking one EXPIRED only makes sure. A burst of expiries (a shared deadline) would otherwise
//! start one task and one platform call per binding at once, taking the daemon's CPU and the
//! app's rate from the Binds arriving meanwhile. Here they wait in a bounded queue that one task
//! drains a few at a time, at background priority, and not at all while the expiry job works
//! through a burst (`Pool::expire_round` says so): the bindings are EXPIRED and their slots free
//! already, so the calls can wait until the burst has left the CPU to the Binds. What does not
//! fit in the queue is dropped (the platform expires those bindings anyway), with a log line
//! saying how many. Each waits as the few fields its call needs (a few dozen bytes and the
//! subscription id), not as the whole record (some 500 bytes and every string it owns, the
//! party numbers too): a full queue holds 100,000.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lock;
use super::upstream_calls;
use crate::platform::Mode;
use crate::store::{BindingId, BindingRecord};
use crate::upstream::{AppClient, CallOpts, Priority};

/// Unbinds waiting at most; more are dropped.
const QUEUE_LIMIT: usize = 100_000;

/// Unbinds in flight at once.
const CONCURRENCY: usize = 8;

/// What a defensive unbind needs of an expired binding.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unbind {
    /// For the log line of a failed call.
    id: BindingId,
    mode: Mode,
    subscription_id: String,
    /// AXYB: unbind only the YB relation on this Y (the AX subscription carries others).
    only_yb_of: Option<String>,
}

impl Unbind {
    /// The unbind of `expired`; `None` for a binding the platform never gave an id (nothing
    /// to unbind).
    fn of(expired: &BindingRecord, only_yb: bool) -> Option<Unbind> {
        Some(Unbind {
            id: expired.id,
            mode: expired.mode,
            subscription_id: expired.subscription_id.clone()?,
            only_yb_of: if only_yb { expired.y.clone() } else { None },
        })
    }
}

/// One app's queue of defensive unbinds.
#[derive(Debug)]
pub struct Cleanup {
    /// Where the drain task runs, so shutdown waits for it.
    tasks: TaskTracker,
    /// Shutdown: the drain stops (what is left is best-effort anyway).
    cancel: CancellationToken,
    /// True while expiry works through a burst: no unbind starts meanwhile. The sender is the
    /// pool's (`Pool::expire_round` sets it).
    expiring: watch::Receiver<bool>,
    /// The unbinds waiting, oldest first.
    queue: Mutex<VecDeque<Unbind>>,
    /// A drain task is running.
    draining: AtomicBool,
    /// Unbinds dropped because the queue was full.
    dropped: AtomicU64,
}

impl Cleanup {
    pub fn new(
        tasks: TaskTracker,
        cancel: CancellationToken,
        expiring: watch::Receiver<bool>,
    ) -> Self {
        Cleanup {
            tasks,
            cancel,
            expiring,
            queue: Mutex::default(),
            draining: AtomicBool::default(),
            dropped: AtomicU64::default(),
        }
    }

    /// Queues a defensive unbind of `expired` (with `only_yb`, of its YB relation alone) and
    /// makes sure a task drains the queue.
    pub fn push(
        self: &Arc<Self>,
        app: &str,
        client: &Arc<AppClient>,
        expired: &BindingRecord,
        only_yb: bool,
    ) {
        let Some(unbind) = Unbind::of(expired, only_yb) else {
            return;
        };
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
            queue.push_back(unbind);
        }
        if !self.draining.swap(true, Ordering::AcqRel) {
            self.tasks
                .spawn(Arc::clone(self).drain(app.to_owned(), Arc::clone(client)));
        }
    }

    async fn drain(self: Arc<Self>, app: String, client: Arc<AppClient>) {
        let mut running = JoinSet::new();
        let mut expiring = self.expiring.clone();
        loop {
            let held = *expiring.borrow_and_update();
            if held && running.is_empty() && !self.is_empty() {
                // A burst of expiries: wait for its end.
                let over = tokio::select! {
                    over = expiring.wait_for(|busy| !busy) => over.is_ok(),
                    () = self.cancel.cancelled() => false,
                };
                if !over {
                    // Shutdown, or the pool is gone.
                    return;
                }
                continue;
            }
            while !held && running.len() < CONCURRENCY {
                let Some(unbind) = self.pop() else {
                    break;
                };
                let client = Arc::clone(&client);
                running.spawn(async move {
                    let Unbind {
                        id,
                        mode,
                        subscription_id,
                        only_yb_of,
                    } = unbind;
                    let background = CallOpts::priority(Priority::Background);
                    let result = upstream_calls::unbind_subscription(
                        &client,
                        mode,
                        subscription_id,
                        only_yb_of,
                        background,
                    )
                    .await;
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

    fn pop(&self) -> Option<Unbind> {
        lock(&self.queue).pop_front()
    }

    fn is_empty(&self) -> bool {
        lock(&self.queue).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::platform::Mode;
    use crate::store::{BindingId, BindingState, CallOptionsRecord};
    use crate::upstream::{AppSettings, Secret, http_client};

    /// A platform that answers every call with success, counting them.
    async fn counting_platform() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"resultcode":"0","resultdesc":"Success"}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, calls)
    }

    fn expired(n: u8) -> BindingRecord {
        BindingRecord {
            id: BindingId([n; 16]),
            app: "rides".into(),
            mode: Mode::Axb,
            state: BindingState::Expired,
            x: "+8617000000001".into(),
            extension: None,
            y: None,
            party_a: "+8613900000001".into(),
            party_b: Some("+8613900000002".into()),
            area_code: "010".into(),
            subscription_id: Some(format!("sub-{n}")),
            request_id: None,
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            expires_at_ms: Some(2_000),
            released_at_ms: Some(2_000),
            ttl_seconds: 1,
            call_options: CallOptionsRecord::default(),
            user_data: None,
            reason: "test".into(),
        }
    }

    /// A queue whose unbinds go to a counting platform, held while `expiring` says so.
    struct Rig {
        client: Arc<AppClient>,
        calls: Arc<AtomicUsize>,
        expiring: watch::Sender<bool>,
        tasks: TaskTracker,
        cleanup: Arc<Cleanup>,
    }

    impl Rig {
        async fn new(expiring: bool) -> Rig {
            let (url, calls) = counting_platform().await;
            let client = Arc::new(AppClient::new(
                AppSettings::new("key", Secret::new("secret"), url),
                http_client(),
            ));
            let (expiring, held) = watch::channel(expiring);
            let tasks = TaskTracker::new();
            let cleanup = Arc::new(Cleanup::new(tasks.clone(), CancellationToken::new(), held));
            Rig {
                client,
                calls,
                expiring,
                tasks,
                cleanup,
            }
        }

        fn push(&self, expired: &BindingRecord) {
            self.cleanup.push("rides", &self.client, expired, false);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        /// Waits for the drain to end, which it does once the queue is empty.
        async fn drained(&self) {
            self.tasks.close();
            tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
                .await
                .expect("the drain ended");
        }
    }

    #[test]
    fn a_queued_unbind_keeps_what_its_call_needs() {
        let mut axyb = expired(1);
        (axyb.mode, axyb.y) = (Mode::Axyb, Some("+8617100000001".into()));
        assert_eq!(
            Unbind::of(&axyb, true),
            Some(Unbind {
                id: axyb.id,
                mode: Mode::Axyb,
                subscription_id: "sub-1".into(),
                only_yb_of: Some("+8617100000001".into()),
            })
        );
        let whole = Unbind::of(&axyb, false).unwrap();
        assert_eq!(whole.only_yb_of, None, "the AX with all its YBs");
    }

    #[tokio::test]
    async fn a_binding_the_platform_never_gave_an_id_queues_nothing() {
        let rig = Rig::new(false).await;
        let mut never_bound = expired(1);
        never_bound.subscription_id = None;
        rig.push(&never_bound);
        assert!(rig.cleanup.is_empty());
        assert!(rig.tasks.is_empty(), "no drain started");
        rig.push(&expired(2));
        rig.drained().await;
        assert_eq!(rig.calls(), 1, "one call, for the one with an id");
    }

    #[tokio::test]
    async fn unbinds_wait_while_expiry_works_through_a_burst() {
        let rig = Rig::new(true).await;
        for n in 0..3 {
            rig.push(&expired(n));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rig.calls(), 0, "held during the burst");

        rig.expiring.send_replace(false);
        for _ in 0..100 {
            if rig.calls() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rig.calls(), 3, "sent once the burst is over");
        rig.drained().await;
    }
}
