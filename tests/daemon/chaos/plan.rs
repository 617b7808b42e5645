//! The plan of every round, drawn from the seed before the first round starts, so that a seed
//! always means the same faults at the same offsets (only the daemon's timing varies).

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xpool::store::faults::{Error, Point, Times};

use super::APPS;

/// One injected fault, active from `at_ms` into the round's load for `for_ms` (cut short when
/// the load ends).
#[derive(Debug, Clone)]
pub struct Event {
    pub at_ms: u64,
    pub for_ms: u64,
    pub fault: Fault,
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The disk is full: writing, creating a log segment and checkpointing fail with ENOSPC.
    FullDisk,
    /// The store's I/O fails at `point` with EIO (`Once`: the first time only).
    Disk { point: Point, times: Times },
    /// The platform hangs: the requests that arrive meanwhile reach it `latency_ms` late, and
    /// are carried out even when their caller has given up (see `proxy`).
    Hang { latency_ms: u64 },
    /// The app `APPS[app]` answers `latency_ms` late (the simulator's latency; the proxy hides
    /// a caller's leaving from the simulator, so these requests are carried out too).
    Slow { app: usize, latency_ms: u64 },
    /// The platform commits a change and never answers, with probability `rate`.
    Lost { app: Option<usize>, rate: f64 },
}

impl Fault {
    /// The faults file's lines for this fault.
    pub fn disk_lines(&self) -> Vec<String> {
        match *self {
            Fault::FullDisk => [Point::LogWrite, Point::LogCreate, Point::Checkpoint]
                .iter()
                .map(|p| format!("{p:?} {:?} {:?}\n", Error::Full, Times::Always))
                .collect(),
            Fault::Disk { point, times } => vec![format!("{point:?} {:?} {times:?}\n", Error::Io)],
            _ => Vec::new(),
        }
    }

    pub fn is_disk(&self) -> bool {
        matches!(self, Fault::FullDisk | Fault::Disk { .. })
    }
}

/// One round: load for `load_ms` with `events` injected, then SIGKILL if `kill`, then checks.
#[derive(Debug, Clone)]
pub struct RoundPlan {
    pub round: usize,
    pub load_ms: u64,
    /// Seeds the load workers' choices.
    pub load_seed: u64,
    pub events: Vec<Event>,
    /// SIGKILL when the load window ends (whatever faults are active then), and start again.
    pub kill: bool,
}

/// Where an I/O error strikes: writing the log, syncing it, applying it to the database,
/// checkpointing.
const IO_ERRORS: [Point; 4] = [
    Point::LogWrite,
    Point::LogSync,
    Point::SledApply,
    Point::Checkpoint,
];

/// `rounds` plans from `seed`.
pub fn plan(seed: u64, rounds: usize) -> Vec<RoundPlan> {
    let mut rng = StdRng::seed_from_u64(seed);
    (1..=rounds)
        .map(|round| round_plan(round, &mut rng))
        .collect()
}

fn round_plan(round: usize, rng: &mut StdRng) -> RoundPlan {
    let load_ms = rng.random_range(150..350);
    let kill = rng.random_bool(0.3);
    // At least one fault besides (or instead of) the kill.
    let n = rng.random_range(1..=3);
    let mut events: Vec<Event> = (0..n).map(|_| event(load_ms, rng)).collect();
    events.sort_by_key(|e| e.at_ms);
    RoundPlan {
        round,
        load_ms,
        load_seed: rng.random(),
        events,
        kill,
    }
}

fn event(load_ms: u64, rng: &mut StdRng) -> Event {
    let app = |rng: &mut StdRng| {
        rng.random_bool(0.5)
            .then(|| rng.random_range(0..APPS.len()))
    };
    let fault = match rng.random_range(0..4) {
        0 => Fault::FullDisk,
        1 => {
            let point = IO_ERRORS[rng.random_range(0..IO_ERRORS.len())];
            let times = if rng.random_bool(0.3) {
                Times::Once
            } else {
                Times::Always
            };
            Fault::Disk { point, times }
        }
        2 => match app(rng) {
            None => Fault::Hang {
                latency_ms: rng.random_range(150..900),
            },
            Some(app) => Fault::Slow {
                app,
                latency_ms: rng.random_range(150..900),
            },
        },
        _ => Fault::Lost {
            app: app(rng),
            rate: rng.random_range(0.2..0.7),
        },
    };
    Event {
        at_ms: rng.random_range(0..load_ms * 3 / 4),
        for_ms: rng.random_range(50..300),
        fault,
    }
}

/// How many kills, store faults, hangs and losses of answers `plans` inject.
pub fn census(plans: &[RoundPlan]) -> String {
    let kills = plans.iter().filter(|p| p.kill).count();
    let events = plans.iter().flat_map(|p| &p.events);
    let (mut disk, mut hang, mut lost) = (0, 0, 0);
    for e in events {
        match e.fault {
            Fault::FullDisk | Fault::Disk { .. } => disk += 1,
            Fault::Hang { .. } | Fault::Slow { .. } => hang += 1,
            Fault::Lost { .. } => lost += 1,
        }
    }
    format!(
        "{kills} SIGKILLs, {disk} store faults, {hang} platform hangs, {lost} spells of lost answers"
    )
}

impl RoundPlan {
    /// Whether a request can land on the platform after its caller gave up: a hang (with the
    /// proxy in between, a slow app's requests land too, its caller's leaving unseen).
    pub fn late_commits(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e.fault, Fault::Hang { .. } | Fault::Slow { .. }))
    }

    /// Whether a store fault of this round must strike (one that lasts, on the write path).
    pub fn fails_disk(&self) -> bool {
        self.events.iter().any(|e| {
            matches!(
                e.fault,
                Fault::FullDisk
                    | Fault::Disk {
                        point: Point::LogWrite | Point::LogSync | Point::SledApply,
                        times: Times::Always,
                    }
            )
        })
    }
}

impl fmt::Display for RoundPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {:>3}: load {} ms;", self.round, self.load_ms)?;
        for e in &self.events {
            write!(f, " [{}+{} ms {}]", e.at_ms, e.for_ms, e.fault)?;
        }
        if self.kill {
            write!(f, " then SIGKILL")?;
        }
        Ok(())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let app = |a: &Option<usize>| a.map_or("all apps", |i| APPS[i].name);
        match self {
            Fault::FullDisk => write!(f, "full disk"),
            Fault::Disk { point, times } => write!(f, "EIO at {point:?} {times:?}"),
            Fault::Hang { latency_ms } => write!(f, "platform hang {latency_ms} ms"),
            Fault::Slow { app, latency_ms } => {
                write!(f, "{} answers {latency_ms} ms late", APPS[*app].name)
            }
            Fault::Lost { app: a, rate } => write!(f, "lost answers {rate:.2} ({})", app(a)),
        }
    }
}
