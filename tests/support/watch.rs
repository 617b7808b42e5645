//! A Watch stream read one event at a time: a response may carry several events, and none of
//! them is skipped.

use std::collections::VecDeque;
use std::time::Duration;

use tonic::Streaming;
use xpool::grpc::pb;
use xpool::grpc::pb::watch_service_client::WatchServiceClient;

use super::Daemon;
use super::grpc::rpc;

/// Longest a test waits for one Watch response that must come.
pub const WATCH_WAIT: Duration = Duration::from_secs(10);

/// An open Watch, past its first response.
pub struct Watching {
    pub stream: Streaming<pb::WatchResponse>,
    /// The first response's resume token: where the stream starts.
    pub start: String,
    /// Events of a response already read and not yet returned.
    pending: VecDeque<pb::WatchEvent>,
}

impl Watching {
    /// Opens a Watch of `req` and reads its first response, which holds no events.
    pub async fn open(d: &Daemon, req: pb::WatchRequest) -> Watching {
        let mut client = WatchServiceClient::connect(d.addr.clone()).await.unwrap();
        let mut stream = rpc("Watch", client.watch(req)).await.unwrap();
        let first = next_response(&mut stream).await;
        assert!(first.events.is_empty(), "{first:?}");
        assert!(!first.resume_token.is_empty());
        Watching {
            stream,
            start: first.resume_token,
            pending: VecDeque::new(),
        }
    }

    /// The next event (responses that only move the token on are skipped); fails the test
    /// after [`WATCH_WAIT`] without one.
    pub async fn next_event(&mut self) -> pb::WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let response = next_response(&mut self.stream).await;
            self.pending.extend(response.events);
        }
    }

    /// Whether an event comes within `wait` (one that does is kept for [`Self::next_event`]).
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.message()).await {
                Err(_) => return true,
                Ok(response) => {
                    let response = response.expect("not an error").expect("the stream goes on");
                    if !response.events.is_empty() {
                        self.pending.extend(response.events);
                        return false;
                    }
                }
            }
        }
    }
}

/// The next response of `stream`; fails the test after [`WATCH_WAIT`] without one.
pub async fn next_response(stream: &mut Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(WATCH_WAIT, stream.message())
        .await
        .expect("a Watch response in time")
        .expect("not an error")
        .expect("the stream goes on")
}
