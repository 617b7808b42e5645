//! One accepted connection. It reads as end-of-stream once a deadline passes — the handshake
//! deadline while the peer has not sent the HTTP/2 preface, then the idle deadline while it has
//! no call in flight — so the server drops it and the socket is closed. Dropping it frees its
//! slot under the cap.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{ConnectionLimits, ConnectionStats};

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0…`, RFC 9113 §3.4).
const PREFACE_LEN: u64 = 24;

/// An accepted TCP connection under the listener's deadlines.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    info: ConnInfo,
    /// The next moment to check the deadlines.
    deadline: Pin<Box<Sleep>>,
    handshake_by: Option<Instant>,
    idle_timeout: Option<Duration>,
    /// Bytes read from the peer so far (up to the preface length).
    read: u64,
    /// Set once a deadline passed: every read from now on is end-of-stream.
    closed: bool,
    stats: Arc<ConnectionStats>,
    /// This connection's slot under `server.max_connections`, freed on drop.
    _permit: OwnedSemaphorePermit,
}

/// What the server knows about a connection, in every request's extensions: the addresses,
/// and the count of calls in flight that [`super::TrackCalls`] keeps.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub tcp: TcpConnectInfo,
    /// With mutual TLS: the names the client's verified certificate carries (see
    /// [`crate::tls::client_names`]).
    pub client: Option<Arc<Vec<String>>>,
    pub(super) activity: Arc<Activity>,
}

/// Calls in flight on one connection, and since when it has had none.
#[derive(Debug)]
pub(super) struct Activity {
    calls: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            calls: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    /// A call started; it ends when the guard is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::SeqCst);
        CallGuard(Arc::clone(self))
    }

    /// `None` while a call is in flight, else when the last one ended (or the connection began).
    fn idle_since(&self) -> Option<Instant> {
        let since = *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (self.calls.load(Ordering::SeqCst) == 0).then_some(since)
    }
}

/// Marks one call in flight on its connection.
#[derive(Debug)]
pub(super) struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut since = self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *since = Instant::now();
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    pub(super) fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        limits: &ConnectionLimits,
        stats: Arc<ConnectionStats>,
    ) -> Conn {
        stats.open.fetch_add(1, Ordering::Relaxed);
        let handshake_by = Instant::now() + limits.handshake_timeout;
        Conn {
            info: ConnInfo {
                tcp: stream.connect_info(),
                client: None,
                activity: Arc::new(Activity::new()),
            },
            stream,
            deadline: Box::pin(tokio::time::sleep_until(handshake_by)),
            handshake_by: Some(handshake_by),
            idle_timeout: limits.idle_timeout,
            read: 0,
            closed: false,
            stats,
            _permit: permit,
        }
    }

    /// Whether the socket sends small writes at once (`TCP_NODELAY`), for tests.
    #[cfg(test)]
    pub(super) fn nodelay(&self) -> io::Result<bool> {
        self.stream.nodelay()
    }

    /// The preface is in: from now on the idle deadline applies (checked on the next read).
    fn handshake_done(&mut self) {
        self.handshake_by = None;
        let next = match self.idle_timeout {
            Some(idle) => Instant::now() + idle,
            None => Instant::now(),
        };
        self.deadline.as_mut().reset(next);
    }

    /// True once the connection must close: polls the deadline, and on reaching it either
    /// closes or sets the next one.
    fn past_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        while !self.closed && self.deadline.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if self.handshake_by.take().is_some() && self.read < PREFACE_LEN {
                ConnectionStats::count(&self.stats.handshake_timeouts);
                tracing::debug!(peer = ?self.info.tcp.remote_addr(), "no HTTP/2 preface in time; closing");
                self.closed = true;
                break;
            }
            let Some(idle) = self.idle_timeout else {
                // Nothing left to watch: park the timer for good (a year is for ever here).
                let never = now + Duration::from_secs(365 * 24 * 3600);
                self.deadline.as_mut().reset(never);
                continue;
            };
            match self.info.activity.idle_since() {
                Some(since) if now >= since + idle => {
                    ConnectionStats::count(&self.stats.idle_closed);
                    tracing::debug!(peer = ?self.info.tcp.remote_addr(), "idle; closing");
                    self.closed = true;
                }
                Some(since) => self.deadline.as_mut().reset(since + idle),
                // A call in flight: look again one idle period later.
                None => self.deadline.as_mut().reset(now + idle),
            }
        }
        self.closed
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.past_deadline(cx) {
            // End of stream: the server ends the connection and drops it.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if polled.is_ready() && self.read < PREFACE_LEN {
            self.read += (buf.filled().len() - before) as u64;
            if self.read >= PREFACE_LEN {
                self.handshake_done();
            }
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
