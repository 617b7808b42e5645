//! The processes a run drives: spawned children of this binary (and redis-server) on 127.0.0.1,
//! or external addresses; their CPU time and memory from /proc.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

use super::{BenchArgs, BenchMode, TargetKind, area_code, pool_number, wait_until};

/// One child process.
#[derive(Debug)]
pub struct Proc {
    /// Also its log's name in the run's directory (`<name>.log`).
    pub name: String,
    pub pid: u32,
    /// From spawning to answering.
    pub startup: Duration,
    child: Child,
}

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// What the run talks to.
#[derive(Debug)]
pub struct Spawned {
    pub server_url: String,
    /// Every replica's gRPC URL with --cluster (the first is `server_url`); empty otherwise.
    pub server_urls: Vec<String>,
    /// Where the daemon's push receiver takes callins (--callins).
    pub callback_url: String,
    pub sim_url: String,
    pub redis_addr: String,
    /// Whether the simulator is there to ask for stats (spawned, or external and the target or
    /// faults use it).
    pub has_sim: bool,
    pub procs: Vec<Proc>,
    dir: Option<PathBuf>,
    /// The spawned daemon's generated config, for a restart.
    daemon_config: Option<PathBuf>,
    /// The etcd cluster and the replicas (--cluster).
    pub cluster: Option<super::cluster::Cluster>,
    keep: bool,
}

impl Spawned {
    /// The addresses given on the command line; nothing is started.
    pub fn external(args: &BenchArgs) -> Spawned {
        Spawned {
            server_url: args.server.clone(),
            server_urls: Vec::new(),
            callback_url: args.callback_url.clone(),
            sim_url: args.sim.trim_end_matches('/').to_owned(),
            redis_addr: args.redis.clone(),
            has_sim: args.target == TargetKind::Direct
                || args.sim_latency_ms > 0
                || args.sim_rps_limit > 0,
            procs: Vec::new(),
            dir: None,
            daemon_config: None,
            cluster: None,
            keep: args.keep,
        }
    }

    /// Keeps the directory (logs, configs, store) at the end, e.g. after a failed run.
    pub fn keep_dir(&mut self) {
        self.keep = true;
    }

