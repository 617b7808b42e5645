//! The workers: each owns one connection and sends its share of the calls, closed loop or on a
//! fixed schedule, recording latencies in its own histograms.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::BenchArgs;
use super::target::{Conn, OpError};

/// The calls a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Bind,
    Unbind,
    Get,
    /// `grpc.health.v1.Health/Check`: the gRPC hop with no work behind it, to tell what the
    /// client and the hop can do from what a Bind costs.
    Health,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Bind, Op::Unbind, Op::Get, Op::Health];

    pub fn name(self) -> &'static str {
        match self {
            Op::Bind => "bind",
            Op::Unbind => "unbind",
            Op::Get => "get",
            Op::Health => "health",
        }
    }
}

/// Relative weights of bind, unbind, get and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    pub bind: u32,
    pub unbind: u32,
    pub get: u32,
    pub health: u32,
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix {
            bind: 0,
            unbind: 0,
            get: 0,
            health: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            match name.trim() {
                "bind" => mix.bind = weight,
                "unbind" => mix.unbind = weight,
                "get" => mix.get = weight,
                "health" => mix.health = weight,
                other => {
                    return Err(format!(
                        "unknown call {other:?} (bind, unbind, get, health)"
                    ));
                }
            }
        }
        if mix.bind == 0 && mix.unbind + mix.get > 0 {
            return Err("the mix needs bind > 0 with unbind or get (they need bindings)".into());
        }
        if mix.bind + mix.health == 0 {
            return Err("the mix needs bind or health > 0".into());
        }
        Ok(mix)
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bind={},unbind={},get={},health={}",
            self.bind, self.unbind, self.get, self.health
        )
    }
}

impl Mix {
    fn choose(&self, rng: &mut StdRng, holding: bool) -> Op {
        let total = self.bind + self.unbind + self.get + self.health;
        let r = rng.random_range(0..total);
        let op = if r < self.bind {
            Op::Bind
        } else if r < self.bind + self.unbind {
            Op::Unbind
        } else if r < self.bind + self.unbind + self.get {
            Op::Get
        } else {
            Op::Health
        };
        match op {
            Op::Unbind | Op::Get if !holding => Op::Bind,
            op => op,
        }
    }
}

/// The duration of a plan that runs until stopped: a day, longer than any run.
const UNTIL_STOPPED: Duration = Duration::from_secs(86_400);

/// What every worker shares.
#[derive(Debug)]
pub struct Plan {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Calls per second in all; 0 = closed loop.
    pub rate: f64,
    pub mix: Mix,
    pub parties: u64,
    /// The measured Binds ask for areas `first_area .. first_area + areas`.
    pub first_area: usize,
    pub areas: usize,
    /// ttl_seconds of every measured Bind.
    pub ttl: u64,
    /// Keep each Bind's send time and latency (for windows the report draws afterwards).
    pub keep_samples: bool,
    /// The next never-used party, when `parties` is 0.
    fresh: AtomicU64,
    /// Set by [`Plan::stop`]: the workers end after their current call.
    stopped: AtomicBool,
    /// How long a worker waits after a failed call before its next (0: not at all).
    pub error_pause: Duration,
}

impl Plan {
    pub fn new(args: &BenchArgs) -> Plan {
        // An expiry-burst run keeps the first area for the preloaded bindings.
        let burst = args.preload_expire_in > 0;
        Plan {
            concurrency: args.concurrency,
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
            rate: args.rate,
            mix: args.mix,
            parties: args.parties,
            first_area: usize::from(burst),
            areas: (args.areas - usize::from(burst)).max(1),
            ttl: args.ttl,
            keep_samples: burst,
            fresh: AtomicU64::new(args.first_party),
            stopped: AtomicBool::new(false),
            error_pause: Duration::ZERO,
        }
    }

    /// Load that runs until [`Plan::stop`] (no warm-up), each worker pausing `error_pause`
    /// after a failed call as a retrying client would (and so as not to spin on a connection
    /// to a dead replica). Its parties start at `first_party`, apart from another plan's.
    pub fn until_stopped(args: &BenchArgs, first_party: u64, error_pause: Duration) -> Plan {
        Plan {
            concurrency: args.concurrency,
            warmup: Duration::ZERO,
            duration: UNTIL_STOPPED,
            rate: args.rate,
            mix: args.mix,
            parties: args.parties,
            first_area: 0,
            areas: args.areas,
            ttl: args.ttl,
            keep_samples: false,
            fresh: AtomicU64::new(first_party),
            stopped: AtomicBool::new(false),
            error_pause,
        }
    }

