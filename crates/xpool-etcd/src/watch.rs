//! Watches that survive member failures: a background task per [`Watcher`] reconnects (to the
//! next endpoint, with backoff) from the revision after the last one it delivered, so the caller
//! sees every event once, in revision order, until the history it needs is compacted away.
//!
//! etcd never splits one revision's events over two responses (without `fragment`), so
//! resuming at "last delivered revision + 1" neither skips nor repeats an event.
//!
//! A silent stream is probed with a progress request after the client's keep-alive timeout and
//! abandoned when the probe goes unanswered as long, so a frozen member costs seconds, not the
//! HTTP/2 ping cycle. In etcd 3.4 the answer to a probe carries the store's revision even when the
//! watcher has not caught up, so it only proves liveness; the revisions of per-watcher progress
//! notifications (`progress_notify`, sent only to caught-up watchers) are trusted and delivered.

use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

use crate::{
    Client, Error, KeyValue,
    client::{MAX_MESSAGE, decorate},
    error::{Retry, retry_policy},
    kv::prefix_end,
    pb::{
        etcdserverpb::{
            WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
            watch_client::WatchClient, watch_request::RequestUnion,
        },
        mvccpb::event::EventType,
    },
};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or changed.
    Put,
    /// Deleted (also by its lease ending).
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after a put; after a delete, the key with `mod_revision` the deletion's revision
    /// and an empty value.
    pub kv: KeyValue,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// Events delivered together, in revision order. A batch without events is a progress
/// notification: every change up to `revision` has been delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    /// The store's revision when etcd sent the batch (≥ every event's revision).
    pub revision: i64,
    /// The changes.
    pub events: Vec<Event>,
}

/// A running watch. Dropping it stops the watch.
#[derive(Debug)]
pub struct Watcher {
    /// Batches from the watch task; it ends after sending an error (or if the task stops).
    batches: mpsc::Receiver<Result<WatchBatch, Error>>,
    /// The task that owns the gRPC stream, aborted on drop.
    task: JoinHandle<()>,
}

