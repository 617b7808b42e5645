//! The stream against an in-memory feed: where it starts, resuming, filters, the token moving
//! past what they leave out, a slow client, expiry, shutdown and a client hanging up.

use std::sync::Mutex;

use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use super::*;
use crate::calls::ChangeKind;

/// Longest a test waits for a response that must come.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Feed {
    state: Mutex<State>,
    wake: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    changes: Vec<Change>,
    /// Changes up to this one were pruned.
    pruned_through: u64,
    /// Changes after this one are stored but not durable yet (`None`: all are).
    durable_through: Option<u64>,
}

impl Feed {
    fn new() -> Arc<Feed> {
        Arc::new(Feed {
            state: Mutex::default(),
            wake: watch::channel(0).0,
        })
    }

    fn push(&self, app: &str, kind: ChangeKind) -> u64 {
        let mut state = self.state.lock().unwrap();
        let seq = state.changes.last().map_or(0, |c| c.seq) + 1;
        state.changes.push(Change {
            seq,
            at_ms: i64::try_from(seq).unwrap(),
            app: app.into(),
            kind,
            binding: None,
            number: None,
            call_event: None,
            message: None,
        });
        let durable = state.durable_through.is_none();
        drop(state);
        if durable {
            self.wake.send_replace(seq);
        }
        seq
    }

    /// From now on, changes are stored but not durable until [`Feed::sync`].
    fn hold_durability(&self) {
        let mut state = self.state.lock().unwrap();
        state.durable_through = Some(state.changes.last().map_or(0, |c| c.seq));
    }

    /// Every change stored is durable.
    fn sync(&self) {
        let mut state = self.state.lock().unwrap();
        state.durable_through = None;
        let last = state.changes.last().map_or(0, |c| c.seq);
        drop(state);
        self.wake.send_replace(last);
    }

    fn push_many(&self, n: usize) -> u64 {
        (0..n)
            .map(|_| self.push("rides", ChangeKind::BindingBound))
            .last()
            .unwrap_or(0)
    }

    fn prune_through(&self, seq: u64) {
        let mut state = self.state.lock().unwrap();
        state.changes.retain(|c| c.seq > seq);
        state.pruned_through = seq;
    }
}

impl ChangeFeed for Feed {
    fn changes_after(
        &self,
        after: u64,
        filter: &ChangeFilter,
        limit: usize,
    ) -> Result<Vec<Change>, PoolError> {
        let state = self.state.lock().unwrap();
        if after != 0 && after < state.pruned_through {
            return Err(PoolError::refused(Reason::WatchExpired, "expired"));
        }
        Ok(state
            .changes
            .iter()
            .filter(|c| c.seq > after && filter.passes(&c.app, c.kind))
            .take(limit)
            .cloned()
            .collect())
    }

