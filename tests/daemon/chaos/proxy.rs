//! A platform that hangs the way a real one does: a TCP proxy between the daemon and the
//! simulator that, while it hangs, holds what the daemon sends for a while and then delivers it
//! even if the daemon has given up and closed the connection. The simulator's own `latency_ms`
//! cannot show this: it stops working on a request whose caller has gone, so a hung request
//! there never lands late.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long the proxy keeps a connection to the simulator open after the daemon has gone, for
/// the answer to requests it delivered late.
const LINGER: Duration = Duration::from_secs(5);

/// The proxy; it stops accepting when dropped (connections already open finish on their own).
#[derive(Debug)]
pub struct HangProxy {
    /// `http://127.0.0.1:PORT`, for the daemon's `base_url`.
    pub url: String,
    /// How late each byte the daemon sends is delivered, ms (0: at once).
    delay_ms: Arc<AtomicU64>,
    /// How late each byte the simulator answers is passed on, ms (0: at once).
    answer_delay_ms: Arc<AtomicU64>,
    /// The accept loop; aborted on drop.
    accepting: JoinHandle<()>,
}

impl Drop for HangProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl HangProxy {
    /// A proxy on 127.0.0.1:0 to the simulator at `upstream` (its `base_url`).
    pub async fn start(upstream: &str) -> HangProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("the simulator listens on an IP address");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let delay_ms = Arc::new(AtomicU64::new(0));
        let answer_delay_ms = Arc::new(AtomicU64::new(0));
        let delays = Delays {
            requests: Arc::clone(&delay_ms),
            answers: Arc::clone(&answer_delay_ms),
        };
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, delays.clone()));
            }
        });
        HangProxy {
            url,
            delay_ms,
            answer_delay_ms,
            accepting,
        }
    }

    /// From now on, what the daemon sends is delivered `ms` late (0: at once).
    pub fn hang(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// From now on, what the simulator answers reaches the daemon `ms` late (0: at once): the
    /// platform has carried a request out, and its answer is still on the way.
    pub fn answer_late(&self, ms: u64) {
        self.answer_delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// The delays in force, shared with every connection.
#[derive(Debug, Clone)]
struct Delays {
    requests: Arc<AtomicU64>,
    answers: Arc<AtomicU64>,
}

/// One daemon connection: its bytes go to the simulator each at its due time (received + the
/// delay then), in order, even after the daemon closed; the simulator's answers go back while
/// the daemon listens (each as late as the answer delay then), and are dropped after.
async fn relay(client: TcpStream, upstream: SocketAddr, delays: Delays) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let delay = delays.requests;
    let reading = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
            let due = Instant::now() + Duration::from_millis(delay.load(Ordering::SeqCst));
            if due_tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    let delivering = tokio::spawn(async move {
        while let Some((due, bytes)) = due_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if server_tx.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // The daemon has closed: keep the simulator's side open (a half-close could make it
        // drop the request) until the answers have come back or the linger is over.
        tokio::time::sleep(LINGER).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut listening = true;
    let mut reading = reading;
    let mut gone = false;
    loop {
        tokio::select! {
            read = server_rx.read(&mut buf) => {
                let Ok(n @ 1..) = read else { break };
                let late = delays.answers.load(Ordering::SeqCst);
                if late > 0 {
                    tokio::time::sleep(Duration::from_millis(late)).await;
                }
                if listening && client_tx.write_all(&buf[..n]).await.is_err() {
                    listening = false;
                }
            }
            _ = &mut reading, if !gone => gone = true,
            // After the daemon has gone, answers are awaited only for the linger.
            () = tokio::time::sleep(LINGER), if gone || !listening => break,
        }
    }
    reading.abort();
    delivering.abort();
}
