//! The preload: bindings created before the measured window, closed loop over one connection
//! per client, through the target's normal Bind path (for the daemon: gRPC, the allocator, the
//! durable write and, for upstream modes, the platform call).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde::Serialize;

use super::BenchArgs;
use super::load::Plan;
use super::spawn::Spawned;
use super::target::{self, Conn};

/// What the preload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PreloadReport {
    pub requested: u64,
    pub ok: u64,
    /// "<code>" ⇒ failed Binds.
    pub errors: BTreeMap<String, u64>,
    pub seconds: f64,
    pub ok_per_s: f64,
    /// With a shared deadline: the earliest and latest deadline the target recorded, Unix ms.
    pub first_deadline_ms: Option<i64>,
    pub last_deadline_ms: Option<i64>,
}

impl PreloadReport {
    pub fn text(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let mut s = format!(
            "preload: {} of {} bindings in {:.1} s ({:.0}/s), errors {{{}}}",
            self.ok,
            self.requested,
            self.seconds,
            self.ok_per_s,
            errors.join(", ")
        );
        if let (Some(first), Some(last)) = (self.first_deadline_ms, self.last_deadline_ms) {
            s.push_str(&format!(
                "; deadlines from {} to {} ({} ms apart)",
                super::burst::utc(first),
                super::burst::utc(last),
                last - first
            ));
        }
        s
    }
}

/// What the preload's workers share.
#[derive(Debug)]
struct Shared {
    plan: Arc<Plan>,
    want: u64,
    /// Binds handed out and not failed: a worker takes one before each Bind and gives it back
    /// when the Bind fails, so exactly `want` succeed.
    issued: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Too many failures: every worker stops.
    abort: AtomicBool,
    /// The shared deadline, Unix ms, if any.
    deadline_ms: Option<i64>,
}

/// Wall clock now, Unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Creates `args.preload` bindings with the plan's parties, in the first area when they share
/// a deadline (`args.preload_expire_in`), otherwise spread over the areas like the load.
pub async fn run(
    args: &BenchArgs,
    procs: &Spawned,
    plan: &Arc<Plan>,
) -> anyhow::Result<PreloadReport> {
    let conns = target::connect_all(args, procs, "preload-")
        .await
        .context("connecting the preload's clients")?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        plan: Arc::clone(plan),
        want: args.preload,
        issued: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        deadline_ms: (args.preload_expire_in > 0)
            .then(|| now_ms() + args.preload_expire_in as i64 * 1000),
    });
    let progress = tokio::spawn(progress(Arc::clone(&shared), started));
    let mut tasks = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(worker(i, Arc::clone(&shared), conn)));
    }
    let mut report = PreloadReport {
        requested: args.preload,
        ..PreloadReport::default()
    };
    for t in tasks {
        let w = t.await.context("a preload worker failed")?;
        for (code, n) in w.errors {
            *report.errors.entry(code).or_default() += n;
        }
        report.first_deadline_ms = min_opt(report.first_deadline_ms, w.first_deadline_ms);
        report.last_deadline_ms = max_opt(report.last_deadline_ms, w.last_deadline_ms);
    }
    progress.abort();
    report.ok = shared.ok.load(Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    report.ok_per_s = report.ok as f64 / report.seconds.max(1e-9);
    eprintln!("{}", report.text());
    if shared.abort.load(Ordering::Relaxed) {
        bail!(
            "the preload stopped after {} failed Binds ({} ok): {:?}",
            shared.failed.load(Ordering::Relaxed),
            report.ok,
            report.errors
        );
    }
    Ok(report)
}

/// One preload worker's results.
#[derive(Debug, Default)]
struct WorkerResult {
    errors: BTreeMap<String, u64>,
    first_deadline_ms: Option<i64>,
    last_deadline_ms: Option<i64>,
}

async fn worker(i: usize, shared: Arc<Shared>, mut conn: Conn) -> WorkerResult {
    let mut rng = StdRng::seed_from_u64(0x10ad ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = WorkerResult::default();
    // Give up when a hundredth of the bindings (at least 1000 calls) failed.
    let max_failed = (shared.want / 100).max(1000);
    let plan = &shared.plan;
    while !shared.abort.load(Ordering::Relaxed) {
        if shared.issued.fetch_add(1, Ordering::Relaxed) >= shared.want {
            // Not taken after all: a failing worker may still need it back for its retry.
            shared.issued.fetch_sub(1, Ordering::Relaxed);
            break;
        }
        let (a, b) = plan.pair(&mut rng);
        let (area, ttl) = match shared.deadline_ms {
            Some(d) => (0, ttl_until(d, now_ms())),
            None => {
                use rand::Rng as _;
                (rng.random_range(0..plan.areas + plan.first_area), 0)
            }
        };
        match conn.bind(&a, &b, area, ttl).await {
            Ok(bound) => {
                shared.ok.fetch_add(1, Ordering::Relaxed);
                out.first_deadline_ms = min_opt(out.first_deadline_ms, bound.expires_at_ms);
                out.last_deadline_ms = max_opt(out.last_deadline_ms, bound.expires_at_ms);
            }
            Err(e) => {
                *out.errors.entry(e.code).or_default() += 1;
                shared.issued.fetch_sub(1, Ordering::Relaxed);
                if shared.failed.fetch_add(1, Ordering::Relaxed) + 1 >= max_failed {
                    shared.abort.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    out
}

/// The ttl_seconds that puts a binding created at `now` on `deadline` (both Unix ms): whole
/// seconds rounded up, so the binding's deadline lands within a second after the shared one;
/// at least 1 (0 would mean no expiry).
fn ttl_until(deadline: i64, now: i64) -> u64 {
    ((deadline - now).max(1) as u64).div_ceil(1000)
}

/// Prints how far the preload is, every 10 s (a 1M preload takes minutes).
async fn progress(shared: Arc<Shared>, started: Instant) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let ok = shared.ok.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "preload: {ok}/{} after {secs:.0} s ({:.0}/s), {} failed",
            shared.want,
            ok as f64 / secs,
            shared.failed.load(Ordering::Relaxed)
        );
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::ttl_until;

    #[test]
    fn ttl_rounds_up_to_whole_seconds_and_never_reaches_zero() {
        assert_eq!(ttl_until(10_000, 0), 10);
        assert_eq!(ttl_until(10_000, 1), 10); // deadline 10_001: 1 ms after the shared one
        assert_eq!(ttl_until(10_000, 999), 10);
        assert_eq!(ttl_until(10_000, 1_000), 9);
        assert_eq!(ttl_until(10_000, 10_000), 1);
        assert_eq!(ttl_until(10_000, 20_000), 1);
    }
}
