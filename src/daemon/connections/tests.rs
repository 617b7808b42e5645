//! The accept stream and connection deadlines on real sockets, with tokio's clock paused where
//! deadlines matter (it jumps ahead whenever every task waits).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::transport::server::Connected as _;

use super::*;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn limits(max_connections: usize, idle: Option<u64>) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: idle.map(Duration::from_secs),
        tcp_keepalive: Some(Duration::from_secs(60)),
    }
}

/// A listener whose accepted connections arrive on the returned channel.
async fn listen(limits: ConnectionLimits) -> (String, Arc<ConnectionStats>, mpsc::Receiver<Conn>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stats = Arc::new(ConnectionStats::default());
    let mut accept = Accept::new(listener, limits, Arc::clone(&stats));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(conn) = accept.next().await {
            if tx.send(conn.unwrap()).await.is_err() {
                break;
            }
        }
    });
    (addr, stats, rx)
}

/// Reads until the connection ends (failing the test after an hour, real or paused); the
/// bytes read.
async fn read_to_end(conn: &mut (impl AsyncReadExt + Unpin)) -> usize {
    let mut buf = [0u8; 64];
    let mut total = 0;
    let until_closed = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3600), until_closed)
        .await
        .expect("the connection was not closed")
}

#[tokio::test(start_paused = true)]
async fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
    let (addr, stats, mut accepted) = listen(limits(2, None)).await;
    let _a = TcpStream::connect(&addr).await.unwrap();
    let _b = TcpStream::connect(&addr).await.unwrap();
    let first = accepted.recv().await.unwrap();
    let _second = accepted.recv().await.unwrap();
    assert_eq!(stats.open(), 2);

    let mut excess = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(read_to_end(&mut excess).await, 0, "closed without a byte");
    assert_eq!((stats.refused_total(), stats.accepted_total()), (1, 2));
    assert_eq!(stats.open(), 2);

    // A closed connection frees its slot for the next caller.
    drop(first);
    assert_eq!(stats.open(), 1);
    let mut next = TcpStream::connect(&addr).await.unwrap();
    let mut conn = accepted.recv().await.unwrap();
    next.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(
        (stats.open(), stats.accepted_total(), stats.refused_total()),
        (2, 3, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_or_slow_peer_is_closed_at_the_handshake_deadline() {
    let (addr, stats, mut accepted) = listen(limits(8, None)).await;
    let _silent = TcpStream::connect(&addr).await.unwrap();
    let mut conn = accepted.recv().await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(read_to_end(&mut conn).await, 0);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "not before the deadline"
    );
    assert_eq!(stats.handshake_timeouts_total(), 1);

    // One byte a second: the preface is not complete after five.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let mut conn = accepted.recv().await.unwrap();
    tokio::spawn(async move {
        for byte in PREFACE {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    });
    let read = read_to_end(&mut conn).await;
    assert!(read < PREFACE.len(), "read {read} bytes");
    assert_eq!(stats.handshake_timeouts_total(), 2);
}

/// Without `TCP_NODELAY`, an answer written while an earlier one is still unacknowledged waits
/// for the peer's delayed ACK (40 ms on Linux): the classic Nagle stall of a request/response
/// protocol. Every accepted socket must have it set.
#[tokio::test]
async fn accepted_connections_have_nodelay_set() {
    let (addr, _stats, mut accepted) = listen(limits(8, None)).await;
    let _peer = TcpStream::connect(&addr).await.unwrap();
    let conn = accepted.recv().await.unwrap();
    assert!(
        conn.nodelay().unwrap(),
        "TCP_NODELAY is off on an accepted socket"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_sent_the_preface_stays_without_an_idle_timeout() {
    let (addr, stats, mut accepted) = listen(limits(8, None)).await;
    let mut peer = TcpStream::connect(&addr).await.unwrap();
    peer.write_all(PREFACE).await.unwrap();
    let mut conn = accepted.recv().await.unwrap();
    let mut buf = [0u8; 24];
    conn.read_exact(&mut buf).await.unwrap();
    let day = Duration::from_secs(24 * 3600);
    assert!(
        tokio::time::timeout(day, conn.read(&mut buf))
            .await
            .is_err(),
        "still open a day later"
    );
    assert_eq!(stats.handshake_timeouts_total(), 0);
    assert_eq!(stats.idle_closed_total(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_closes_but_never_with_a_call_in_flight() {
    let (addr, stats, mut accepted) = listen(limits(8, Some(10))).await;
    let mut peer = TcpStream::connect(&addr).await.unwrap();
    peer.write_all(PREFACE).await.unwrap();
    let mut conn = accepted.recv().await.unwrap();
    let mut buf = [0u8; 24];
    conn.read_exact(&mut buf).await.unwrap();

    let call = conn.connect_info().activity.begin();
    let minute = Duration::from_secs(60);
    assert!(
        tokio::time::timeout(minute, conn.read(&mut buf))
            .await
            .is_err(),
        "open while a call runs"
    );
    drop(call);
    let ended = tokio::time::Instant::now();
    assert_eq!(read_to_end(&mut conn).await, 0);
    assert!(
        ended.elapsed() >= Duration::from_secs(10),
        "a full idle period after the call"
    );
    assert_eq!(stats.idle_closed_total(), 1);
    assert_eq!(stats.handshake_timeouts_total(), 0);
    drop(conn);
    assert_eq!(stats.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_idle_deadline_starts_with_the_preface_not_the_handshake_deadline() {
    let (addr, stats, mut accepted) = listen(limits(8, Some(2))).await;
    let mut peer = TcpStream::connect(&addr).await.unwrap();
    peer.write_all(PREFACE).await.unwrap();
    let mut conn = accepted.recv().await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(read_to_end(&mut conn).await, PREFACE.len());
    let idle_for = started.elapsed();
    assert!(
        idle_for >= Duration::from_secs(2) && idle_for < Duration::from_secs(5),
        "closed after {idle_for:?}: the idle timeout (2 s), not the handshake one (5 s)"
    );
    assert_eq!(stats.idle_closed_total(), 1);
}

#[test]
fn the_cap_leaves_descriptors_for_the_store_and_the_platform() {
    let configured = limits(1000, None);
    assert_eq!(
        configured.clone().within_fd_limit(None).max_connections,
        1000
    );
    assert_eq!(
        configured
            .clone()
            .within_fd_limit(Some(65536))
            .max_connections,
        1000
    );
    assert_eq!(
        configured
            .clone()
            .within_fd_limit(Some(1024))
            .max_connections,
        768
    );
    assert_eq!(configured.within_fd_limit(Some(300)).max_connections, 150);
}
