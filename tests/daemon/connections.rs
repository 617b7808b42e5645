//! The gRPC listener under idle, half-open and slow connections: the cap refuses excess ones
//! at once and a caller gets in when slots free up; a peer that never completes the HTTP/2
//! preface, trickles it, or stops answering pings is dropped; an idle connection is closed, but
//! never under a running call; a live client keeps its connection.
//!
//! Every limit is set in the test's config (small caps, one-second timeouts), so nothing here
//! depends on the host's open-file limit.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use crate::support::*;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
const PING: u8 = 6;

/// The rides app alone, with `server` keys set.
fn setup(server: &[(&str, i64)]) -> Setup {
    let mut s = Setup::standard().only(&["rides"]);
    for (key, value) in server {
        s = s.server(key, *value);
    }
    s
}

fn host(d: &Daemon) -> &str {
    d.addr.trim_start_matches("http://")
}

/// Waits (at most [`PHASE`]) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Reads until the server closes the connection (at most [`PHASE`]); the bytes received.
async fn until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    within("the server closing the connection", async {
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// True while the connection stays open for `wait`.
async fn stays_open(conn: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_err()
}

/// The frame types in a server's HTTP/2 byte stream.
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_a_caller_gets_in_when_slots_free() {
    let d = Daemon::start_with(setup(&[
        ("max_connections", 4),
        ("handshake_timeout_seconds", 300),
    ]))
    .await;
    let stats = d.connections.clone();
    until("the start-up probes' connections to close", || {
        stats.open() == 0
    })
    .await;

    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(TcpStream::connect(host(&d)).await.unwrap());
    }
    until("the excess connections to be refused", || {
        stats.refused_total() == 8
    })
    .await;
    assert_eq!(stats.open(), 4);
    let mut refused = 0;
    for conn in &mut idle {
        if !stays_open(conn, Duration::from_millis(200)).await {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 8,
        "the connections beyond the cap were closed at once"
    );

    // A real client is refused too while the idle ones hold every slot...
    let blocked = BindingServiceClient::connect(d.addr.clone()).await;
    if let Ok(mut c) = blocked {
        let err = c.bind(bind("rides", &party(1), Some(&party(2)))).await;
        assert!(err.is_err(), "a call got through past the cap: {err:?}");
    }
    assert!(stats.refused_total() > 8);

    // ...and gets in once they go.
    drop(idle);
    until("the idle connections to close", || stats.open() == 0).await;
    d.bind_ok(bind("rides", &party(1), Some(&party(2)))).await;
    d.stop().await;
}

#[tokio::test]
async fn silent_slow_and_unresponsive_peers_are_dropped_and_a_live_client_stays() {
    let d = Daemon::start_with(setup(&[
        ("handshake_timeout_seconds", 1),
        ("idle_timeout_seconds", 0),
        ("http2_keepalive_interval_seconds", 1),
        ("http2_keepalive_timeout_seconds", 1),
    ]))
    .await;
    let stats = d.connections.clone();

    // Connected, then nothing: the server's SETTINGS, then the close.
    let mut silent = TcpStream::connect(host(&d)).await.unwrap();
    let received = until_closed(&mut silent).await;
    assert!(
        !frame_types(&received).contains(&PING),
        "closed by the handshake deadline"
    );
    assert_eq!(stats.handshake_timeouts_total(), 1);

    // The preface at one byte every 300 ms: not done when the handshake deadline passes.
    let mut slow = TcpStream::connect(host(&d)).await.unwrap();
    let mut sent = 0;
    within("the slow peer being cut off", async {
        for byte in PREFACE {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if !stays_open(&mut slow, Duration::from_millis(1)).await {
                break;
            }
        }
    })
    .await;
    assert!(sent < PREFACE.len(), "the whole preface went through");
    assert!(stats.handshake_timeouts_total() >= 2);

    // A peer that completes the handshake but never answers a ping (half-open, or stuck).
    let mut deaf = TcpStream::connect(host(&d)).await.unwrap();
    deaf.write_all(PREFACE).await.unwrap();
    deaf.write_all(&EMPTY_SETTINGS).await.unwrap();
    let received = until_closed(&mut deaf).await;
    assert!(
        frame_types(&received).contains(&PING),
        "closed by the keepalive: {:?}",
        frame_types(&received)
    );

    // A real client answers the pings and keeps its connection across several of them.
    let mut c = d.bindings().await;
    c.bind(bind("rides", &party(1), Some(&party(2))))
        .await
        .unwrap();
    let accepted = stats.accepted_total();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.bind(bind("rides", &party(3), Some(&party(4))))
        .await
        .unwrap();
    assert_eq!(stats.accepted_total(), accepted, "the same connection");
    assert_eq!(stats.idle_closed_total(), 0);
    d.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_never_under_a_running_call() {
    let slow_platform = setup(&[
        ("idle_timeout_seconds", 1),
        ("http2_keepalive_interval_seconds", 1),
        ("http2_keepalive_timeout_seconds", 1),
    ])
    .app("rides", |a| a.daemon("timeout_ms", 10_000));
    let d = Daemon::start_with(slow_platform).await;
    let stats = d.connections.clone();

    // A Bind the platform takes 2.5 s to answer outlives the idle timeout on its connection.
    d.sim
        .faults(serde_json::json!({"app_key": "k-axb", "latency_ms": 2500}))
        .await;
    let before = stats.accepted_total();
    let mut c = d.bindings().await;
    // The client is connected before the server has accepted: wait for that.
    until("the client's connection to be accepted", || {
        stats.accepted_total() == before + 1
    })
    .await;
    let accepted = stats.accepted_total();
    c.bind(bind("rides", &party(1), Some(&party(2))))
        .await
        .unwrap();
    assert_eq!(
        stats.accepted_total(),
        accepted,
        "one connection throughout"
    );
    assert_eq!(stats.idle_closed_total(), 0, "closed under a running call");
    d.sim
        .faults(serde_json::json!({"app_key": "k-axb", "latency_ms": 0}))
        .await;

    // Then idle: closed, and the client connects again for its next call.
    until("the idle connection to close", || {
        stats.idle_closed_total() == 1
    })
    .await;
    until("the idle connection to be gone", || stats.open() == 0).await;
    // Let the client notice the close before its next call.
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.bind(bind("rides", &party(3), Some(&party(4))))
        .await
        .unwrap();
    assert_eq!(stats.accepted_total(), accepted + 1);
    d.stop().await;
}