    /// Ends the workers after their current call.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// The next party never used by this plan (a plan of fresh parties).
    pub fn next_fresh(&self) -> u64 {
        self.fresh.load(Ordering::Relaxed)
    }

    fn party(&self, rng: &mut StdRng) -> u64 {
        if self.parties == 0 {
            self.fresh.fetch_add(1, Ordering::Relaxed)
        } else {
            rng.random_range(0..self.parties)
        }
    }

    /// Two different parties.
    pub fn pair(&self, rng: &mut StdRng) -> (String, String) {
        let a = self.party(rng);
        let mut b = self.party(rng);
        while b == a {
            b = self.party(rng);
        }
        (party_number(a), party_number(b))
    }
}

/// The i-th party, `+86138xxxxxxxx`.
pub fn party_number(i: u64) -> String {
    format!("+86138{:08}", i % 100_000_000)
}

/// A binding a worker holds.
#[derive(Debug, Clone)]
pub struct Live {
    pub id: String,
    pub x: String,
    pub a: String,
    pub b: String,
}

/// One Bind as sent: its (scheduled) send time after the run's start, and its outcome.
#[derive(Debug, Clone, Copy)]
pub struct BindSample {
    pub sent_ms: u32,
    pub latency_us: u32,
    pub ok: bool,
}

/// Latencies in microseconds, 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        // The bounds are constants that hdrhistogram accepts.
        Histogram::new(3).unwrap_or_else(|_| unreachable!())
    })
}

/// One call kind's results.
#[derive(Debug)]
pub struct OpStats {
    pub ok: u64,
    pub err: u64,
    pub ok_latency: Histogram<u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            ok: 0,
            err: 0,
            ok_latency: histogram(),
        }
    }
}

/// Errors of one code.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ErrStat {
    pub count: u64,
    /// How many of them told the caller when to retry.
    pub with_retry_hint: u64,
}

/// One worker's results.
#[derive(Debug)]
pub struct WorkerStats {
    pub ops: BTreeMap<Op, OpStats>,
    pub errors: BTreeMap<String, ErrStat>,
    pub err_latency: Histogram<u64>,
    /// Bindings held at the end (for the rule check).
    pub live: Vec<Live>,
    /// Unbinds that failed: those bindings leave the rule check (their fate is unknown).
    pub unbind_failed: u64,
    /// Calls sent after their scheduled time because the worker was still busy.
    pub late: u64,
    /// Every measured Bind, when the plan keeps samples.
    pub binds: Vec<BindSample>,
}

impl WorkerStats {
    fn new() -> Self {
        WorkerStats {
            ops: Op::ALL.iter().map(|op| (*op, OpStats::default())).collect(),
            errors: BTreeMap::new(),
            err_latency: histogram(),
            live: Vec::new(),
            unbind_failed: 0,
            late: 0,
            binds: Vec::new(),
        }
    }

    fn record(&mut self, op: Op, latency: Duration, result: Result<(), OpError>) {
        let us = (latency.as_micros() as u64).max(1);
        let stats = self.ops.entry(op).or_default();
        match result {
            Ok(()) => {
                stats.ok += 1;
                let _ = stats.ok_latency.record(us);
            }
            Err(e) => {
                stats.err += 1;
                let _ = self.err_latency.record(us);
                let entry = self
                    .errors
                    .entry(format!("{} {}", op.name(), e.code))
                    .or_default();
                entry.count += 1;
                entry.with_retry_hint += u64::from(e.retry_hint);
            }
        }
    }
}

/// Runs one worker per connection for the plan's warm-up and duration.
pub async fn run(plan: Arc<Plan>, conns: Vec<Conn>, start: Instant) -> Vec<WorkerStats> {
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let plan = Arc::clone(&plan);
        tasks.push(tokio::spawn(worker(i, plan, conn, start)));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(stats) => out.push(stats),
            Err(e) => tracing::error!(error = %e, "a bench worker failed"),
        }
    }
    out
}

