//! `--cluster N`: a 3-member etcd cluster from the `etcd` binary (free loopback ports, its data
//! under the run's directory) and N `xpool serve` replicas `r1` … `rN` on it, each with the
//! generated app, its own store and a fixed port (so a restarted replica comes back where the
//! clients' connections look for it); and what the failover phase asks of them: which replica
//! leads the app, and whether a restarted one is back in the cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::Command;
use xpool::cluster::Prefix;
use xpool::cluster::keys::parse_applied;
use xpool_etcd::{Client, ClientConfig};

use super::spawn::{Proc, daemon_config, daemon_ready, free_port, launch};
use super::{BenchArgs, restart, wait_until};

/// Members of the etcd cluster.
pub const ETCD_MEMBERS: usize = 3;
/// The replicas' `key_prefix`.
const PREFIX: &str = "/xpool-bench/";
/// How long the etcd cluster, or the replicas' first leader, may take to come up.
const START_LIMIT: Duration = Duration::from_secs(60);

/// One `xpool serve` replica.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Its node id, and its process's (and log's) name.
    pub id: String,
    pub url: String,
    /// Its generated config; its store is `<run dir>/<id>/store`, kept across restarts.
    pub config: PathBuf,
}

/// The etcd cluster and the replicas on it.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub replicas: Vec<Replica>,
    prefix: Prefix,
    /// A client of every etcd member, for the look-ups below.
    etcd: Client,
}

impl Cluster {
    /// Every replica's gRPC URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.url.clone()).collect()
    }

    /// The node id that leads `app` now (the value of `P leader/<app>`), if any.
    pub async fn leader(&self, app: &str) -> anyhow::Result<Option<String>> {
        let got = self
            .etcd
            .get(self.prefix.leader(app))
            .await
            .context("reading the app's leader from etcd")?;
        Ok(got
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// The create revision of the replica's registration (`P nodes/<id>`), if it is registered.
    pub async fn registration(&self, id: &str) -> anyhow::Result<Option<i64>> {
        let got = self
            .etcd
            .get(self.prefix.node(id))
            .await
            .context("reading a replica's registration from etcd")?;
        Ok(got.first().map(|kv| kv.create_revision))
    }

    /// etcd's current revision.
    pub async fn revision(&self) -> anyhow::Result<i64> {
        let got = self
            .etcd
            .get(self.prefix.leaders())
            .await
            .context("reading etcd's revision")?;
        Ok(got.revision)
    }

    /// The revision the replica says its copy has applied (`P applied/<id>`).
    pub async fn applied(&self, id: &str) -> Option<i64> {
        let got = self.etcd.get(self.prefix.applied(id)).await.ok()?;
        let applied = parse_applied(&got.first()?.value)?;
        i64::try_from(applied).ok()
    }
}

/// Starts the etcd members and the replicas (their processes go to `procs`), and waits until a
/// Bind succeeds through every replica.
pub async fn start(
    args: &BenchArgs,
    dir: &Path,
    sim_url: &str,
    procs: &mut Vec<Proc>,
) -> anyhow::Result<Cluster> {
    let endpoints = start_etcd(args, dir, procs).await?;
    let mut config = ClientConfig::new(endpoints.clone());
    config.request_timeout = Duration::from_secs(2);
    config.attempt_timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    let etcd = Client::new(config).context("an etcd client for the look-ups")?;
    let mut replicas = Vec::with_capacity(args.cluster);
    for i in 1..=args.cluster {
        let id = format!("r{i}");
        let home = dir.join(&id);
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let port = free_port()?;
        let config = home.join("xpool.toml");
        let text = replica_config(args, port, &home, sim_url, &id, &endpoints);
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--config"]).arg(&config);
        let url = format!("http://127.0.0.1:{port}");
        let probe = url.clone();
        procs.push(launch(&id, cmd, dir, async || daemon_ready(&probe).await).await?);
        replicas.push(Replica { id, url, config });
    }
    for replica in &replicas {
        let bound = wait_until(START_LIMIT, async || {
            restart::probe_bind(&replica.url, args, "cluster-up").await
        })
        .await;
        if !bound {
            bail!(
                "no Bind through replica {} succeeded within {START_LIMIT:?} of the cluster's \
                 start (no leader for app {:?}?); see {}",
                replica.id,
                args.app,
                dir.join(format!("{}.log", replica.id)).display()
            );
        }
    }
    Ok(Cluster {
        replicas,
        prefix: Prefix::new(PREFIX),
        etcd,
    })
}

/// Starts the etcd members on free loopback ports and waits until each one serves; their
/// client URLs.
async fn start_etcd(
    args: &BenchArgs,
    dir: &Path,
    procs: &mut Vec<Proc>,
) -> anyhow::Result<Vec<String>> {
    match Command::new(&args.etcd).arg("--version").output().await {
        Ok(out) if out.status.success() => {}
        Ok(out) => bail!("--etcd {}: `--version` failed ({})", args.etcd, out.status),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "etcd not installed (apt-get install -y etcd-server), or pass --etcd PATH: \
             {} not found",
            args.etcd
        ),
        Err(e) => bail!("--etcd {}: {e}", args.etcd),
    }
    // Every listener held until all ports are chosen, so that they differ.
    let listeners = (0..2 * ETCD_MEMBERS)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()?;
    drop(listeners);
    let client = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i]);
    let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
    let initial: Vec<String> = (0..ETCD_MEMBERS)
        .map(|i| format!("etcd{i}={}", peer(i)))
        .collect();
    for i in 0..ETCD_MEMBERS {
        let name = format!("etcd{i}");
        let mut cmd = Command::new(&args.etcd);
        cmd.arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", dir.join(&name).display()))
            .arg(format!("--listen-client-urls={}", client(i)))
            .arg(format!("--advertise-client-urls={}", client(i)))
            .arg(format!("--listen-peer-urls={}", peer(i)))
            .arg(format!("--initial-advertise-peer-urls={}", peer(i)))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg(format!("--initial-cluster-token={}", dir.display()))
            .args(["--initial-cluster-state=new", "--logger=zap"])
            .args(["--log-outputs=stderr", "--log-level=warn"]);
        // Ready at once: a member serves only once a quorum is up, waited for below.
        procs.push(launch(&name, cmd, dir, async || true).await?);
    }
    let endpoints: Vec<String> = (0..ETCD_MEMBERS).map(client).collect();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let mut config = ClientConfig::new([endpoint.clone()]);
        config.request_timeout = Duration::from_millis(500);
        config.connect_timeout = Duration::from_millis(500);
        let member = Client::new(config).context("an etcd client")?;
        let up = wait_until(START_LIMIT, async || {
            member.get("xpool-bench-health").await.is_ok()
        })
        .await;
        if !up {
            bail!(
                "etcd member {i} ({endpoint}) did not serve within {START_LIMIT:?}; see {}",
                dir.join(format!("etcd{i}.log")).display()
            );
        }
    }
    Ok(endpoints)
}

