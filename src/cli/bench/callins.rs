//! Scenario 8: X-mode callins through the push receiver while Binds run. The platform asks the
//! customer's server whom to connect on every call to an X-mode number (a Block `callin`) and a
//! caller waits for the answer, so the answer's latency is what matters.
//!
//! Before the measured window the run binds `--callin-targets` X-mode pairs through gRPC; then,
//! from the start of the warm-up to the end of the window, it POSTs Block callins from those
//! parties to their X at `--callins` per second on a fixed schedule (latency counted from each
//! callin's scheduled time), over a few keep-alive HTTP connections, and checks every answer
//! connects the other party.

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

/// HTTP connections the callins are spread over (each sends on its own schedule).
const SENDERS: usize = 8;

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
    /// Scheduled time to answer, of the callins in the measured window.
    pub latency_ms: Latency,
}

impl CallinReport {
    pub fn text(&self) -> String {
        let l = &self.latency_ms;
        format!(
            "callins: {:.0}/s offered; {} connected, {} wrong, {} errors; answer latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}\n",
            self.offered_per_s,
            self.connected,
            self.wrong,
            self.errors,
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
        .timeout(Duration::from_secs(5))
        .build()?;
    let every = Duration::from_secs_f64(SENDERS as f64 / args.callins);
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (http, url, targets) = (http.clone(), url.to_owned(), Arc::clone(&targets));
        let first = start + every.mul_f64(sender as f64 / SENDERS as f64);
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let (mut connected, mut wrong, mut errors) = (0u64, 0u64, 0u64);
            let mut n = sender;
            let mut at = first;
            while at < window_end {
                tokio::time::sleep_until(at.into()).await;
                let t = &targets[n % targets.len()];
                let body = json!({
                    "eventType": "callin",
                    "statusInfo": {
                        "timestamp": "2026-12-02 00:00:00",
                        "sessionId": format!("bench-{sender}-{n}"),
                        "caller": t.a,
                        "called": t.x,
                        "notifyMode": "Block",
                    }
                });
                let answer = http.post(&url).json(&body).send().await;
                let measured = at >= window_start;
                let outcome = match answer {
                    Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                    _ => None,
                };
                if measured {
                    let us = at.elapsed().as_micros().max(1) as u64;
                    let _ = h.record(us);
                    match outcome {
                        None => errors += 1,
                        Some(v)
                            if v["operation"] == "connect"
                                && v["connectInfo"]["calleeNum"] == t.b.as_str() =>
                        {
                            connected += 1
                        }
                        Some(_) => wrong += 1,
                    }
                }
                n += SENDERS;
                at += every;
            }
            (h, connected, wrong, errors)
        }));
    }
    let mut all: Histogram<u64> = histogram();
    let mut report = CallinReport {
        offered_per_s: args.callins,
        ..CallinReport::default()
    };
    for task in tasks {
        let (h, connected, wrong, errors) = task.await?;
        all.add(&h).ok();
        report.connected += connected;
        report.wrong += wrong;
        report.errors += errors;
    }
    report.latency_ms = Latency::of(&all);
    Ok(report)
}
