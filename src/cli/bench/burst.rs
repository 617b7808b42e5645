//! The expiry burst: preloaded bindings that share one deadline, a measured Bind load placed
//! across it, and a watch on how many of them are still live.
//!
//! The preloaded bindings are the only ones in the first area (010); the measured Binds go to
//! the other areas. So the number still live is the sum of the `bindings` of area 010's numbers
//! in `PoolService.ListNumbers`, an in-memory read in the daemon, cheap enough to poll every
//! 100 ms during the measurement.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tonic::transport::Channel;

use super::load::{BindSample, histogram};
use super::preload::{PreloadReport, now_ms};
use super::report::Latency;
use super::{BenchArgs, area_code};
use xpool::grpc::pb;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;

/// How often the live count is read.
const POLL: Duration = Duration::from_millis(100);
/// How long after the measured window the watch goes on waiting for the last binding to leave
/// (200k bindings at ~1000 expiries/s take minutes).
const WAIT_AFTER_WINDOW: Duration = Duration::from_secs(900);

/// When the load starts, as an `Instant` and as wall-clock Unix ms.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub start_ms: i64,
    pub first_deadline_ms: i64,
    pub last_deadline_ms: i64,
}

/// Places the load so its measured window starts `--before-deadline` seconds before the last
/// deadline the preload recorded; fails if that moment has already passed.
pub fn schedule(args: &BenchArgs, preload: &PreloadReport) -> anyhow::Result<Schedule> {
    let (Some(first), Some(last)) = (preload.first_deadline_ms, preload.last_deadline_ms) else {
        bail!("the preload recorded no deadline (did every Bind fail?)");
    };
    let lead_ms = ((args.before_deadline + args.warmup) * 1000.0) as i64;
    let start_ms = last - lead_ms;
    let wait_ms = start_ms - now_ms();
    if wait_ms < 0 {
        bail!(
            "the preload ended {} ms too late for {} s of warm-up and {} s before the deadline: \
             raise --preload-expire-in (it took {:.0} s)",
            -wait_ms,
            args.warmup,
            args.before_deadline,
            preload.seconds
        );
    }
    eprintln!(
        "expiry burst: waiting {:.1} s for the load to start, {} s before the last deadline",
        wait_ms as f64 / 1000.0,
        args.before_deadline
    );
    Ok(Schedule {
        start: Instant::now() + Duration::from_millis(wait_ms as u64),
        start_ms,
        first_deadline_ms: first,
        last_deadline_ms: last,
    })
}

/// What the watch saw.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Live preloaded bindings at the first read.
    pub initial: u64,
    /// Wall-clock ms of the first read with fewer live, and of the first with none.
    pub first_left_ms: Option<i64>,
    pub all_left_ms: Option<i64>,
    /// Live at the last read.
    pub remaining: u64,
    /// (ms after the last deadline, live) about once a second.
    pub timeline: Vec<(i64, u64)>,
    pub error: Option<String>,
}

