//! `--failovers N` (with `--cluster`): after the measured window, N times in a row, SIGKILL the
//! replica that leads the app while the load keeps binding through every replica, and time the
//! kill → the first successful Bind for the app sent after the leader died (a probe Bind with
//! new parties every 10 ms, through the surviving replicas in turn); then start the killed
//! replica again over its store and config, and wait until it is back in the cluster
//! (registered again, its copy past the revision of its restart, a Bind through it answered)
//! before the next kill.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use super::cluster::{Cluster, Replica};
use super::load::{self, ErrStat, Op, Plan};
use super::spawn::{Spawned, daemon_ready};
use super::{BenchArgs, restart, target, wait_until};

/// The pause between two probe Binds after a kill: the measure's resolution.
const PROBE_PAUSE: Duration = Duration::from_millis(10);
/// One probe Bind's deadline.
const PROBE_DEADLINE: Duration = Duration::from_secs(1);
/// How long after a kill a Bind must have succeeded, and a restarted replica be back.
const LIMIT: Duration = Duration::from_secs(120);
/// What a load client waits after a failed call (a retrying client's back-off).
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverSample {
    /// The leader killed (its node id), and who led the app after.
    pub killed: String,
    pub new_leader: Option<String>,
    /// From SIGKILL to the first successful Bind sent after the process was gone.
    pub first_bind_ms: f64,
    /// The replica that took that Bind, and the probes sent until then.
    pub answered_by: String,
    pub probes: u64,
    /// From spawning the killed replica again to its being back in the cluster.
    pub rejoin_ms: u64,
}

/// What the failovers measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailoverReport {
    pub lease_ttl_seconds: u64,
    /// Over the samples' `first_bind_ms`: the median (the mean of the middle two for an even
    /// count), the least and the most.
    pub first_bind_p50_ms: f64,
    pub first_bind_min_ms: f64,
    pub first_bind_max_ms: f64,
    /// Every kill, in order.
    pub samples: Vec<FailoverSample>,
    /// The load's Binds over the whole phase (kills, failovers and rejoins), and its errors.
    pub phase_s: f64,
    pub load_binds_ok: u64,
    pub load_errors: BTreeMap<String, ErrStat>,
}

impl FailoverReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "failover: {} kills of the app's leader (lease TTL {} s): kill → first successful \
             Bind p50 {:.0} ms, min {:.0} ms, max {:.0} ms\n",
            self.samples.len(),
            self.lease_ttl_seconds,
            self.first_bind_p50_ms,
            self.first_bind_min_ms,
            self.first_bind_max_ms
        );
        for (i, f) in self.samples.iter().enumerate() {
            let _ = writeln!(
                s,
                "  kill {:>2}: {} → {}: first Bind {:>6.0} ms (through {}, probe {}), \
                 back in the cluster {} ms after its restart",
                i + 1,
                f.killed,
                f.new_leader.as_deref().unwrap_or("?"),
                f.first_bind_ms,
                f.answered_by,
                f.probes,
                f.rejoin_ms
            );
        }
        let errors: Vec<String> = self
            .load_errors
            .iter()
            .map(|(code, e)| format!("{code}: {}", e.count))
            .collect();
        let _ = writeln!(
            s,
            "  load meanwhile ({:.1} s): {} Binds ok ({:.1}/s), errors {{{}}}",
            self.phase_s,
            self.load_binds_ok,
            self.load_binds_ok as f64 / self.phase_s.max(1e-9),
            errors.join(", ")
        );
        s
    }
}

/// The median of `values` (the mean of the middle two for an even count), their least and
/// most; zeros when there are none.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}

/// Runs the kills with the load on, then stops the load. `first_party`: the first party the
/// load may use (above the measured window's).
pub async fn run(
    args: &BenchArgs,
    procs: &mut Spawned,
    first_party: u64,
) -> anyhow::Result<FailoverReport> {
    let cluster = procs
        .cluster
        .clone()
        .context("--failovers needs the replicas of --cluster")?;
    let plan = Arc::new(Plan::until_stopped(args, first_party, ERROR_PAUSE));
    let conns = target::connect_all(args, procs, "failover")
        .await
        .context("connecting the failover phase's clients")?;
    let started = Instant::now();
    let load = tokio::spawn(load::run(Arc::clone(&plan), conns, started));
    let mut samples = Vec::new();
    let mut result = Ok(());
    for k in 1..=args.failovers {
        match kill_one(args, procs, &cluster).await {
            Ok(sample) => {
                eprintln!(
                    "failover {k}/{}: {} killed, first Bind after {:.0} ms",
                    args.failovers, sample.killed, sample.first_bind_ms
                );
                samples.push(sample);
            }
            Err(e) => {
                result = Err(e.context(format!("failover {k} of {}", args.failovers)));
                break;
            }
        }
    }
    plan.stop();
    let workers = load.await.context("the failover phase's load failed")?;
    let phase_s = started.elapsed().as_secs_f64();
    result?;
    let mut report = FailoverReport {
        lease_ttl_seconds: args.lease_ttl,
        phase_s,
        ..FailoverReport::default()
    };
    for w in workers {
        report.load_binds_ok += w.ops.get(&Op::Bind).map_or(0, |s| s.ok);
        for (code, e) in w.errors {
            let sum = report.load_errors.entry(code).or_default();
            sum.count += e.count;
            sum.with_retry_hint += e.with_retry_hint;
        }
    }
    let times: Vec<f64> = samples.iter().map(|s| s.first_bind_ms).collect();
    (
        report.first_bind_p50_ms,
        report.first_bind_min_ms,
        report.first_bind_max_ms,
    ) = spread(&times);
    report.samples = samples;
    Ok(report)
}

