//! `xpool.v1.WatchService`: the call log's change feed as a stream that resumes.
//!
//! Each Watch has a task that reads the feed at its own pace — a page of changes after its
//! cursor, sent in responses through a small channel, then the next page — and, when it is
//! caught up, waits for the feed to say that new changes are durable. The feed is never held
//! for a watcher: a slow client only makes its own task wait for room in its channel. The task
//! ends when the client hangs up, when shutdown starts refusing new calls (the stream then ends
//! with UNAVAILABLE `SHUTTING_DOWN` carrying the resume token), or when the feed fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::access;
use super::convert_watch::{WatchFrom, WatchStart};
use super::pb;
use super::pb::watch_service_server::WatchService;
use super::resume;
use crate::auth::Access;
use crate::calls::{CallLog, Change, ChangeFilter};
use crate::lifecycle::{Pool, PoolError, Reason};

/// Changes read from the feed at a time.
const PAGE: usize = 256;
/// Responses a stream holds for its client before its task waits.
const BUFFER: usize = 4;
/// Most events in one response, and most bytes of them (well below the 4 MiB that clients
/// accept in one message by default).
const MAX_EVENTS: usize = 100;
const MAX_BYTES: usize = 256 * 1024;
/// How long a resume token may lag behind changes the filters left out before a response
/// without events moves it on (so that a narrow watch's token does not age out of the feed).
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// What a Watch reads: the call log's change feed (a trait, so that the stream is tested
/// without a store).
pub trait ChangeFeed: Send + Sync + 'static {
    /// Up to `limit` changes after `after` that `filter` passes, oldest first;
    /// [`Reason::WatchExpired`] when changes after `after` are no longer kept.
    fn changes_after(
        &self,
        after: u64,
        filter: &ChangeFilter,
        limit: usize,
    ) -> Result<Vec<Change>, PoolError>;

    /// The number of the last durable change.
    fn last_change(&self) -> u64;

    /// Changes whenever new changes became durable.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

impl ChangeFeed for CallLog {
    fn changes_after(
        &self,
        after: u64,
        filter: &ChangeFilter,
        limit: usize,
    ) -> Result<Vec<Change>, PoolError> {
        CallLog::changes_after(self, after, filter, limit)
    }

    fn last_change(&self) -> u64 {
        CallLog::last_change(self)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        CallLog::subscribe(self)
    }
}

/// The watch API.
#[derive(Debug)]
pub struct Changes {
    calls: Arc<CallLog>,
    /// Knows the configured apps: a watch of another is NOT_FOUND.
    pool: Arc<Pool>,
    /// Ends every stream. Cancelled when shutdown starts refusing new calls, so that the
    /// drain does not wait for watchers (and a child of the daemon's token).
    end: CancellationToken,
    /// The daemon's tasks: one per stream.
    tasks: TaskTracker,
}

impl Changes {
    pub fn new(
        calls: Arc<CallLog>,
        pool: Arc<Pool>,
        end: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Changes {
            calls,
            pool,
            end,
            tasks,
        }
    }
}

#[tonic::async_trait]
impl WatchService for Changes {
    type WatchStream = ChangeStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let caller = access::caller(&req)?;
        let start = WatchStart::try_from(req.into_inner())?;
        for app in &start.filter.apps {
            self.pool.app(app)?;
            caller.require(Access::Read(app))?;
        }
        if start.filter.apps.is_empty() {
            caller.require(Access::ReadAll)?;
        }
        let stream = follow(
            Arc::clone(&self.calls),
            start,
            self.end.clone(),
            &self.tasks,
        )?;
        Ok(Response::new(stream))
    }
}