async fn worker(i: usize, plan: Arc<Plan>, mut conn: Conn, start: Instant) -> WorkerStats {
    let mut rng = StdRng::seed_from_u64(0x5eed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut stats = WorkerStats::new();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let n = plan.concurrency as f64;
    let mut live: Vec<Live> = Vec::new();
    tokio::time::sleep_until(start.into()).await;
    for k in 0u64.. {
        if plan.stopped.load(Ordering::Relaxed) {
            break;
        }
        // On a schedule, this worker's k-th call is due at start + (k·N + i) / rate.
        let t0 = if plan.rate > 0.0 {
            let due = start + Duration::from_secs_f64((k as f64 * n + i as f64) / plan.rate);
            if due >= end {
                break;
            }
            let now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            } else if now - due > Duration::from_millis(1) {
                stats.late += 1;
            }
            due
        } else {
            let now = Instant::now();
            if now >= end {
                break;
            }
            now
        };
        let op = plan.mix.choose(&mut rng, !live.is_empty());
        let result = match op {
            Op::Bind => {
                let (a, b) = plan.pair(&mut rng);
                let area = plan.first_area + rng.random_range(0..plan.areas);
                match conn.bind(&a, &b, area, plan.ttl).await {
                    Ok(bound) => {
                        live.push(Live {
                            id: bound.id,
                            x: bound.x,
                            a,
                            b,
                        });
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Unbind => {
                let held = live.swap_remove(rng.random_range(0..live.len()));
                let r = conn.unbind(&held.id).await;
                if r.is_err() {
                    stats.unbind_failed += 1;
                }
                r
            }
            Op::Get => {
                let id = live[rng.random_range(0..live.len())].id.clone();
                conn.get(&id).await
            }
            Op::Health => conn.health().await,
        };
        let failed = result.is_err();
        if t0 >= measure_from {
            let latency = t0.elapsed();
            if plan.keep_samples && op == Op::Bind {
                stats.binds.push(BindSample {
                    sent_ms: (t0 - start).as_millis() as u32,
                    latency_us: latency.as_micros().min(u128::from(u32::MAX)) as u32,
                    ok: result.is_ok(),
                });
            }
            stats.record(op, latency, result);
        }
        if failed && !plan.error_pause.is_zero() {
            tokio::time::sleep(plan.error_pause).await;
        }
    }
    stats.live = live;
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_names_its_calls_and_needs_bindings_for_unbind_and_get() {
        let mix: Mix = "bind=50, get=50".parse().unwrap();
        assert_eq!((mix.bind, mix.get, mix.unbind, mix.health), (50, 50, 0, 0));
        let health: Mix = "health=1".parse().unwrap();
        assert_eq!((health.bind, health.health), (0, 1));
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| health.choose(&mut rng, false) == Op::Health));
        assert!("get=1".parse::<Mix>().unwrap_err().contains("bind > 0"));
        assert!("bind=0".parse::<Mix>().is_err());
        assert!("ping=1".parse::<Mix>().unwrap_err().contains("\"ping\""));
        // Without a binding held, an unbind or get is a bind.
        let get: Mix = "bind=1,get=1000".parse().unwrap();
        assert!((0..100).all(|_| get.choose(&mut rng, false) == Op::Bind));
        assert!((0..100).any(|_| get.choose(&mut rng, true) == Op::Get));
    }

    #[test]
    fn fresh_parties_start_at_the_first_party_asked_for() {
        let plan = |argv: &[&str]| {
            let argv = std::iter::once("bench").chain(argv.iter().copied());
            Plan::new(&<Cli as clap::Parser>::parse_from(argv).args)
        };
        let mut rng = StdRng::seed_from_u64(1);
        let pair = |p: &str, q: &str| (p.to_owned(), q.to_owned());
        let from_zero = plan(&[]);
        assert_eq!(
            from_zero.pair(&mut rng),
            pair("+8613800000000", "+8613800000001")
        );
        let later = plan(&["--first-party", "5000000"]);
        assert_eq!(
            later.pair(&mut rng),
            pair("+8613805000000", "+8613805000001")
        );
        assert_eq!(
            later.pair(&mut rng),
            pair("+8613805000002", "+8613805000003")
        );
        assert_eq!(later.next_fresh(), 5_000_004);
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }
}
