//! Applies a round's faults on schedule: store faults through the daemon's faults file
//! (`xpool::store::faults::FAULTS_FILE_ENV`), platform hangs through the proxy in front of the
//! simulator, slow apps and lost answers through the simulator's `/sim/faults` control.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::APPS;
use super::plan::{Event, Fault};
use super::proxy::HangProxy;
use crate::support::Sim;

/// Injects faults into one daemon (and its successors on the same store) and its simulator.
#[derive(Debug)]
pub struct Injector {
    /// The faults file the daemon reads; replaced whole on every change.
    file: PathBuf,
    /// Each version of the file gets its own modification time (this many seconds after the
    /// epoch), so the daemon never mistakes a new version for the one it read.
    version: u64,
    /// The platform app key of each of `APPS`.
    keys: Vec<String>,
}

/// What the simulator is told for one app.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct SimFaults {
    latency_ms: u64,
    lost_rate: f64,
}

impl Injector {
    pub fn new(dir: &Path, keys: Vec<String>) -> Injector {
        let mut injector = Injector {
            file: dir.join("faults"),
            version: 0,
            keys,
        };
        injector.write_disk(&[]);
        injector
    }

    /// The file to name in the daemon's `XPOOL_TEST_FAULTS_FILE`.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn write_disk(&mut self, lines: &[String]) {
        self.version += 1;
        let tmp = self.file.with_extension("new");
        std::fs::write(&tmp, lines.concat()).unwrap();
        let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(self.version);
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(stamp)
            .unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// Runs `events` against a load that started at `start` and ends `load_ms` later, when
    /// every fault is lifted. Returns when the platform has answered (or dropped) every request
    /// that arrived while it hung.
    pub async fn run(
        &mut self,
        sim: &Sim,
        proxy: &HangProxy,
        events: &[Event],
        start: Instant,
        load_ms: u64,
    ) {
        // (offset, event, on) in time order; every event ends by the end of the load.
        let mut changes: Vec<(u64, usize, bool)> = Vec::new();
        let mut drained = start;
        for (i, e) in events.iter().enumerate() {
            let end = (e.at_ms + e.for_ms).min(load_ms);
            changes.push((e.at_ms, i, true));
            changes.push((end, i, false));
            if let Fault::Hang { latency_ms } | Fault::Slow { latency_ms, .. } = e.fault {
                drained = drained.max(start + Duration::from_millis(end + latency_ms));
            }
        }
        changes.sort_by_key(|&(at, _, on)| (at, on));
        let mut active = vec![false; events.len()];
        let mut sim_now = vec![SimFaults::default(); APPS.len()];
        for (at, i, on) in changes {
            tokio::time::sleep_until((start + Duration::from_millis(at)).into()).await;
            active[i] = on;
            if events[i].fault.is_disk() {
                self.write_disk(&disk_lines(events, &active));
            } else if let Fault::Hang { .. } = events[i].fault {
                proxy.hang(hang_ms(events, &active));
            } else {
                let wanted = sim_faults(events, &active);
                for (app, (now, want)) in sim_now.iter_mut().zip(wanted).enumerate() {
                    if *now != want {
                        set_sim(sim, &self.keys[app], want).await;
                        *now = want;
                    }
                }
            }
        }
        // A request that arrived just before a hang was lifted is answered its latency later.
        tokio::time::sleep_until((drained + Duration::from_millis(50)).into()).await;
    }
}

/// The faults file's lines for the active disk events.
fn disk_lines(events: &[Event], active: &[bool]) -> Vec<String> {
    events
        .iter()
        .zip(active)
        .filter(|(_, on)| **on)
        .flat_map(|(e, _)| e.fault.disk_lines())
        .collect()
}

/// The platform's hang for the active events: the longest.
fn hang_ms(events: &[Event], active: &[bool]) -> u64 {
    events
        .iter()
        .zip(active)
        .filter(|(_, on)| **on)
        .filter_map(|(e, _)| match e.fault {
            Fault::Hang { latency_ms } => Some(latency_ms),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Each app's simulator faults for the active events: the longest latency, the highest loss.
fn sim_faults(events: &[Event], active: &[bool]) -> Vec<SimFaults> {
    let mut out = vec![SimFaults::default(); APPS.len()];
    for (e, _) in events.iter().zip(active).filter(|(_, on)| **on) {
        for (i, f) in out.iter_mut().enumerate() {
            match e.fault {
                Fault::Slow { app, latency_ms } if app == i => {
                    f.latency_ms = f.latency_ms.max(latency_ms);
                }
                Fault::Lost { app, rate } if app.is_none_or(|a| a == i) => {
                    f.lost_rate = f.lost_rate.max(rate);
                }
                _ => {}
            }
        }
    }
    out
}

async fn set_sim(sim: &Sim, key: &str, f: SimFaults) {
    sim.faults(json!({
        "app_key": key,
        "latency_ms": f.latency_ms,
        "lost_response_rate": f.lost_rate,
    }))
    .await;
}
