//! TLS over the accepted connections. Each handshake runs in a task of its own, bounded by
//! `server.handshake_timeout_seconds`, so a slow or silent peer never holds up the accept
//! loop; connections whose handshake completes are handed to the server in order of
//! completion. A failed handshake (no client certificate under mutual TLS, one from another
//! CA, plain HTTP/2 on a TLS port) is counted and logged at warn level, once a minute per
//! peer address and kind with how many there were since (a scanner cannot flood the log);
//! the client sees the TLS alert.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::{Accept, Conn, ConnInfo, ConnectionStats};
use crate::auth::refusals::RefusalLog;
use crate::tls::{ServerTls, client_names};

/// Connections whose handshake is done but that the server has not taken yet.
const READY_QUEUE: usize = 64;

/// An accepted connection after its TLS handshake.
#[derive(Debug)]
pub struct TlsConn {
    stream: TlsStream<Conn>,
    info: ConnInfo,
}

/// The connections of `accept`, each after a TLS handshake with the configuration `tls`
/// holds at that moment. Ends when the server drops it.
pub fn tls_incoming(
    mut accept: Accept,
    tls: Arc<ServerTls>,
    handshake_timeout: Duration,
    stats: Arc<ConnectionStats>,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    let failures = Arc::new(RefusalLog::default());
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                conn = accept.next() => conn,
                () = tx.closed() => return,
            };
            let Some(Ok(conn)) = conn else { return };
            let (tx, tls, stats) = (tx.clone(), Arc::clone(&tls), Arc::clone(&stats));
            let failures = Arc::clone(&failures);
            tokio::spawn(async move {
                let peer = conn.connect_info().tcp.remote_addr();
                let acceptor = TlsAcceptor::from(tls.current());
                match tokio::time::timeout(handshake_timeout, acceptor.accept(conn)).await {
                    Ok(Ok(stream)) => {
                        let (conn, session) = stream.get_ref();
                        let mut info = conn.connect_info();
                        info.client = session
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|leaf| Arc::new(client_names(leaf)));
                        let _ = tx.send(Ok(TlsConn { stream, info })).await;
                    }
                    Ok(Err(error)) => {
                        ConnectionStats::count(&stats.tls_failures);
                        let ip = peer.map(|p| p.ip());
                        if let Some(count) = failures.note(ip, "failed", "", Instant::now()) {
                            tracing::warn!(
                                ?peer,
                                %error,
                                since_last = count,
                                "TLS handshake failed"
                            );
                        }
                    }
                    Err(_) => {
                        ConnectionStats::count(&stats.tls_failures);
                        let ip = peer.map(|p| p.ip());
                        if let Some(count) = failures.note(ip, "timed_out", "", Instant::now()) {
                            tracing::warn!(
                                ?peer,
                                since_last = count,
                                "no TLS handshake in time; closed"
                            );
                        }
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
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
