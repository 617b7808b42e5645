//! The report of one run: text for people, JSON for files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use super::load::{ErrStat, Op, Plan, WorkerStats, histogram};
use super::spawn::{Sample, Spawned};
use super::{BenchArgs, BenchMode, TargetKind};

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub(super) fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One call kind (or all of them).
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub ok: u64,
    pub errors: u64,
    /// Successful calls per second of the measured window.
    pub ok_per_s: f64,
    /// Of successful calls.
    pub latency_ms: Latency,
}

/// The allocation rules over every binding live at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleCheck {
    pub bindings_checked: u64,
    pub xs_used: u64,
    /// A party on one X in two live bindings.
    pub party_twice_on_x: u64,
    /// Xs carrying more bindings than the cap.
    pub xs_over_cap: u64,
    pub cap: u64,
    /// Unbinds that failed; their bindings are not checked.
    pub unbinds_failed: u64,
}

impl RuleCheck {
    pub fn broken(&self) -> bool {
        self.party_twice_on_x > 0 || self.xs_over_cap > 0
    }
}

/// One process's CPU time and memory over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcReport {
    pub name: String,
    pub pid: u32,
    pub startup_ms: Option<u64>,
    pub cpu_s: f64,
    /// CPU time per successful call, µs.
    pub cpu_us_per_call: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

/// Processes before and after.
#[derive(Debug, Clone, Default)]
pub struct Processes(pub Vec<(String, u32, Option<Duration>, f64, Sample)>);

impl Processes {
    pub fn diff(
        before: &[(String, u32, Sample)],
        after: &[(String, u32, Sample)],
        spawned: &Spawned,
    ) -> Processes {
        let mut out = Vec::new();
        for ((name, pid, b), (_, _, a)) in before.iter().zip(after) {
            let startup = spawned
                .procs
                .iter()
                .find(|p| p.pid == *pid)
                .map(|p| p.startup);
            out.push((name.clone(), *pid, startup, a.cpu_s - b.cpu_s, *a));
        }
        Processes(out)
    }
}

/// What the simulator counted during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimDelta {
    pub requests: u64,
    pub by_code: BTreeMap<String, u64>,
}

impl SimDelta {
    pub fn between(before: Option<Value>, after: Option<Value>) -> Option<SimDelta> {
        let after = after?;
        let before = before.unwrap_or(Value::Null);
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let mut by_code = BTreeMap::new();
        if let Some(codes) = after.get("by_code").and_then(Value::as_object) {
            for (code, count) in codes {
                let was = before
                    .get("by_code")
                    .and_then(|c| c.get(code))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let d = count.as_u64().unwrap_or(0).saturating_sub(was);
                if d > 0 {
                    by_code.insert(code.clone(), d);
                }
            }
        }
        Some(SimDelta {
            requests: n(&after, "requests").saturating_sub(n(&before, "requests")),
            by_code,
        })
    }
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_mib: u64,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            mem_total_mib,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub label: Option<String>,
    pub target: TargetKind,
    pub mode: BenchMode,
    pub args: BenchArgs,
    pub machine: Machine,
    /// The measured window, seconds (warm-up excluded).
    pub window_s: f64,
    /// Offered calls per second (0 = closed loop).
    pub offered_rate: f64,
    pub all: OpReport,
    pub ops: BTreeMap<String, OpReport>,
    /// "<call> <code>" ⇒ count and how many carried a retry hint.
    pub errors: BTreeMap<String, ErrStat>,
    /// Of failed calls.
    pub error_latency_ms: Latency,
    /// Scheduled calls sent more than 1 ms late because their client was still busy.
    pub late_calls: u64,
    pub rules: RuleCheck,
    pub processes: Vec<ProcReport>,
    pub sim: Option<SimDelta>,
    /// The bindings created before the warm-up (--preload).
    pub preload: Option<super::preload::PreloadReport>,
    /// Their shared deadline and the Binds across it (--preload-expire-in).
    pub expiry_burst: Option<super::burst::BurstReport>,
    /// The timed full reconciliation after the window (--reconcile).
    pub reconcile: Option<super::recon::ReconcileRun>,
    /// The daemon stopped and started again after the window (--restart).
    pub restart: Option<super::restart::RestartReport>,
    /// X-mode callins sent to the push receiver during the window (--callins).
    pub callins: Option<super::callins::CallinReport>,
    /// The app's leader killed and the failovers timed after the window (--failovers).
    pub failover: Option<super::failover::FailoverReport>,
}

