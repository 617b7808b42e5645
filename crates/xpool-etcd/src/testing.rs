//! A harness that runs real etcd clusters for tests (feature `testing`): N members of
//! `/usr/bin/etcd` (Debian's `etcd-server`) as child processes on free 127.0.0.1 ports, with
//! data in a temporary directory (on tmpfs when `/dev/shm` exists: fsync is then free). Members
//! can be killed, frozen (SIGSTOP), thawed and restarted. Dropping the cluster SIGKILLs every
//! member after a short SIGTERM grace: a member whose peers are gone can hang on SIGTERM.
//!
//! When etcd is not installed, [`EtcdCluster::start`] prints [`SKIP_MESSAGE`] and returns
//! `None`, and the test returns without asserting; every other failure panics.

use std::{
    fmt::Write as _,
    fs::File,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use crate::{Client, ClientConfig};

/// The line a test prints when it skips for want of etcd.
pub const SKIP_MESSAGE: &str = "etcd not installed (apt-get install etcd-server): skipping";

/// How long a cluster may take to elect a leader and serve (a loaded 2-core machine is slow).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed member gets before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(300);

/// The etcd binary: `/usr/bin/etcd`, else `etcd` on `PATH`.
pub fn etcd_binary() -> Option<PathBuf> {
    let usr = PathBuf::from("/usr/bin/etcd");
    if usr.is_file() {
        return Some(usr);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
}

/// A running etcd cluster; see the module docs.
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    /// Data directories and logs; deleted on drop, after the members are dead.
    dir: TempDir,
    members: Vec<Member>,
    /// Extra flags given to every member.
    args: Vec<String>,
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// The running process; `None` once killed.
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `members` members and waits until every one serves linearizable reads. `None` (after
    /// printing [`SKIP_MESSAGE`]) only when etcd is not installed; panics if the cluster does
    /// not come up (after a few tries on fresh ports, with the last try's logs).
    pub async fn start(members: usize) -> Option<Self> {
        Self::start_with_args(members, &[]).await
    }

    /// [`start`](Self::start) with extra flags for every member (`--auth-token-ttl=1`, …).
    pub async fn start_with_args(members: usize, args: &[&str]) -> Option<Self> {
        let Some(binary) = etcd_binary() else {
            println!("{SKIP_MESSAGE}");
            return None;
        };
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let mut failure = String::new();
        for attempt in 1..=3 {
            let cluster = Self::spawn(binary.clone(), members, args.clone());
            match cluster.wait_healthy(START_TIMEOUT).await {
                Ok(()) => return Some(cluster),
                Err(why) => {
                    failure = format!("try {attempt}: {why}\n{}", cluster.logs());
                    eprintln!("etcd cluster did not start, retrying on fresh ports: {why}");
                }
            }
        }
        panic!("etcd cluster did not start: {failure}");
    }

    fn spawn(binary: PathBuf, count: usize, args: Vec<String>) -> Self {
        let shm = Path::new("/dev/shm");
        let builder = tempfile::Builder::new()
            .prefix("xpool-etcd-")
            .tempdir_in(shm);
        let dir = builder
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary directory");
        // Hold every listener until all ports are chosen, so that they differ.
        let listeners: Vec<TcpListener> = (0..count * 2)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port"))
            .collect();
        let port = |i: usize| listeners[i].local_addr().expect("a bound address").port();
        let members: Vec<Member> = (0..count)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: port(2 * i),
                peer_port: port(2 * i + 1),
                child: None,
            })
            .collect();
        drop(listeners);
        let mut cluster = Self {
            binary,
            dir,
            members,
            args,
        };
        for i in 0..count {
            cluster.launch(i);
        }
        cluster
    }

    fn launch(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let member = &self.members[i];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", member.name)))
            .expect("the member's log file");
        let child = Command::new(&self.binary)
            .arg(format!("--name={}", member.name))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join(&member.name).display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg(format!(
                "--initial-cluster-token={}",
                self.dir.path().display()
            ))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the member's log file"))
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i].child = Some(child);
    }

    /// The client URL of every member, in order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// A client configuration for every member, with test-sized deadlines.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.endpoints());
        config.request_timeout = Duration::from_secs(5);
        config.attempt_timeout = Duration::from_secs(1);
        config.connect_timeout = Duration::from_secs(1);
        config.keep_alive_timeout = Duration::from_secs(2);
        config
    }

    /// A client for every member.
    pub fn client(&self) -> Client {
        Client::new(self.config()).expect("a valid client configuration")
    }

    /// SIGKILLs member `i` (no-op if it is not running).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes member `i` (SIGSTOP): its sockets stay open but it answers nothing.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, Signal::STOP);
    }

    /// Thaws member `i` (SIGCONT).
    pub fn cont(&mut self, i: usize) {
        self.signal(i, Signal::CONT);
    }

    /// Starts member `i` again on its data directory (killing it first if it runs).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
    }

    fn signal(&self, i: usize, signal: Signal) {
        if let Some(child) = &self.members[i].child {
            kill_process(Pid::from_child(child), signal).expect("signal an etcd member");
        }
    }

    /// Waits until every running member knows a leader and serves a linearizable read.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut clients = Vec::new();
        for &i in &running {
            let mut config = ClientConfig::new([self.endpoint(i)]);
            config.request_timeout = Duration::from_millis(500);
            config.connect_timeout = Duration::from_millis(500);
            clients.push((i, Client::new(config).map_err(|e| e.to_string())?));
        }
        let mut pending = clients;
        loop {
            let mut still = Vec::new();
            let mut last = String::new();
            for (i, client) in pending {
                match client.get("xpool-etcd-health").await {
                    Ok(_) => {}
                    Err(e) => {
                        last = format!("member {i}: {e}");
                        still.push((i, client));
                    }
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("not healthy after {timeout:?}: {last}"));
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the member that is the raft leader, as the running members report it.
    pub async fn leader(&self) -> Option<usize> {
        let statuses = self.client().status_all().await;
        let ids: Vec<Option<u64>> = statuses
            .iter()
            .map(|(_, s)| s.as_ref().ok().map(|s| s.member_id))
            .collect();
        let leader = statuses
            .iter()
            .find_map(|(_, s)| s.as_ref().ok().map(|s| s.leader))?;
        ids.iter().position(|&id| id == Some(leader))
    }

    /// Every member's log so far, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for member in &self.members {
            let path = self.dir.path().join(format!("{}.log", member.name));
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let _ = writeln!(out, "--- {} (last lines) ---", member.name);
            for line in tail.iter().rev() {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        let mut children: Vec<Child> = self
            .members
            .iter_mut()
            .filter_map(|m| m.child.take())
            .collect();
        for child in &children {
            let pid = Pid::from_child(child);
            let _ = kill_process(pid, Signal::CONT);
            let _ = kill_process(pid, Signal::TERM);
        }
        let give_up = std::time::Instant::now() + TERM_GRACE;
        while std::time::Instant::now() < give_up
            && children
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