/// Reads the live count from half a second before the first deadline until none is left, or
/// until `WAIT_AFTER_WINDOW` after `window_end`.
pub async fn watch(server_url: String, app: String, at: Schedule, window_end: Instant) -> Watch {
    let mut w = Watch::default();
    let mut client = match PoolServiceClient::connect(server_url.clone()).await {
        Ok(c) => c,
        Err(e) => {
            w.error = Some(format!("connecting to {server_url}: {e}"));
            return w;
        }
    };
    let from = at.first_deadline_ms - 500 - now_ms();
    if from > 0 {
        tokio::time::sleep(Duration::from_millis(from as u64)).await;
    }
    let give_up = window_end + WAIT_AFTER_WINDOW;
    let mut next_mark = i64::MIN;
    loop {
        let live = match live_in_first_area(&mut client, &app).await {
            Ok(n) => n,
            Err(e) => {
                w.error = Some(format!("{e:#}"));
                return w;
            }
        };
        let t = now_ms();
        if w.timeline.is_empty() {
            w.initial = live;
        }
        let after = t - at.last_deadline_ms;
        if after >= next_mark || live == 0 {
            w.timeline.push((after, live));
            next_mark = after + 1000;
        }
        w.remaining = live;
        if live < w.initial && w.first_left_ms.is_none() {
            w.first_left_ms = Some(t);
        }
        if live == 0 {
            w.all_left_ms = Some(t);
            return w;
        }
        if Instant::now() >= give_up {
            return w;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The bindings on area 010's numbers (all pages of ListNumbers).
async fn live_in_first_area(
    client: &mut PoolServiceClient<Channel>,
    app: &str,
) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut token = String::new();
    loop {
        let page = client
            .list_numbers(pb::ListNumbersRequest {
                app: app.to_owned(),
                area_code: area_code(0),
                page_size: 1000,
                page_token: token,
            })
            .await
            .context("PoolService.ListNumbers")?
            .into_inner();
        total += page
            .numbers
            .iter()
            .map(|n| u64::try_from(n.binding_count).unwrap_or(0))
            .sum::<u64>();
        if page.next_page_token.is_empty() {
            return Ok(total);
        }
        token = page.next_page_token;
    }
}

/// Binds sent in one window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowStats {
    /// The window, ms relative to the last deadline.
    pub from_ms: i64,
    pub to_ms: i64,
    pub ok: u64,
    pub errors: u64,
    /// Of successful Binds.
    pub latency_ms: Latency,
}

/// The expiry burst's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BurstReport {
    /// Preloaded bindings live when the watch started.
    pub bindings: u64,
    pub skew_grace_seconds: u64,
    pub first_deadline: String,
    pub last_deadline: String,
    /// The earliest and latest deadline, ms apart.
    pub deadline_spread_ms: i64,
    /// From the last deadline to the first read that found fewer live (may be negative: the
    /// earliest deadlines come up to a second before the last).
    pub first_left_after_ms: Option<i64>,
    /// From the last deadline to the first read that found none live: the target's number.
    pub all_left_after_ms: Option<i64>,
    /// Still live when the watch stopped.
    pub remaining: u64,
    /// (ms after the last deadline, live), about once a second.
    pub timeline: Vec<(i64, u64)>,
    /// Binds sent from the start of the measured window to the first deadline.
    pub before: WindowStats,
    /// Binds sent while the bindings were leaving (first to last read that saw them go).
    pub during: WindowStats,
    /// Binds sent from then to the end of the measured window (the defensive unbinds that
    /// waited for the burst run meanwhile).
    pub after: WindowStats,
    /// during.p99 / before.p99 (target ≤ 2).
    pub p99_ratio: Option<f64>,
    pub watch_error: Option<String>,
}

impl BurstReport {
    /// Splits the measured Binds into the window before the deadline and the burst.
    pub fn build(
        args: &BenchArgs,
        at: Schedule,
        samples: &[BindSample],
        watch: Watch,
    ) -> BurstReport {
        let last = at.last_deadline_ms;
        let window_start = at.start_ms + (args.warmup * 1000.0) as i64;
        let before = window(samples, at, window_start, at.first_deadline_ms);
        let window_end = window_start + (args.duration * 1000.0) as i64;
        // Still leaving when the load stopped: the burst is counted to the window's end.
        let during = match watch.first_left_ms {
            Some(from) => window(samples, at, from, watch.all_left_ms.unwrap_or(window_end)),
            None => WindowStats::default(),
        };
        let after = match watch.all_left_ms {
            Some(from) if from < window_end => window(samples, at, from, window_end),
            _ => WindowStats::default(),
        };
        let p99_ratio = (before.latency_ms.p99 > 0.0 && during.ok > 0)
            .then(|| during.latency_ms.p99 / before.latency_ms.p99);
        BurstReport {
            bindings: watch.initial,
            skew_grace_seconds: args.skew_grace_seconds,
            first_deadline: utc(at.first_deadline_ms),
            last_deadline: utc(last),
            deadline_spread_ms: last - at.first_deadline_ms,
            first_left_after_ms: watch.first_left_ms.map(|t| t - last),
            all_left_after_ms: watch.all_left_ms.map(|t| t - last),
            remaining: watch.remaining,
            timeline: watch.timeline,
            before: relative(before, last),
            during: relative(during, last),
            after: relative(after, last),
            p99_ratio,
            watch_error: watch.error,
        }
    }