/// Starts a Watch of `feed`: finds where it starts, reads the first page (so that a token
/// that expired is the call's answer, not the stream's), and spawns the task that sends it
/// and what follows.
pub fn follow<F: ChangeFeed>(
    feed: Arc<F>,
    start: WatchStart,
    end: CancellationToken,
    tasks: &TaskTracker,
) -> Result<ChangeStream, PoolError> {
    let WatchStart {
        filter,
        from,
        resume_token,
    } = start;
    // Subscribed before anything is read: a change stored from now on wakes the task.
    let wake = feed.subscribe();
    let last = feed.last_change();
    let cursor = match from {
        WatchFrom::Now => last,
        WatchFrom::Oldest => 0,
        WatchFrom::After(seq) if seq > last => {
            return Err(PoolError::invalid(
                "resume_token",
                "is ahead of this daemon's changes: it was not given by this daemon's store",
            ));
        }
        WatchFrom::After(seq) => seq,
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut reader = Reader {
        feed,
        filter,
        wake,
        cursor,
        sent: cursor,
        progress_due: None,
        tx,
        end,
    };
    let first = reader
        .read()
        .map_err(|e| e.with("resume_token", &resume_token))?;
    let (end_tx, end_rx) = oneshot::channel();
    tasks.spawn(async move {
        if let Some(status) = reader.run(first).await {
            // The client may have gone meanwhile.
            let _ = end_tx.send(status);
        }
    });
    Ok(ChangeStream {
        head: Some(pb::WatchResponse {
            events: Vec::new(),
            resume_token: resume::token(cursor),
        }),
        rx,
        end: Some(end_rx),
    })
}

/// One page of the feed: durable changes only.
struct Page {
    changes: Vec<Change>,
    /// The feed's last durable change, read before the page.
    last: u64,
    /// Whether every change up to `last` that the filter passes is on the page (or before the
    /// cursor): then the cursor may move on to `last`, and the reader waits for new changes.
    complete: bool,
}

/// Why a stream stops.
#[derive(Clone, Copy)]
enum Stop {
    /// The client hung up: there is nobody to tell.
    Gone,
    /// The daemon shuts down.
    Shutdown,
}

/// What ended a wait.
enum Woke {
    Changed,
    Progress,
    Stop(Stop),
}

/// The task of one Watch.
struct Reader<F> {
    feed: Arc<F>,
    filter: ChangeFilter,
    /// From the feed: changes when new changes are durable.
    wake: watch::Receiver<u64>,
    /// The last change read (sent, or left out by the filter).
    cursor: u64,
    /// The position of the last resume token the client was sent.
    sent: u64,
    /// When to send a response that only moves the token on to the cursor.
    progress_due: Option<Instant>,
    /// To the client's [`ChangeStream`]; closed when the client hangs up.
    tx: mpsc::Sender<pb::WatchResponse>,
    /// Shutdown: ends the stream.
    end: CancellationToken,
}

impl<F: ChangeFeed> Reader<F> {
    /// Sends `page` and what follows until the client hangs up, shutdown or a failure; the
    /// status the stream ends with, if any.
    async fn run(mut self, first: Page) -> Option<Status> {
        let mut page = first;
        loop {
            let caught_up = page.complete;
            let sent = match self.send_page(page).await {
                Ok(()) if caught_up => self.until_changed().await,
                sent => sent,
            };
            if let Err(stop) = sent {
                return self.stopped(stop);
            }
            page = match self.read() {
                Ok(page) => page,
                Err(e) => {
                    if e.reason() == Reason::WatchExpired {
                        tracing::debug!(error = %e, cursor = self.cursor, "a watch fell behind");
                    } else {
                        tracing::warn!(error = %e, cursor = self.cursor, "a watch failed");
                    }
                    return Some(e.with("resume_token", resume::token(self.cursor)).into());
                }
            };
        }
    }

    /// Waits for new changes, moving the client's token on meanwhile when it is due.
    async fn until_changed(&mut self) -> Result<(), Stop> {
        loop {
            match self.wait().await {
                Woke::Changed => return Ok(()),
                Woke::Progress => {
                    let moved = pb::WatchResponse {
                        events: Vec::new(),
                        resume_token: resume::token(self.cursor),
                    };
                    self.send(moved, self.cursor).await?;
                }
                Woke::Stop(stop) => return Err(stop),
            }
        }
    }

    /// The next page after the cursor; the wake-up is marked seen first, so a change stored
    /// while it is read wakes the next wait.
    fn read(&mut self) -> Result<Page, PoolError> {
        self.wake.borrow_and_update();
        let last = self.feed.last_change();
        let mut changes = self.feed.changes_after(self.cursor, &self.filter, PAGE)?;
        let complete = changes.len() < PAGE || changes.last().is_some_and(|c| c.seq > last);
        // A change not yet durable could be lost in a crash and its number given to another:
        // it is sent once the feed says it is durable (which wakes the reader).
        changes.retain(|c| c.seq <= last);
        Ok(Page {
            changes,
            last,
            complete,
        })
    }

    /// Sends the changes of `page` in responses of bounded size, then moves the cursor past
    /// the changes the filter left out (when the page is complete).
    async fn send_page(&mut self, page: Page) -> Result<(), Stop> {
        let Page {
            changes,
            last,
            complete,
        } = page;
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut upto = self.cursor;
        for change in changes {
            let seq = change.seq;
            let event = pb::WatchEvent::from(change);
            let len = event.encoded_len();
            if !events.is_empty() && (events.len() >= MAX_EVENTS || bytes + len > MAX_BYTES) {
                self.send_events(std::mem::take(&mut events), upto).await?;
                bytes = 0;
            }
            events.push(event);
            bytes += len;
            upto = seq;
        }
        if !events.is_empty() {
            self.send_events(events, upto).await?;
        }
        if complete && last > self.cursor {
            self.cursor = last;
        }
        if self.cursor == self.sent {
            self.progress_due = None;
        } else if self.progress_due.is_none() {
            self.progress_due = Some(Instant::now() + PROGRESS_EVERY);
        }
        Ok(())
    }

    async fn send_events(&mut self, events: Vec<pb::WatchEvent>, upto: u64) -> Result<(), Stop> {
        let response = pb::WatchResponse {
            events,
            resume_token: resume::token(upto),
        };
        self.send(response, upto).await
    }

    /// Sends `response`, which moves the client's token to `upto`, waiting for room in the
    /// channel unless the client hangs up or shutdown comes first.
    async fn send(&mut self, response: pb::WatchResponse, upto: u64) -> Result<(), Stop> {
        tokio::select! {
            biased;
            () = self.end.cancelled() => return Err(Stop::Shutdown),
            sent = self.tx.send(response) => sent.map_err(|_| Stop::Gone)?,
        }
        self.cursor = self.cursor.max(upto);
        self.sent = upto;
        if self.sent == self.cursor {
            self.progress_due = None;
        }
        Ok(())
    }

    /// Waits for new changes, the time to move the token on, the client hanging up or
    /// shutdown.
    async fn wait(&mut self) -> Woke {
        let due = self.progress_due;
        let progress = async move {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.end.cancelled() => Woke::Stop(Stop::Shutdown),
            () = self.tx.closed() => Woke::Stop(Stop::Gone),
            changed = self.wake.changed() => match changed {
                Ok(()) => Woke::Changed,
                // The call log is gone: the daemon is stopping.
                Err(_) => Woke::Stop(Stop::Shutdown),
            },
            () = progress => Woke::Progress,
        }
    }

    /// The status a stream that stopped for `stop` ends with.
    fn stopped(&self, stop: Stop) -> Option<Status> {
        match stop {
            Stop::Gone => None,
            Stop::Shutdown => Some(
                PoolError::refused(
                    Reason::ShuttingDown,
                    "the daemon is shutting down: watch again with the last resume_token",
                )
                .with("resume_token", resume::token(self.cursor))
                .into(),
            ),
        }
    }
}

/// The responses of one Watch: the first (where it starts), those its task sends, then the
/// status the task ended with, if any (a stream whose client hung up just ends).
#[derive(Debug)]
pub struct ChangeStream {
    head: Option<pb::WatchResponse>,
    /// From the stream's task; closed when it ends.
    rx: mpsc::Receiver<pb::WatchResponse>,
    /// The status the task ended with, sent once it has stopped sending responses.
    end: Option<oneshot::Receiver<Status>>,
}

impl Stream for ChangeStream {
    type Item = Result<pb::WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        if let Some(response) = ready!(this.rx.poll_recv(cx)) {
            return Poll::Ready(Some(Ok(response)));
        }
        let Some(end) = this.end.as_mut() else {
            return Poll::Ready(None);
        };
        let status = ready!(Pin::new(end).poll(cx));
        this.end = None;
        Poll::Ready(status.ok().map(Err))
    }
}

#[cfg(test)]
mod tests;