    fn last_change(&self) -> u64 {
        let state = self.state.lock().unwrap();
        let stored = state.changes.last().map_or(0, |c| c.seq);
        state.durable_through.unwrap_or(stored)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

/// A running Watch of a feed, with what ends it.
struct Watching {
    stream: ChangeStream,
    end: CancellationToken,
    tasks: TaskTracker,
}

fn start(feed: &Arc<Feed>, filter: ChangeFilter, from: WatchFrom) -> Result<Watching, PoolError> {
    let end = CancellationToken::new();
    let tasks = TaskTracker::new();
    let start = WatchStart {
        filter,
        from,
        resume_token: "the request's".into(),
    };
    let stream = follow(Arc::clone(feed), start, end.clone(), &tasks)?;
    Ok(Watching { stream, end, tasks })
}

fn watch_all(feed: &Arc<Feed>, from: WatchFrom) -> Watching {
    start(feed, ChangeFilter::default(), from).unwrap()
}

impl Watching {
    async fn next(&mut self) -> Option<Result<pb::WatchResponse, Status>> {
        tokio::time::timeout(WAIT, self.stream.next())
            .await
            .expect("a response within the wait")
    }

    async fn response(&mut self) -> pb::WatchResponse {
        self.next()
            .await
            .expect("a response")
            .expect("not an error")
    }

    /// Whether nothing comes within a short while.
    async fn quiet(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(100), self.stream.next())
            .await
            .is_err()
    }
}

fn seqs(r: &pb::WatchResponse) -> Vec<u64> {
    r.events
        .iter()
        .map(|e| resume::position(&e.resume_token).unwrap())
        .collect()
}

fn meta(s: &Status, key: &str) -> String {
    let details = s.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    info.metadata.get(key).cloned().unwrap_or_default()
}

#[tokio::test]
async fn from_now_it_starts_after_the_last_change_and_sends_the_new_ones() {
    let feed = Feed::new();
    feed.push_many(2);
    let mut w = watch_all(&feed, WatchFrom::Now);
    let head = w.response().await;
    assert!(head.events.is_empty());
    assert_eq!(head.resume_token, resume::token(2));
    assert!(w.quiet().await, "nothing before a change");
    feed.push("rides", ChangeKind::BindingReleased);
    let r = w.response().await;
    assert_eq!(seqs(&r), [3]);
    assert_eq!(r.events[0].kind(), pb::WatchKind::BindingReleased);
    assert_eq!(r.resume_token, resume::token(3));
}

#[tokio::test]
async fn a_resume_token_goes_on_after_its_change_and_oldest_from_the_first() {
    let feed = Feed::new();
    feed.push_many(5);
    let mut w = watch_all(&feed, WatchFrom::After(2));
    assert_eq!(w.response().await.resume_token, resume::token(2));
    let r = w.response().await;
    assert_eq!(seqs(&r), [3, 4, 5]);
    assert_eq!(r.resume_token, resume::token(5));

    let mut w = watch_all(&feed, WatchFrom::Oldest);
    assert_eq!(w.response().await.resume_token, resume::token(0));
    assert_eq!(seqs(&w.response().await), [1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn filters_apply_and_the_token_moves_past_what_they_leave_out() {
    let feed = Feed::new();
    let filter = ChangeFilter {
        apps: vec!["rides".into()],
        kinds: vec![ChangeKind::BindingBound],
    };
    let mut w = start(&feed, filter, WatchFrom::Now).unwrap();
    assert_eq!(w.response().await.resume_token, resume::token(0));
    feed.push("parcels", ChangeKind::BindingBound);
    feed.push("rides", ChangeKind::Message);
    feed.push("rides", ChangeKind::BindingBound);
    let r = w.response().await;
    assert_eq!(seqs(&r), [3]);
    assert_eq!(r.resume_token, resume::token(3));
    // Changes the filter leaves out move the token on, a while later.
    feed.push("parcels", ChangeKind::BindingBound);
    feed.push("rides", ChangeKind::CallEvent);
    let early = tokio::time::timeout(PROGRESS_EVERY - Duration::from_secs(1), w.stream.next());
    assert!(early.await.is_err(), "not at once");
    let moved = w.response().await;
    assert!(moved.events.is_empty());
    assert_eq!(moved.resume_token, resume::token(5));
    // Once: nothing more until something changes.
    let later = tokio::time::timeout(PROGRESS_EVERY * 3, w.stream.next());
    assert!(later.await.is_err());
}

#[tokio::test]
async fn changes_are_sent_once_durable() {
    let feed = Feed::new();
    feed.push_many(2);
    let mut w = watch_all(&feed, WatchFrom::Now);
    assert_eq!(w.response().await.resume_token, resume::token(2));
    feed.hold_durability();
    feed.push_many(2);
    // Another change wakes the reader; the two stored ones are not durable yet.
    feed.wake.send_replace(2);
    assert!(w.quiet().await, "nothing before it is durable");
    feed.sync();
    let r = w.response().await;
    assert_eq!(seqs(&r), [3, 4]);
    // A watch that starts meanwhile starts after the last durable change.
    feed.hold_durability();
    feed.push_many(1);
    let mut late = watch_all(&feed, WatchFrom::Now);
    assert_eq!(late.response().await.resume_token, resume::token(4));
    feed.sync();
    assert_eq!(seqs(&late.response().await), [5]);
    assert_eq!(seqs(&w.response().await), [5]);
}

#[tokio::test]
async fn a_slow_client_gets_every_change_in_order_in_bounded_responses() {
    let feed = Feed::new();
    feed.push_many(1000);
    let mut w = watch_all(&feed, WatchFrom::Oldest);
    w.response().await;
    // The client reads nothing for a while; changes go on being stored meanwhile.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let last = feed.push_many(500);
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        let r = w.response().await;
        assert!(!r.events.is_empty() && r.events.len() <= MAX_EVENTS);
        assert_eq!(r.resume_token, r.events.last().unwrap().resume_token);
        seen.extend(seqs(&r));
    }
    assert_eq!(seen, (1..=last).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_expired_or_foreign_token_is_the_calls_answer() {
    let feed = Feed::new();
    feed.push_many(5);
    feed.prune_through(3);
    let Err(expired) = start(&feed, ChangeFilter::default(), WatchFrom::After(2)) else {
        panic!("a token older than the feed keeps")
    };
    assert_eq!(expired.reason(), Reason::WatchExpired);
    assert_eq!(expired.meta()["resume_token"], "the request's");
    assert!(start(&feed, ChangeFilter::default(), WatchFrom::After(3)).is_ok());
    let Err(ahead) = start(&feed, ChangeFilter::default(), WatchFrom::After(6)) else {
        panic!("a token ahead of the feed")
    };
    assert!(matches!(ahead, PoolError::InvalidArgument { field, .. } if field == "resume_token"));
}

#[tokio::test]
async fn a_client_that_falls_behind_the_feed_gets_out_of_range_with_its_token() {
    let feed = Feed::new();
    feed.push_many(1000);
    let mut w = watch_all(&feed, WatchFrom::Oldest);
    w.response().await;
    // The task has read two pages and waits for room; then the feed drops what it has not read.
    tokio::time::sleep(Duration::from_millis(100)).await;
    feed.prune_through(900);
    let mut last = String::new();
    let status = loop {
        match w.next().await.expect("the stream ends with a status") {
            Ok(r) => last = r.resume_token,
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::OutOfRange);
    assert_eq!(meta(&status, "resume_token"), last);
    assert!(w.next().await.is_none());
}

#[tokio::test]
async fn shutdown_ends_the_stream_with_unavailable_and_the_resume_token() {
    let feed = Feed::new();
    let mut w = watch_all(&feed, WatchFrom::Now);
    w.response().await;
    feed.push_many(1);
    assert_eq!(seqs(&w.response().await), [1]);
    w.end.cancel();
    let status = w.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(meta(&status, "resume_token"), resume::token(1));
    assert!(w.next().await.is_none());
    w.tasks.close();
    tokio::time::timeout(WAIT, w.tasks.wait()).await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_a_stream_whose_client_does_not_read() {
    let feed = Feed::new();
    feed.push_many(2000);
    let w = watch_all(&feed, WatchFrom::Oldest);
    tokio::time::sleep(Duration::from_millis(50)).await;
    w.end.cancel();
    w.tasks.close();
    tokio::time::timeout(WAIT, w.tasks.wait()).await.unwrap();
}

#[tokio::test]
async fn a_client_that_hangs_up_ends_its_task() {
    let feed = Feed::new();
    let w = watch_all(&feed, WatchFrom::Now);
    let Watching { stream, tasks, .. } = w;
    drop(stream);
    tasks.close();
    tokio::time::timeout(WAIT, tasks.wait()).await.unwrap();
}

/// The WatchService of [`follow`] over a test feed, served for real: what a client reads over
/// the wire, the status after the last response included.
struct Served {
    feed: Arc<Feed>,
    end: CancellationToken,
    tasks: TaskTracker,
}

#[tonic::async_trait]
impl WatchService for Served {
    type WatchStream = ChangeStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let start = WatchStart::try_from(req.into_inner())?;
        let stream = follow(Arc::clone(&self.feed), start, self.end.clone(), &self.tasks)?;
        Ok(Response::new(stream))
    }
}

#[tokio::test]
async fn over_the_wire_a_client_reads_the_responses_then_the_status_with_its_details() {
    use pb::watch_service_client::WatchServiceClient;
    use pb::watch_service_server::WatchServiceServer;

    let feed = Feed::new();
    feed.push_many(3);
    let end = CancellationToken::new();
    let tasks = TaskTracker::new();
    let service = Served {
        feed: Arc::clone(&feed),
        end: end.clone(),
        tasks: tasks.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WatchServiceServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let mut client = WatchServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut stream = client
        .watch(pb::WatchRequest {
            resume_token: resume::token(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let read = async |s: &mut tonic::Streaming<pb::WatchResponse>| {
        tokio::time::timeout(WAIT, s.message()).await.unwrap()
    };
    let head = read(&mut stream).await.unwrap().unwrap();
    assert_eq!(head.resume_token, resume::token(1));
    let r = read(&mut stream).await.unwrap().unwrap();
    assert_eq!(seqs(&r), [2, 3]);

    let refused = client
        .watch(pb::WatchRequest {
            resume_token: "junk".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    end.cancel();
    let status = read(&mut stream).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(meta(&status, "resume_token"), resume::token(3));
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "SHUTTING_DOWN");
    assert!(details.retry_info().is_some());
    assert!(read(&mut stream).await.unwrap().is_none());
    tasks.close();
    tokio::time::timeout(WAIT, tasks.wait()).await.unwrap();
    stop.cancel();
    drop(client);
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
