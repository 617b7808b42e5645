//! The built `xpool` binary as a child process: `xpool serve` with a config written from a
//! [`Setup`], killed (SIGKILL) or stopped (SIGTERM) by the test, and its logs dumped when the
//! test fails.

use std::ffi::OsStr;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::grpc::{RPC_TIMEOUT, wait_serving};
use super::setup::Setup;

/// Start-up (store open + recovery) until health says SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The tests' `shutdown_grace_seconds`, plus slack for draining and flushing.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// `xpool serve` of the built binary, logging at info into `log` (stdout and stderr), with no
/// `XPOOL__` variable of the test's own environment, killed when dropped so a failing test
/// leaves no daemon behind. The caller adds its arguments and environment.
pub fn xpool_serve(log: &Path) -> tokio::process::Command {
    let out = File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"));
    cmd.arg("serve")
        .env("XPOOL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("XPOOL__") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A daemon child serving; dropping it SIGKILLs it (`kill_on_drop`), so a failing test leaves
/// none behind.
#[derive(Debug)]
pub struct DaemonProcess {
    /// The child; killed on drop.
    proc: tokio::process::Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    pub log: PathBuf,
}

impl DaemonProcess {
    /// Starts `xpool serve` over the store `dir/store`, its config and its log
    /// (`daemon-NN.log`, NN = `incarnation`) in `dir`, with `env` added to its environment, and
    /// waits until it serves. The child binds 127.0.0.1:0 itself and the test reads the bound
    /// address from its log, so no port is picked by the test and nobody can take it in
    /// between. Panics with the log if the daemon exits (refuses to start) or never serves.
    pub async fn spawn(
        dir: &Path,
        setup: &Setup,
        sim_url: &str,
        incarnation: usize,
        env: &[(&str, &OsStr)],
    ) -> DaemonProcess {
        let config = dir.join("xpool.toml");
        let text = setup.daemon_toml("127.0.0.1:0", sim_url, &dir.join("store"));
        std::fs::write(&config, text).unwrap();
        let log = dir.join(format!("daemon-{incarnation:02}.log"));
        let mut cmd = xpool_serve(&log);
        cmd.arg("--config").arg(&config).envs(env.iter().copied());
        let mut proc = cmd.spawn().expect("spawning the xpool binary");
        let pid = proc.id().expect("a running child has a pid");
        let exited = |proc: &mut tokio::process::Child| -> Option<String> {
            let status = proc.try_wait().unwrap()?;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Some(format!(
                "daemon #{incarnation} exited during start-up ({status}):\n{text}"
            ))
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Some(why) = exited(&mut proc) {
                panic!("{why}");
            }
            if let Some(addr) = listening_addr(&log) {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "daemon #{incarnation} logged no listening address within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(why) = wait_serving(&addr, left, || exited(&mut proc)).await {
            panic!("{why}");
        }
        DaemonProcess {
            proc,
            pid,
            addr,
            log,
        }
    }

    pub async fn channel(&self) -> Channel {
        tokio::time::timeout(
            RPC_TIMEOUT,
            Channel::from_shared(self.addr.clone()).unwrap().connect(),
        )
        .await
        .expect("connecting in time")
        .expect("connecting to the daemon")
    }

    /// The admin listener's port: the daemon binds `[admin] listen = "127.0.0.1:0"` itself and
    /// logs the address before it serves gRPC.
    pub async fn admin_port(&self) -> u16 {
        logged_addr(&self.log, "admin listener").await.port()
    }

    /// How the daemon ended, if it has (on its own: it was neither killed nor stopped).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.try_wait().unwrap()
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub async fn sigkill(mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.proc.kill())
            .await
            .expect("a SIGKILLed child is reaped promptly")
            .unwrap();
    }

    /// SIGTERM, then the exit status within the grace period.
    pub async fn sigterm(mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("running kill(1)");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", self.pid);
        tokio::time::timeout(STOP_TIMEOUT, self.proc.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "daemon (pid {}) did not exit within {STOP_TIMEOUT:?} of SIGTERM",
                    self.pid
                )
            })
            .unwrap()
    }
}

/// `http://127.0.0.1:PORT` from the daemon's "gRPC server listening" log line, once written.
/// Unlike [`logged_addr`] it finds the address without its `addr=`, so it reads JSON logs too
/// (`tests/daemon/logs.rs`).
pub fn listening_addr(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("gRPC") && l.contains("listening"))?;
    let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let port: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!port.is_empty()).then(|| format!("http://127.0.0.1:{port}"))
}

/// Where a listener configured on port 0 is bound: the `addr=127.0.0.1:PORT` of the first line
/// of `log` containing `marker`, waiting up to [`START_TIMEOUT`] until it is logged.
pub async fn logged_addr(log: &Path, marker: &str) -> SocketAddr {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(addr) = read_logged_addr(log, marker) {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "{} logged no {marker:?} within {START_TIMEOUT:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`logged_addr`] as the log stands now.
fn read_logged_addr(log: &Path, marker: &str) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(marker))?;
    let at = line.find("addr=127.0.0.1:")? + "addr=".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// Prints the tail of the last daemon logs (`*.log`) in a directory when the test fails; make it
/// before the directory's `TempDir`, so it is dropped first.
#[derive(Debug)]
pub struct LogDump(pub PathBuf);

impl Drop for LogDump {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs.iter().rev().take(4).rev() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "----- {} (last {} lines) -----\n{}",
                log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}