    /// The spawned daemon's pid, if there is one.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.procs
            .iter()
            .find(|p| p.name == "daemon")
            .map(|p| p.pid)
    }

    /// Stops the spawned daemon with SIGTERM (its graceful shutdown) and waits for it to exit.
    /// Returns how long that took and how it exited.
    pub async fn stop_daemon(&mut self) -> anyhow::Result<(Duration, std::process::ExitStatus)> {
        let i = self
            .procs
            .iter()
            .position(|p| p.name == "daemon")
            .context("no spawned daemon to stop")?;
        let mut proc = self.procs.remove(i);
        let t0 = Instant::now();
        // No signal API in the dependencies (and no unsafe code): kill(1) sends it.
        let sent = Command::new("kill")
            .args(["-TERM", &proc.pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed ({sent})", proc.pid);
        }
        match tokio::time::timeout(Duration::from_secs(120), proc.child.wait()).await {
            Ok(status) => Ok((t0.elapsed(), status.context("waiting for the daemon")?)),
            Err(_) => {
                let _ = proc.child.kill().await;
                bail!("the daemon did not exit within 120 s of SIGTERM (killed)")
            }
        }
    }

    /// Starts the daemon again over the same config and store; it counts as started when
    /// `ready` first returns true.
    pub async fn restart_daemon(&mut self, ready: impl AsyncFn() -> bool) -> anyhow::Result<&Proc> {
        let Some(config) = self.daemon_config.clone() else {
            bail!("--restart needs a daemon spawned by this run (--spawn --target grpc)");
        };
        self.serve("daemon", &config, ready).await
    }

    /// Starts `xpool serve --config <config>` as child `name`; it counts as started when
    /// `ready` first returns true.
    pub async fn serve(
        &mut self,
        name: &str,
        config: &Path,
        ready: impl AsyncFn() -> bool,
    ) -> anyhow::Result<&Proc> {
        let Some(dir) = self.dir.clone() else {
            bail!("no directory of spawned processes to start the {name} in");
        };
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--config"]).arg(config);
        let proc = launch(name, cmd, &dir, ready).await?;
        self.procs.push(proc);
        self.procs.last().context("the process just started")
    }

    /// SIGKILLs child `name` and waits for it to exit; it leaves the list of children.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("no spawned {name} to kill"))?;
        let mut proc = self.procs.remove(i);
        proc.child
            .kill()
            .await
            .with_context(|| format!("killing the {name} (pid {})", proc.pid))
    }

    /// CPU and memory of this process (the load generator, first) and of every child.
    pub fn sample(&self) -> Vec<(String, u32, Sample)> {
        let mut out = vec![("bench".to_owned(), std::process::id(), read_proc("self"))];
        for p in &self.procs {
            out.push((p.name.to_owned(), p.pid, read_proc(&p.pid.to_string())));
        }
        out
    }

    /// Kills the children, waits for them, and removes the directory unless kept.
    pub async fn stop(&mut self) {
        // The last started first: the replicas before the etcd cluster they use.
        for p in self.procs.iter_mut().rev() {
            let _ = p.child.kill().await;
        }
        if let Some(dir) = &self.dir {
            if self.keep {
                println!("kept {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Starts what `args.target` needs.
pub async fn start(args: &BenchArgs) -> anyhow::Result<Spawned> {
    let dir = std::env::temp_dir().join(format!(
        "xpool-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut spawned = Spawned {
        server_url: String::new(),
        server_urls: Vec::new(),
        callback_url: String::new(),
        sim_url: String::new(),
        redis_addr: String::new(),
        has_sim: false,
        procs: Vec::new(),
        dir: Some(dir.clone()),
        daemon_config: None,
        cluster: None,
        keep: args.keep,
    };
    let needs_sim = match args.target {
        TargetKind::Grpc => args.mode != BenchMode::X,
        TargetKind::Direct => true,
        TargetKind::Redis => false,
    };
    if needs_sim {
        let port = free_port()?;
        let path = dir.join("sim.toml");
        std::fs::write(&path, sim_config(args))?;
        let addr = format!("127.0.0.1:{port}");
        let url = format!("http://{addr}");
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["sim", "--listen", &addr, "--config"]).arg(&path);
        let stats = format!("{url}/sim/stats?app_key={}", args.app_key);
        let proc = launch("sim", cmd, &dir, async || {
            http()
                .get(&stats)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;
        spawned.procs.push(proc);
        spawned.sim_url = url;
        spawned.has_sim = true;
    }
    match args.target {
        TargetKind::Grpc if args.cluster > 0 => {
            let cluster =
                super::cluster::start(args, &dir, &spawned.sim_url, &mut spawned.procs).await?;
            spawned.server_urls = cluster.urls();
            spawned.server_url = spawned.server_urls[0].clone();
            spawned.cluster = Some(cluster);
        }
        TargetKind::Grpc => {
            let port = free_port()?;
            let path = dir.join("xpool.toml");
            let mut config = daemon_config(args, port, &dir, &spawned.sim_url);
            if args.callins > 0.0 {
                let callbacks = free_port()?;
                config = format!("[callbacks]\nlisten = \"127.0.0.1:{callbacks}\"\n\n{config}");
                spawned.callback_url = format!("http://127.0.0.1:{callbacks}/callin");
            }
            std::fs::write(&path, config)?;
            let url = format!("http://127.0.0.1:{port}");
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["serve", "--config"]).arg(&path);
            let probe_url = url.clone();
            let proc = launch("daemon", cmd, &dir, async || daemon_ready(&probe_url).await).await?;
            spawned.procs.push(proc);
            spawned.server_url = url;
            spawned.daemon_config = Some(path);
        }
        TargetKind::Direct => {}
        TargetKind::Redis => {
            let port = free_port()?;
            let mut cmd = Command::new(&args.redis_server);
            cmd.args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(&dir);
            let addr = format!("127.0.0.1:{port}");
            let probe = addr.clone();
            let proc = launch("redis", cmd, &dir, async || {
                super::redis_peer::answers(&probe).await
            })
            .await
            .with_context(|| {
                format!(
                    "starting {} (install it with `apt-get install -y redis-server`, or pass \
                     --redis-server PATH)",
                    args.redis_server
                )
            })?;
            spawned.procs.push(proc);
            spawned.redis_addr = addr;
        }
    }
    Ok(spawned)
}

/// Spawns `cmd` as `name` (its output in `<dir>/<name>.log`, appended to) and waits until it
/// answers `ready` (or exits: an error naming its log).
pub(super) async fn launch(
    name: &str,
    mut cmd: Command,
    dir: &Path,
    ready: impl AsyncFn() -> bool,
) -> anyhow::Result<Proc> {
    // Appended to: a restarted daemon writes after its first run.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?;
    cmd.env("XPOOL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning the {name}"))?;
    let pid = child.id().unwrap_or(0);
    let up = wait_until(Duration::from_secs(120), async || {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        ready().await
    })
    .await;
    if let Ok(Some(status)) = child.try_wait() {
        bail!(
            "the {name} exited at start-up ({status}); see {}",
            dir.join(format!("{name}.log")).display()
        );
    }
    if !up {
        let _ = child.kill().await;
        bail!("the {name} did not answer within 120 s");
    }
    let startup = t0.elapsed();
    tracing::info!(name, pid, ms = startup.as_millis() as u64, "started");
    Ok(Proc {
        name: name.to_owned(),
        pid,
        startup,
        child,
    })
}

/// Whether the daemon at `url` serves gRPC.
pub(super) async fn daemon_ready(url: &str) -> bool {
    use xpool::grpc::pb;
    let Ok(mut client) =
        pb::binding_service_client::BindingServiceClient::connect(url.to_owned()).await
    else {
        return false;
    };
    // Any answer from the service (NOT_FOUND here) means it serves.
    let probe = pb::GetBindingRequest::by_request("xpool-bench-probe", "xpool-bench-probe");
    match client.get_binding(probe).await {
        Ok(_) => true,
        Err(status) => status.code() != tonic::Code::Unavailable,
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn numbers_toml(args: &BenchArgs) -> String {
    let mut out = String::from("numbers = [\n");
    for i in 0..args.numbers {
        let _ = writeln!(
            out,
            "  {{ number = \"{}\", area_code = \"{}\" }},",
            pool_number(i),
            area_code(i % args.areas)
        );
    }
    out.push_str("]\n");
    out
}

fn sim_config(args: &BenchArgs) -> String {
    let mode = match args.mode {
        BenchMode::X => "AXB", // the direct baseline of an X-mode run (unused by the daemon)
        m => m.as_config(),
    };
    format!(
        "[auth]\nmax_failures = 1000000\n\n[[apps]]\napp_key = \"{}\"\napp_secret = \"{}\"\n\
         mode = \"{mode}\"\nmax_bindings_per_x = {}\nextension_digits = 4\n{}",
        args.app_key,
        args.app_secret,
        args.max_bindings_per_x,
        numbers_toml(args)
    )
}

/// The daemon's config: listening on `port`, its store in `dir/store` unless --store says.
pub(super) fn daemon_config(args: &BenchArgs, port: u16, dir: &Path, sim_url: &str) -> String {
    // 0: leave `burst` to the daemon's default (a tenth of the rate).
    let burst = if args.app_burst == 0 {
        String::new()
    } else {
        format!("burst = {}\n", args.app_burst)
    };
    let upstream = if args.mode == BenchMode::X {
        String::new()
    } else {
        format!(
            "base_url = \"{sim_url}\"\napp_key = \"{}\"\napp_secret = \"{}\"\n\
             rate_per_second = {}\n{burst}timeout_ms = 10000\n",
            args.app_key, args.app_secret, args.app_rate
        )
    };
    let store = args.store.clone().unwrap_or_else(|| dir.join("store"));
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_delay_seconds = 0\nshutdown_grace_seconds = 2\n\
         max_request_wait_ms = {}\nmax_connections = {}\n\n[store]\npath = \"{}\"\n\n\
         [expiry]\nskew_grace_seconds = {}\n\n\
         [[apps]]\nname = \"{}\"\nmode = \"{}\"\n{upstream}max_bindings_per_x = {}\n\
         extension_digits = 4\ncool_down_seconds = 0\n{}",
        args.deadline_ms,
        // Each client has its own connection; the preload and the watch add a few more.
        (2 * args.concurrency).max(1000) + 64,
        store.display(),
        args.skew_grace_seconds,
        args.app,
        args.mode.as_config(),
        args.max_bindings_per_x,
        numbers_toml(args)
    )
}

fn http() -> reqwest::Client {
    xpool::upstream::http_client()
}

/// Sets the simulator's latency and rate-limit faults for the app.
pub async fn set_sim_faults(sim_url: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let mut body = serde_json::json!({
        "app_key": args.app_key,
        "latency_ms": args.sim_latency_ms,
    });
    if args.sim_rps_limit > 0 {
        body["rps_limit"] = args.sim_rps_limit.into();
    }
    let resp = http()
        .post(format!("{sim_url}/sim/faults"))
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("POST /sim/faults answered {}", resp.status());
    }
    Ok(())
}

/// The simulator's statistics for the app (`{"requests", "by_code"}`).
pub async fn sim_stats(sim_url: &str, app_key: &str) -> Option<Value> {
    let url = format!("{sim_url}/sim/stats?app_key={app_key}");
    let resp = http().get(url).send().await.ok()?;
    resp.json().await.ok()
}

/// Reads /proc/<pid>/stat and /status. Clock ticks are taken as 100 per second (Linux's
/// USER_HZ on every common platform).
pub fn read_proc(pid: &str) -> Sample {
    let mut s = Sample::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name, which is in parentheses and may contain spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
            s.cpu_s = (ticks(11) + ticks(12)) as f64 / 100.0;
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let kib = || {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                s.rss_kib = kib();
            } else if line.starts_with("VmHWM:") {
                s.hwm_kib = kib();
            }
        }
    }
    s
}