impl Watcher {
    /// The next batch. `Err(Error::Compacted { .. })` (or another terminal error) ends the
    /// watch: `None` follows.
    pub async fn next(&mut self) -> Option<Result<WatchBatch, Error>> {
        self.batches.recv().await
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Watches every key under `prefix`, from `start_revision` (inclusive; 0 is "changes after
    /// now").
    pub fn watch_prefix(&self, prefix: impl Into<Vec<u8>>, start_revision: i64) -> Watcher {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        self.watch(key, range_end, start_revision)
    }

    /// Watches one key, from `start_revision` (inclusive; 0 is "changes after now").
    pub fn watch_key(&self, key: impl Into<Vec<u8>>, start_revision: i64) -> Watcher {
        self.watch(key.into(), Vec::new(), start_revision)
    }

    fn watch(&self, key: Vec<u8>, range_end: Vec<u8>, start_revision: i64) -> Watcher {
        let (tx, batches) = mpsc::channel(64);
        let watch = Watch {
            client: self.clone(),
            key,
            range_end,
            next: start_revision,
            tx,
        };
        Watcher {
            batches,
            task: tokio::spawn(watch.run()),
        }
    }
}

/// Why a stream ended.
enum End {
    /// The watcher was dropped.
    Closed,
    /// The watch cannot go on: report and stop.
    Fatal(Error),
    /// Reconnect (`delivered`: the stream was useful, so reset the backoff).
    Reconnect { reason: String, delivered: bool },
}

struct Watch {
    client: Client,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The revision to (re)start from: the last delivered one + 1 (0 until known).
    next: i64,
    /// Where batches go; closed when the `Watcher` is dropped.
    tx: mpsc::Sender<Result<WatchBatch, Error>>,
}

impl Watch {
    async fn run(mut self) {
        let mut pause = Duration::from_millis(50);
        loop {
            let (index, channel) = self.client.current();
            let tx = self.tx.clone();
            let end = tokio::select! {
                end = self.stream(channel) => end,
                () = tx.closed() => End::Closed,
            };
            match end {
                End::Closed => return,
                End::Fatal(error) => {
                    let _ = self.tx.send(Err(error)).await;
                    return;
                }
                End::Reconnect { reason, delivered } => {
                    tracing::debug!(endpoint = self.client.url(index), %reason, next = self.next, "etcd watch reconnecting");
                    self.client.failed(index);
                    pause = if delivered {
                        Duration::from_millis(50)
                    } else {
                        (pause * 2).min(Duration::from_secs(1))
                    };
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// One gRPC stream on `channel`, until it ends.
    async fn stream(&mut self, channel: tonic::transport::Channel) -> End {
        let silence = self.client.keep_alive_timeout();
        let deadline = tokio::time::Instant::now() + silence;
        let token = match self.client.token(deadline).await {
            Ok(token) => token,
            Err(error) if error.is_unavailable() => return reconnect(error.to_string(), false),
            Err(error) => return End::Fatal(error),
        };
        let (requests, rx) = mpsc::channel(4);
        let create = WatchCreateRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            start_revision: self.next,
            progress_notify: true,
            ..WatchCreateRequest::default()
        };
        let _ = requests.try_send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        });
        let mut request = Request::new(ReceiverStream::new(rx));
        decorate(&mut request, token.as_ref());
        let mut watch = WatchClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        let open = watch.watch(request);
        let mut responses = match tokio::time::timeout(silence, open).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return self.status_end(&status, token.as_ref(), false),
            Err(_) => return reconnect("watch open timed out".into(), false),
        };
        let mut delivered = false;
        let mut probing = false;
        loop {
            let message = match tokio::time::timeout(silence, responses.message()).await {
                Ok(message) => message,
                Err(_) if probing => return reconnect("watch probe unanswered".into(), delivered),
                Err(_) => {
                    probing = true;
                    let probe = RequestUnion::ProgressRequest(WatchProgressRequest {});
                    let _ = requests.try_send(WatchRequest {
                        request_union: Some(probe),
                    });
                    continue;
                }
            };
            probing = false;
            match message {
                Ok(Some(response)) => match self.handle(response).await {
                    Ok(sent) => delivered |= sent,
                    Err(end) => return end,
                },
                Ok(None) => return reconnect("watch stream ended".into(), delivered),
                Err(status) => return self.status_end(&status, token.as_ref(), delivered),
            }
        }
    }

    /// Acts on one response: `Ok(true)` when a batch was delivered.
    async fn handle(&mut self, response: WatchResponse) -> Result<bool, End> {
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        if response.compact_revision != 0 {
            let compact_revision = response.compact_revision;
            return Err(End::Fatal(Error::Compacted { compact_revision }));
        }
        if response.canceled {
            let reason = response.cancel_reason;
            if reason.contains("permission denied") {
                return Err(End::Fatal(Error::AuthFailed(reason)));
            }
            return Err(reconnect(format!("watch canceled: {reason}"), false));
        }
        if response.created {
            if self.next == 0 {
                self.next = revision + 1;
            }
            return Ok(false);
        }
        if response.watch_id == -1 {
            return Ok(false); // the answer to a liveness probe
        }
        let events: Vec<Event> = response.events.into_iter().filter_map(event).collect();
        match events.last() {
            Some(last) => self.next = last.revision() + 1,
            None => self.next = self.next.max(revision + 1),
        }
        let batch = WatchBatch { revision, events };
        self.tx.send(Ok(batch)).await.map_err(|_| End::Closed)?;
        Ok(true)
    }

    fn status_end(
        &self,
        status: &tonic::Status,
        token: Option<&tonic::metadata::AsciiMetadataValue>,
        delivered: bool,
    ) -> End {
        match retry_policy(status) {
            Retry::Reauthenticate => self.client.forget_token(token),
            Retry::Never => match Error::from_status(status) {
                Error::Other { .. } => {}
                error => return End::Fatal(error),
            },
            Retry::Safe | Retry::ReadsOnly => {}
        }
        reconnect(status.to_string(), delivered)
    }
}

fn reconnect(reason: String, delivered: bool) -> End {
    End::Reconnect { reason, delivered }
}

fn event(event: crate::pb::mvccpb::Event) -> Option<Event> {
    let kind = match EventType::try_from(event.r#type).ok()? {
        EventType::Put => EventKind::Put,
        EventType::Delete => EventKind::Delete,
    };
    Some(Event {
        kind,
        kv: event.kv?.into(),
    })
}
