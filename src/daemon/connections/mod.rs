//! The gRPC listener's connections: how many may be open at once, how long one may take to
//! start speaking HTTP/2 or stay without a call, TCP keepalive, and the counts a metrics
//! endpoint exports.
//!
//! - `accept`: the accept loop as a stream for tonic, refusing connections beyond the cap and
//!   backing off when accepting fails (e.g. out of file descriptors), logging both rate-limited.
//! - `conn`: one accepted connection, closed when its handshake or idle deadline passes.
//! - `tls`: TLS on top of the accepted connections, handshakes off the accept loop.
//! - `calls`: the tower layer that tells a connection when it has calls in flight.
//!
//! HTTP/2 keepalive pings (tonic's `http2_keepalive_*`) find peers that stopped answering once
//! the connection is up; the deadlines here cover what pings cannot: a peer that never completes
//! the HTTP/2 preface, and a live peer that holds a connection without using it.

mod accept;
mod calls;
mod conn;
mod tls;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub use accept::{Accept, open_file_limit};
pub use calls::TrackCalls;
pub use conn::{Conn, ConnInfo};
pub use tls::{TlsConn, tls_incoming};

use crate::config::ServerConfig;

/// File descriptors kept free of client connections for the store, its log and the platform
/// clients when the cap is derived from the open-file limit.
pub const FD_RESERVE: u64 = 256;

/// What the listener enforces, from `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; further ones are closed at once.
    pub max_connections: usize,
    /// From accept until the peer has sent the HTTP/2 client preface.
    pub handshake_timeout: Duration,
    /// How long a connection may stay without a call in flight; `None`: for ever.
    pub idle_timeout: Option<Duration>,
    /// Idle time before TCP keepalive probes; `None`: no probes.
    pub tcp_keepalive: Option<Duration>,
}

impl ConnectionLimits {
    pub fn from_config(server: &ServerConfig) -> Self {
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        ConnectionLimits {
            max_connections: server.max_connections,
            handshake_timeout: Duration::from_secs(server.handshake_timeout_seconds),
            idle_timeout: seconds(server.idle_timeout_seconds),
            tcp_keepalive: seconds(server.tcp_keepalive_seconds),
        }
    }

    /// These limits with the cap lowered, if needed, so that [`FD_RESERVE`] descriptors stay
    /// free below the process's open-file limit `fd_limit` (when known). Logs when it lowers.
    pub fn within_fd_limit(mut self, fd_limit: Option<u64>) -> Self {
        let Some(limit) = fd_limit else { return self };
        let room = limit.saturating_sub(FD_RESERVE).max(limit / 2).max(1);
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        if room < self.max_connections {
            tracing::warn!(
                fd_limit = limit,
                configured = self.max_connections,
                max_connections = room,
                "the open-file limit leaves room for fewer connections than \
                 server.max_connections; using the lower cap (raise LimitNOFILE / ulimit -n)"
            );
            self.max_connections = room;
        }
        self
    }
}

/// Counts of the gRPC listener's connections since start. Shared (`Arc`) by the accept loop,
/// every connection, and whoever reports them; each getter is one atomic read.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
    handshake_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    tls_failures: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted and served.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed at once because `server.max_connections` were open.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Failed accepts (e.g. out of file descriptors).
    pub fn accept_errors_total(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Connections closed for not sending the HTTP/2 preface in time.
    pub fn handshake_timeouts_total(&self) -> u64 {
        self.handshake_timeouts.load(Ordering::Relaxed)
    }

    /// Connections closed after `server.idle_timeout_seconds` without a call.
    pub fn idle_closed_total(&self) -> u64 {
        self.idle_closed.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed or timed out (no certificate, an unknown CA, not TLS).
    pub fn tls_failures_total(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counts as Prometheus metrics, read at each scrape.
impl prometheus_client::collector::Collector for ConnectionStats {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let open = ConstGauge::new(i64::try_from(self.open()).unwrap_or(i64::MAX));
        open.encode(encoder.encode_descriptor(
            "grpc_connections_open",
            "gRPC connections open now",
            None,
            open.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "grpc_connections_accepted",
                "gRPC connections accepted",
                self.accepted_total(),
            ),
            (
                "grpc_connections_refused",
                "gRPC connections closed at once because server.max_connections were open",
                self.refused_total(),
            ),
            (
                "grpc_accept_errors",
                "Failed accepts of gRPC connections (e.g. out of file descriptors)",
                self.accept_errors_total(),
            ),
            (
                "grpc_connections_handshake_timeouts",
                "gRPC connections closed for not sending the HTTP/2 preface in time",
                self.handshake_timeouts_total(),
            ),
            (
                "grpc_tls_handshake_failures",
                "gRPC connections whose TLS handshake failed or timed out",
                self.tls_failures_total(),
            ),
            (
                "grpc_connections_idle_closed",
                "gRPC connections closed after server.idle_timeout_seconds without a call",
                self.idle_closed_total(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