/// The generated daemon config with a `[cluster]` section for replica `id`.
fn replica_config(
    args: &BenchArgs,
    port: u16,
    home: &Path,
    sim_url: &str,
    id: &str,
    endpoints: &[String],
) -> String {
    format!(
        "{}\n[cluster]\netcd_endpoints = {endpoints:?}\nnode_id = \"{id}\"\n\
         advertise_addr = \"127.0.0.1:{port}\"\nlease_ttl_seconds = {}\nkey_prefix = \"{PREFIX}\"\n",
        daemon_config(args, port, home, sim_url),
        args.lease_ttl
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn a_replicas_generated_config_is_one_the_daemon_takes() {
        let argv = [
            "bench",
            "--spawn",
            "--mode",
            "x",
            "--cluster",
            "3",
            "--lease-ttl",
            "2",
        ];
        let args = <Cli as clap::Parser>::try_parse_from(argv).unwrap().args;
        let endpoints = vec![
            "http://127.0.0.1:2379".to_owned(),
            "http://127.0.0.1:2381".to_owned(),
        ];
        let home = Path::new("/tmp/xpool-bench-test/r2");
        let text = replica_config(&args, 40_002, home, "", "r2", &endpoints);
        let config = xpool::config::Config::from_toml_str(&text, "r2.toml", Vec::new())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.etcd_endpoints, endpoints);
        assert_eq!(cluster.node_id, "r2");
        assert_eq!(cluster.advertise_addr, "127.0.0.1:40002");
        assert_eq!(cluster.lease_ttl_seconds, 2);
        assert_eq!(cluster.key_prefix, PREFIX);
        assert_eq!(config.store.path, home.join("store"));
    }
}