    pub fn text(&self) -> String {
        let ms = |v: Option<i64>| v.map_or_else(|| "never".to_owned(), |v| format!("{v} ms"));
        let w = |name: &str, s: &WindowStats| {
            format!(
                "  binds {name:<22} [{:>+7} ms, {:>+7} ms]: {:>7} ok, {:>5} errors, p50 {:.3} ms, p99 {:.3} ms, max {:.1} ms\n",
                s.from_ms,
                s.to_ms,
                s.ok,
                s.errors,
                s.latency_ms.p50,
                s.latency_ms.p99,
                s.latency_ms.max
            )
        };
        let mut s = format!(
            "expiry burst: {} bindings, deadlines {} .. {} ({} ms apart), skew grace {} s\n  \
             after the last deadline: first left ACTIVE {}, all left ACTIVE {}{}\n",
            self.bindings,
            self.first_deadline,
            self.last_deadline,
            self.deadline_spread_ms,
            self.skew_grace_seconds,
            ms(self.first_left_after_ms),
            ms(self.all_left_after_ms),
            if self.remaining > 0 {
                format!(" ({} still live when the watch stopped)", self.remaining)
            } else {
                String::new()
            }
        );
        s.push_str(&w("before the deadline", &self.before));
        s.push_str(&w("during the burst", &self.during));
        if self.after.ok + self.after.errors > 0 {
            s.push_str(&w("after it", &self.after));
        }
        if let Some(r) = self.p99_ratio {
            s.push_str(&format!("  Bind p99 during / before: {r:.2}x\n"));
        }
        if let Some(e) = &self.watch_error {
            s.push_str(&format!("  the watch failed: {e}\n"));
        }
        s
    }
}

/// The Binds sent in [from_ms, to_ms) (wall clock).
fn window(samples: &[BindSample], at: Schedule, from_ms: i64, to_ms: i64) -> WindowStats {
    let mut h = histogram();
    let mut out = WindowStats {
        from_ms,
        to_ms,
        ..WindowStats::default()
    };
    for b in samples {
        let sent = at.start_ms + i64::from(b.sent_ms);
        if sent < from_ms || sent >= to_ms {
            continue;
        }
        if b.ok {
            out.ok += 1;
            let _ = h.record(u64::from(b.latency_us).max(1));
        } else {
            out.errors += 1;
        }
    }
    out.latency_ms = Latency::of(&h);
    out
}

fn relative(mut w: WindowStats, last: i64) -> WindowStats {
    w.from_ms -= last;
    w.to_ms -= last;
    w
}

/// Unix ms as RFC 3339 UTC.
pub fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Schedule {
        Schedule {
            start: Instant::now(),
            start_ms: 1_000_000,
            first_deadline_ms: 1_020_000,
            last_deadline_ms: 1_021_000,
        }
    }

    fn sample(sent_ms: u32, latency_us: u32, ok: bool) -> BindSample {
        BindSample {
            sent_ms,
            latency_us,
            ok,
        }
    }

    #[test]
    fn a_window_counts_the_binds_sent_inside_it() {
        let samples = [
            sample(9_999, 50_000, true), // before the window
            sample(10_000, 1_000, true),
            sample(15_000, 2_000, false),
            sample(19_999, 3_000, true),
            sample(20_000, 90_000, true), // at the first deadline: not before it
        ];
        let w = window(&samples, at(), 1_010_000, 1_020_000);
        assert_eq!((w.ok, w.errors), (2, 1));
        assert!((w.latency_ms.max - 3.0).abs() < 0.01, "{:?}", w.latency_ms);
    }

    #[test]
    fn the_report_splits_before_the_deadline_from_the_burst() {
        let cli = <Cli as clap::Parser>::parse_from([
            "bench",
            "--warmup",
            "2",
            "--duration",
            "40",
            "--before-deadline",
            "10",
        ]);
        let samples = [
            sample(13_000, 1_000, true), // 8 s before the last deadline
            sample(27_000, 8_000, true), // 6 s after it, while they leave
            sample(29_000, 9_000, true), // after the last one left
        ];
        let watch = Watch {
            initial: 100,
            first_left_ms: Some(1_026_000),
            all_left_ms: Some(1_028_000),
            remaining: 0,
            timeline: vec![(5_000, 100), (7_000, 0)],
            error: None,
        };
        let r = BurstReport::build(&cli.args, at(), &samples, watch);
        assert_eq!((r.before.ok, r.during.ok, r.after.ok), (1, 1, 1));
        assert_eq!((r.before.from_ms, r.before.to_ms), (-19_000, -1_000));
        assert_eq!(
            (r.first_left_after_ms, r.all_left_after_ms),
            (Some(5_000), Some(7_000))
        );
        assert_eq!(r.deadline_spread_ms, 1_000);
        assert!(
            (r.p99_ratio.unwrap_or(0.0) - 8.0).abs() < 0.1,
            "{:?}",
            r.p99_ratio
        );
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }
}