impl Report {
    pub fn build(
        args: &BenchArgs,
        plan: &Plan,
        workers: Vec<WorkerStats>,
        procs: Processes,
        sim: Option<SimDelta>,
    ) -> Report {
        let window = plan.duration.as_secs_f64();
        let mut per_op: BTreeMap<Op, (u64, u64, Histogram<u64>)> = BTreeMap::new();
        let mut all = histogram();
        let mut err_latency = histogram();
        let mut errors: BTreeMap<String, ErrStat> = BTreeMap::new();
        let mut late = 0;
        let mut rules = RuleCheck {
            cap: match args.mode {
                BenchMode::Ax => 1,
                BenchMode::Axe => 9999,
                BenchMode::Axb | BenchMode::X => u64::from(args.max_bindings_per_x),
            },
            ..RuleCheck::default()
        };
        let mut on_x: HashMap<String, (u64, HashSet<String>)> = HashMap::new();
        for w in workers {
            for (op, s) in w.ops {
                let e = per_op.entry(op).or_insert_with(|| (0, 0, histogram()));
                e.0 += s.ok;
                e.1 += s.err;
                let _ = e.2.add(&s.ok_latency);
                let _ = all.add(&s.ok_latency);
            }
            let _ = err_latency.add(&w.err_latency);
            for (code, s) in w.errors {
                let e = errors.entry(code).or_default();
                e.count += s.count;
                e.with_retry_hint += s.with_retry_hint;
            }
            late += w.late;
            rules.unbinds_failed += w.unbind_failed;
            for l in w.live {
                rules.bindings_checked += 1;
                let (count, parties) = on_x.entry(l.x).or_default();
                *count += 1;
                let b = args.mode.has_b().then_some(l.b);
                for p in std::iter::once(l.a).chain(b) {
                    if !parties.insert(p) {
                        rules.party_twice_on_x += 1;
                    }
                }
            }
        }
        rules.xs_used = on_x.len() as u64;
        rules.xs_over_cap = on_x.values().filter(|(n, _)| *n > rules.cap).count() as u64;
        let op_report = |ok: u64, err: u64, h: &Histogram<u64>| OpReport {
            ok,
            errors: err,
            ok_per_s: if window > 0.0 {
                ok as f64 / window
            } else {
                0.0
            },
            latency_ms: Latency::of(h),
        };
        let (ok_all, err_all) = per_op
            .values()
            .fold((0, 0), |(o, e), (ok, err, _)| (o + ok, e + err));
        let ops = per_op
            .iter()
            .filter(|(_, (ok, err, _))| ok + err > 0)
            .map(|(op, (ok, err, h))| (op.name().to_owned(), op_report(*ok, *err, h)))
            .collect();
        let processes = procs
            .0
            .into_iter()
            .map(|(name, pid, startup, cpu_s, sample)| ProcReport {
                name,
                pid,
                startup_ms: startup.map(|d| d.as_millis() as u64),
                cpu_s,
                cpu_us_per_call: if ok_all > 0 {
                    cpu_s * 1e6 / ok_all as f64
                } else {
                    0.0
                },
                rss_mib: sample.rss_kib as f64 / 1024.0,
                peak_rss_mib: sample.hwm_kib as f64 / 1024.0,
            })
            .collect();
        Report {
            label: args.label.clone(),
            target: args.target,
            mode: args.mode,
            args: args.clone(),
            machine: Machine::read(),
            window_s: window,
            offered_rate: args.rate,
            all: op_report(ok_all, err_all, &all),
            ops,
            errors,
            error_latency_ms: Latency::of(&err_latency),
            late_calls: late,
            rules,
            processes,
            sim,
            preload: None,
            expiry_burst: None,
            reconcile: None,
            restart: None,
            callins: None,
            failover: None,
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let label = self.label.as_deref().unwrap_or("xpool bench");
        let _ = writeln!(
            s,
            "== {label}: target {:?}, mode {}, {} clients, {:.1} s measured after {:.1} s warm-up, {}",
            self.target,
            self.mode.name(),
            self.args.concurrency,
            self.window_s,
            self.args.warmup,
            if self.offered_rate > 0.0 {
                format!("{:.0} calls/s offered", self.offered_rate)
            } else {
                "closed loop".to_owned()
            }
        );
        let _ = writeln!(
            s,
            "   machine: {} CPUs ({}), {} MiB; mix {}",
            self.machine.cpus, self.machine.cpu_model, self.machine.mem_total_mib, self.args.mix
        );
        if self.args.cluster > 0 {
            let _ = writeln!(
                s,
                "   cluster: {} replicas on a {}-member etcd cluster, the clients' connections \
                 spread over them",
                self.args.cluster,
                super::cluster::ETCD_MEMBERS
            );
        }
        if self.window_s > 0.0 {
            self.calls_text(&mut s);
        } else {
            s.push_str("no measured window (--duration 0)\n");
        }
        if let Some(callins) = &self.callins {
            s.push_str(&callins.text());
        }
        for p in &self.processes {
            let _ = writeln!(
                s,
                "process {:<7} pid {:>7}: cpu {:>7.2} s ({:>6.1} µs/ok call), rss {:>7.1} MiB, peak {:>7.1} MiB{}",
                p.name,
                p.pid,
                p.cpu_s,
                p.cpu_us_per_call,
                p.rss_mib,
                p.peak_rss_mib,
                p.startup_ms
                    .map(|ms| format!(", ready {ms} ms after spawn"))
                    .unwrap_or_default()
            );
        }
        if let Some(sim) = &self.sim {
            let codes: Vec<String> = sim
                .by_code
                .iter()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect();
            let _ = writeln!(
                s,
                "simulator, measured window: {} requests ({:.1}/s) by result code {{{}}}",
                sim.requests,
                sim.requests as f64 / self.window_s.max(1e-9),
                codes.join(", ")
            );
        }
        if let Some(p) = &self.preload {
            let _ = writeln!(s, "{}", p.text());
        }
        if let Some(b) = &self.expiry_burst {
            s.push_str(&b.text());
        }
        if let Some(r) = &self.reconcile {
            let _ = writeln!(s, "{}", r.text());
        }
        if let Some(r) = &self.restart {
            let _ = writeln!(s, "{}", r.text());
        }
        if let Some(f) = &self.failover {
            s.push_str(&f.text());
        }
        s
    }

    /// The measured window's calls, errors and rule check.
    fn calls_text(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "{:<8} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "call", "ok", "errors", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let mut row = |name: &str, r: &OpReport| {
            let l = r.latency_ms;
            let _ = writeln!(
                s,
                "{name:<8} {:>9} {:>8} {:>10.1} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.1}",
                r.ok, r.errors, r.ok_per_s, l.p50, l.p90, l.p99, l.p999, l.max
            );
        };
        for (name, r) in &self.ops {
            row(name, r);
        }
        row("all", &self.all);
        if !self.errors.is_empty() {
            let l = self.error_latency_ms;
            let _ = writeln!(
                s,
                "errors (latency of failed calls: p50 {:.3} ms, p99 {:.3} ms, max {:.1} ms):",
                l.p50, l.p99, l.max
            );
            for (code, e) in &self.errors {
                let _ = writeln!(
                    s,
                    "  {code:<40} {:>9}  ({} with a retry hint)",
                    e.count, e.with_retry_hint
                );
            }
        }
        if self.late_calls > 0 {
            let _ = writeln!(
                s,
                "late: {} scheduled calls went out > 1 ms late (all clients busy: raise --concurrency)",
                self.late_calls
            );
        }
        let r = &self.rules;
        let _ = writeln!(
            s,
            "rules: {} live bindings on {} Xs checked: {} party-twice-on-one-X, {} Xs over cap {}{}{}",
            r.bindings_checked,
            r.xs_used,
            r.party_twice_on_x,
            r.xs_over_cap,
            r.cap,
            if r.unbinds_failed > 0 {
                format!(" ({} failed unbinds left out)", r.unbinds_failed)
            } else {
                String::new()
            },
            if r.broken() { "  RULE BROKEN" } else { "  ok" }
        );
    }
}
