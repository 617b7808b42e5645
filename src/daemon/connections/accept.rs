//! The accept loop as the stream tonic serves: every accepted socket gets nodelay, TCP
//! keepalive and a slot under the cap, or is closed at once when none is free. A failed accept
//! (out of file descriptors, most likely) is logged and retried after a pause instead of in a
//! busy loop.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;

use super::conn::Conn;
use super::{ConnectionLimits, ConnectionStats};

/// At most one log line per kind of trouble this often; the lines say how many were left out.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long accepting pauses after an error that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listener's connections as a stream of [`Conn`]; it ends only when dropped.
#[derive(Debug)]
pub struct Accept {
    incoming: TcpIncoming,
    /// One permit per open connection; a [`Conn`] holds its permit until it is dropped.
    permits: Arc<Semaphore>,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    /// Set while accepting pauses after an error.
    backoff: Option<Pin<Box<Sleep>>>,
    refusals: Throttle,
    errors: Throttle,
}

impl Accept {
    pub fn new(
        listener: TcpListener,
        limits: ConnectionLimits,
        stats: Arc<ConnectionStats>,
    ) -> Accept {
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(limits.tcp_keepalive);
        Accept {
            incoming,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            stats,
            backoff: None,
            refusals: Throttle::default(),
            errors: Throttle::default(),
        }
    }

    fn refuse(&mut self) {
        ConnectionStats::count(&self.stats.refused);
        if let Some(left_out) = self.refusals.admit() {
            tracing::warn!(
                max_connections = self.limits.max_connections,
                refused_total = self.stats.refused_total(),
                left_out,
                "connection limit reached: new connections are closed at once \
                 (server.max_connections)"
            );
        }
    }

    fn failed(&mut self, error: &io::Error) {
        ConnectionStats::count(&self.stats.accept_errors);
        if let Some(left_out) = self.errors.admit() {
            tracing::warn!(
                %error,
                open = self.stats.open(),
                left_out,
                "accepting a connection failed; if it says too many open files, raise the \
                 open-file limit (LimitNOFILE) or lower server.max_connections"
            );
        }
    }
}

impl Stream for Accept {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(pause) = &mut this.backoff {
                ready!(pause.as_mut().poll(cx));
                this.backoff = None;
            }
            let stream = match ready!(Pin::new(&mut this.incoming).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    this.failed(&e);
                    if !is_per_connection(&e) {
                        this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    }
                    continue;
                }
            };
            match Arc::clone(&this.permits).try_acquire_owned() {
                Ok(permit) => {
                    ConnectionStats::count(&this.stats.accepted);
                    let conn = Conn::new(stream, permit, &this.limits, Arc::clone(&this.stats));
                    return Poll::Ready(Some(Ok(conn)));
                }
                Err(_) => {
                    // Dropping the socket closes it: the caller sees the connection end at once
                    // instead of waiting in the kernel's backlog.
                    drop(stream);
                    this.refuse();
                }
            }
        }
    }
}

/// Errors about one connection (it was reset before it was accepted): accept the next at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Lets one event through per [`LOG_EVERY`], counting the others.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    left_out: u64,
}

impl Throttle {
    /// `Some(events left out since the last one let through)` when this one may be logged.
    fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            self.left_out += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.left_out))
    }
}

/// The process's soft limit on open files, from `/proc/self/limits` (Linux); `None` where that
/// cannot be read or says "unlimited".
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&text)
}

fn parse_open_file_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63432                63432                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit(""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_lets_one_event_through_per_period_and_counts_the_rest() {
        let mut t = Throttle::default();
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(t.admit(), Some(2));
        assert_eq!(t.admit(), None);
    }
}
