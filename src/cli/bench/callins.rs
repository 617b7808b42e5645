//! Scenario 8: X-mode callins through the push receiver while Binds run. The platform asks the
//! customer's server whom to connect on every call to an X-mode number (a Block `callin`) and a
//! caller waits for the answer, so the answer's latency is what matters.
//!
//! Before the measured window the run binds `--callin-targets` X-mode pairs through gRPC; then,
//! from the start of the warm-up to the end of the window, it POSTs Block callins from those
//! parties to their X at `--callins` per second on a fixed schedule (latency counted from each
//! callin's scheduled time), open loop over a bounded set of keep-alive connections, and
//! checks every answer connects the other party.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

use super::BenchArgs;
use super::load::histogram;
use super::report::Latency;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

/// An X-mode binding the callins dial: a calls X, and should be connected to b.
#[derive(Debug, Clone)]
pub struct Target {
    x: String,
    a: String,
    b: String,
}

/// What the callins got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallinReport {
    pub offered_per_s: f64,
    /// Answered in the measured window with `connect` to the bound party.
    pub connected: u64,
    /// Answers that closed the call or connected someone else.
    pub wrong: u64,
    /// Non-200 answers and transport errors.
    pub errors: u64,
    /// Callins of the window queued more than 1 ms after their scheduled time (the bench
    /// itself was late: its latency includes that).
    pub late: u64,
    /// Scheduled time to answer, of the callins in the measured window.
    pub latency_ms: Latency,
}

impl CallinReport {
    pub fn text(&self) -> String {
        let l = &self.latency_ms;
        format!(
            "callins: {:.0}/s offered; {} connected, {} wrong, {} errors; {} queued > 1 ms late; answer latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}\n",
            self.offered_per_s,
            self.connected,
            self.wrong,
            self.errors,
            self.late,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        )
    }
}

/// Binds the X-mode pairs the callins will dial.
pub async fn prepare(args: &BenchArgs, server_url: &str) -> anyhow::Result<Vec<Target>> {
    let mut client = BindingServiceClient::connect(server_url.to_owned())
        .await
        .context("connecting to the daemon for the callin targets")?;
    let mut targets = Vec::with_capacity(args.callin_targets);
    for i in 0..args.callin_targets {
        let (a, b) = (format!("+86137{i:08}"), format!("+86136{i:08}"));
        let req = pb::BindRequest {
            app: args.app.clone(),
            party_a: a.clone(),
            party_b: b.clone(),
            any_area: true,
            ..Default::default()
        };
        let binding = client
            .bind(req)
            .await
            .with_context(|| format!("binding callin target {i}"))?
            .into_inner();
        targets.push(Target {
            x: binding.x_number,
            a,
            b,
        });
    }
    Ok(targets)
}

/// Sends the callins from `start` until `window_end`, counting those scheduled at or after
/// `window_start`.
///
/// Open loop: a scheduler puts each callin on a queue at its scheduled time, and whichever of
/// [`SENDERS`] senders is free takes the next (each sender holds one keep-alive connection at a
/// time). A slow answer holds up one sender, not the callins behind it; a backlog only forms
/// when all of them are busy, and its wait is counted, since latency runs from the scheduled
/// time. The bound keeps a slow daemon from being met with thousands of new connections.
pub async fn run(
    args: &BenchArgs,
    url: &str,
    targets: Arc<Vec<Target>>,
    start: Instant,
    window_start: Instant,
    window_end: Instant,
) -> anyhow::Result<CallinReport> {
    if targets.is_empty() {
        bail!("--callins needs --callin-targets of at least 1");
    }
    // With `rustls-no-provider`, rustls needs a process-wide provider; installing twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .build()?;
    let (queue, due) = tokio::sync::mpsc::unbounded_channel::<Due>();
    let due = Arc::new(tokio::sync::Mutex::new(due));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (http, url, targets, due) = (
                http.clone(),
                url.to_owned(),
                Arc::clone(&targets),
                Arc::clone(&due),
            );
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let Some(next) = due.lock().await.recv().await else {
                        break;
                    };
                    let target = &targets[next.n % targets.len()];
                    let answer = callin(&http, &url, target, next.n).await;
                    if next.measured {
                        tally.add(next.at.elapsed(), answer);
                    }
                }
                tally
            })
        })
        .collect();
    let every = Duration::from_secs_f64(1.0 / args.callins);
    let mut late = 0;
    let mut at = start;
    for n in 0usize.. {
        if at >= window_end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let measured = at >= window_start;
        if measured && at.elapsed() > Duration::from_millis(1) {
            late += 1;
        }
        queue.send(Due { at, n, measured })?;
        at += every;
    }
    drop(queue);
    let mut all = Tally::default();
    for sender in senders {
        all.merge(&sender.await?);
    }
    Ok(CallinReport {
        offered_per_s: args.callins,
        connected: all.connected,
        wrong: all.wrong,
        errors: all.errors,
        late,
        latency_ms: Latency::of(&all.latency),
    })
}

/// Callins answered at once at most, each on its own keep-alive connection.
const SENDERS: usize = 64;

/// A callin whose time has come.
struct Due {
    /// When it was scheduled: its latency runs from here.
    at: Instant,
    n: usize,
    /// Scheduled in the measured window.
    measured: bool,
}

/// One sender's count of the measured callins.
struct Tally {
    latency: Histogram<u64>,
    connected: u64,
    wrong: u64,
    errors: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: histogram(),
            connected: 0,
            wrong: 0,
            errors: 0,
        }
    }
}

impl Tally {
    fn add(&mut self, latency: Duration, answer: Answer) {
        let _ = self.latency.record(latency.as_micros().max(1) as u64);
        match answer {
            Answer::Connected => self.connected += 1,
            Answer::Wrong => self.wrong += 1,
            Answer::Failed => self.errors += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.latency.add(&other.latency);
        self.connected += other.connected;
        self.wrong += other.wrong;
        self.errors += other.errors;
    }
}

/// What one callin's answer was.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Connected,
    Wrong,
    Failed,
}

/// POSTs callin number `n` from `target`'s party A to its X and reads the answer.
async fn callin(http: &reqwest::Client, url: &str, target: &Target, n: usize) -> Answer {
    let body = json!({
        "eventType": "callin",
        "statusInfo": {
            "timestamp": "2026-12-02 00:00:00",
            "sessionId": format!("bench-{}-{n}", std::process::id()),
            "caller": target.a,
            "called": target.x,
            "notifyMode": "Block",
        }
    });
    let answer = match http.post(url).json(&body).send().await {
        Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
        _ => None,
    };
    match answer {
        None => Answer::Failed,
        Some(v)
            if v["operation"] == "connect"
                && v["connectInfo"]["calleeNum"] == target.b.as_str() =>
        {
            Answer::Connected
        }
        Some(_) => Answer::Wrong,
    }
}