/// One kill of the app's leader, the failover timed, and the restart.
async fn kill_one(
    args: &BenchArgs,
    procs: &mut Spawned,
    cluster: &Cluster,
) -> anyhow::Result<FailoverSample> {
    let mut leader = None;
    let led = wait_until(LIMIT, async || {
        leader = cluster.leader(&args.app).await.ok().flatten();
        leader.is_some()
    })
    .await;
    let (true, Some(leader)) = (led, leader) else {
        bail!("app {:?} had no leader for {LIMIT:?}", args.app);
    };
    let victim = cluster
        .replicas
        .iter()
        .find(|r| r.id == leader)
        .with_context(|| format!("the app's leader {leader:?} is none of the replicas"))?
        .clone();
    let registered = cluster.registration(&victim.id).await?;
    let mut survivors = Vec::new();
    for r in cluster.replicas.iter().filter(|r| r.id != victim.id) {
        let channel = Endpoint::from_shared(r.url.clone())?
            .tcp_nodelay(true)
            .connect_lazy();
        survivors.push((r.id.clone(), BindingServiceClient::new(channel)));
    }
    let killed_at = Instant::now();
    procs.kill(&victim.id).await?;
    let (first_bind, answered_by, probes) = first_bind(args, &survivors, killed_at).await?;
    let new_leader = cluster.leader(&args.app).await.ok().flatten();
    let rejoin = rejoin(args, procs, cluster, &victim, registered).await?;
    Ok(FailoverSample {
        killed: victim.id,
        new_leader,
        first_bind_ms: first_bind.as_secs_f64() * 1000.0,
        answered_by,
        probes,
        rejoin_ms: rejoin.as_millis() as u64,
    })
}

/// Probe Binds through the survivors in turn until one succeeds: the time since `killed_at`,
/// the replica that answered, and the probes sent.
async fn first_bind(
    args: &BenchArgs,
    survivors: &[(String, BindingServiceClient<Channel>)],
    killed_at: Instant,
) -> anyhow::Result<(Duration, String, u64)> {
    let mut probes = 0;
    for (id, client) in survivors.iter().cycle() {
        probes += 1;
        // A handle on the replica's channel: the clone shares its connection.
        let mut client = client.clone();
        if restart::bind_once(&mut client, args, "failover", PROBE_DEADLINE)
            .await
            .is_ok()
        {
            return Ok((killed_at.elapsed(), id.clone(), probes));
        }
        if killed_at.elapsed() > LIMIT {
            break;
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    bail!("no Bind for the app succeeded within {LIMIT:?} of killing its leader")
}

/// Starts `replica` again and waits until it is back: registered anew (its old registration,
/// created at `registered`, went with its lease), its copy past etcd's revision at its start,
/// and a Bind through it answered. How long that took from the spawn.
async fn rejoin(
    args: &BenchArgs,
    procs: &mut Spawned,
    cluster: &Cluster,
    replica: &Replica,
    registered: Option<i64>,
) -> anyhow::Result<Duration> {
    let spawned = Instant::now();
    let url = replica.url.clone();
    procs
        .serve(&replica.id, &replica.config, async || {
            daemon_ready(&url).await
        })
        .await?;
    let revision = cluster.revision().await?;
    let back = wait_until(LIMIT, async || {
        let registration = cluster.registration(&replica.id).await.ok().flatten();
        registration.is_some_and(|r| registered.is_none_or(|old| r > old))
            && cluster
                .applied(&replica.id)
                .await
                .is_some_and(|a| a >= revision)
            && restart::probe_bind(&url, args, "rejoin").await
    })
    .await;
    if !back {
        bail!(
            "replica {} was not back in the cluster within {LIMIT:?} of its restart",
            replica.id
        );
    }
    Ok(spawned.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(spread(&[]), (0.0, 0.0, 0.0));
        assert_eq!(spread(&[3.0]), (3.0, 3.0, 3.0));
        assert_eq!(spread(&[9.0, 1.0, 4.0]), (4.0, 1.0, 9.0));
        assert_eq!(spread(&[4.0, 10.0, 1.0, 2.0]), (3.0, 1.0, 10.0));
    }
}
