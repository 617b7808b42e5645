//! The example clients of `examples/` against a live `xpool serve` child over TLS with a
//! bearer token, as a user would run them: each Binds, looks the binding up and Unbinds,
//! printing one line per call, and a refused call prints its gRPC code and ErrorInfo reason.
//! Python always runs (tools from `tools.rs`), and its committed stubs must be what
//! `examples/generate.sh` makes now; Go and Java run where their toolchains are installed
//! (examples/README.md says how) and are skipped with a note elsewhere.

mod go;
mod java;
mod python;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use super::tools::said;
use crate::support::certs::Ca;
use crate::support::*;

/// The app the token may bind, and another one it may not.
const APP: &str = "rides";
const OTHER_APP: &str = "drivers";
/// The token the clients send (scope `bind:rides`).
const TOKEN: &str = "xpool_examples-token-0123456789abcdef";
/// One run of a client (a JVM start included), or one build step.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// How the clients reach the daemon: plain TLS, or mutual TLS with a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Server,
    Mutual,
}

/// `xpool serve` as a child, over TLS, with `[auth]` holding one token scoped `bind:rides`, in
/// front of the simulator; AXB `rides` and AX `drivers`. Killed when dropped.
struct Served {
    /// The child; killed on drop (`kill_on_drop`).
    proc: tokio::process::Child,
    /// `https://127.0.0.1:PORT`.
    addr: String,
    ca_file: PathBuf,
    /// A client certificate and key (PEM files) the CA signed; only a mutual-TLS daemon asks.
    client: (PathBuf, PathBuf),
    tls: Tls,
    /// Serves the platform for the daemon; stopped on drop.
    _sim: Sim,
    /// Prints the daemon's log if the test fails; dropped before the directory.
    _logs: LogDump,
    /// Holds the config, certificates, store and log; removed on drop, after the child.
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(tls: Tls) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let ca = Ca::new("xpool examples CA");
        let (cert, key) = ca.sign("xpool-server");
        let (client_cert, client_key) = ca.sign("example-client");
        for (name, text) in [
            ("ca.pem", &ca.pem),
            ("server.pem", &cert),
            ("server.key", &key),
            ("client.pem", &client_cert),
            ("client.key", &client_key),
        ] {
            std::fs::write(path(name), text).unwrap();
        }
        let client_ca = match tls {
            Tls::Server => String::new(),
            Tls::Mutual => format!("client_ca_file = {:?}\n", path("ca.pem")),
        };
        let section = format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n{client_ca}\
             [auth]\n[[auth.tokens]]\nname = \"examples\"\ntoken_sha256 = \"{}\"\n\
             scopes = [\"bind:{APP}\"]\n",
            path("server.pem"),
            path("server.key"),
            xpool::auth::sha256_hex(TOKEN.as_bytes()),
        );
        let setup = Setup::standard()
            .only(&[APP, OTHER_APP])
            .daemon_section(&section);
        let sim = Sim::start_with(&setup).await;
        std::fs::write(
            path("xpool.toml"),
            setup.daemon_toml("127.0.0.1:0", &sim.base_url, &path("store")),
        )
        .unwrap();
        let log = path("daemon.log");
        let proc = xpool_serve(&log)
            .arg("--config")
            .arg(path("xpool.toml"))
            .spawn()
            .expect("spawning the xpool binary");
        let mut served = Served {
            proc,
            addr: String::new(),
            ca_file: path("ca.pem"),
            client: (path("client.pem"), path("client.key")),
            tls,
            _sim: sim,
            _logs: LogDump(dir.path().to_path_buf()),
            _dir: dir,
        };
        served.addr = served.wait_listening(&log).await;
        within("health over TLS", async {
            loop {
                if let Ok(channel) = served.channel().await
                    && HealthClient::new(channel)
                        .check(HealthCheckRequest::default())
                        .await
                        .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        served
    }

    /// `https://127.0.0.1:PORT` from the log; panics with the log if the daemon exits first.
    async fn wait_listening(&mut self, log: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = || std::fs::read_to_string(log).unwrap_or_default();
            if let Some(status) = self.proc.try_wait().unwrap() {
                panic!("xpool serve exited during start-up ({status}):\n{}", text());
            }
            if let Some(addr) = listening_addr(log) {
                return addr.replace("http://", "https://");
            }
            assert!(Instant::now() < deadline, "no listening line:\n{}", text());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A channel of the test's own, as the clients connect.
    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let ca = std::fs::read_to_string(&self.ca_file).unwrap();
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if self.tls == Tls::Mutual {
            let cert = std::fs::read_to_string(&self.client.0).unwrap();
            let key = std::fs::read_to_string(&self.client.1).unwrap();
            config = config.identity(Identity::from_pem(cert, key));
        }
        Channel::from_shared(self.addr.clone())
            .unwrap()
            .tls_config(config)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    }

    /// The binding as the daemon has it now, asked with the token.
    async fn binding(&self, binding_id: &str) -> pb::Binding {
        let mut client = BindingServiceClient::new(self.channel().await.unwrap());
        let mut request = tonic::Request::new(pb::GetBindingRequest::by_id(binding_id));
        let bearer: MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
        request.metadata_mut().insert("authorization", bearer);
        rpc("GetBinding", client.get_binding(request))
            .await
            .unwrap()
    }

    /// The flags every client takes to reach this daemon, and to Bind `app` with request id
    /// `request_id`.
    fn flags(&self, app: &str, request_id: &str, i: u32) -> Vec<String> {
        let mut flags = vec![
            "--server".to_owned(),
            self.addr.clone(),
            "--ca-file".to_owned(),
            self.ca_file.display().to_string(),
        ];
        if self.tls == Tls::Mutual {
            flags.extend([
                "--cert-file".to_owned(),
                self.client.0.display().to_string(),
                "--key-file".to_owned(),
                self.client.1.display().to_string(),
            ]);
        }
        flags.extend(
            [
                ("--app", app),
                ("--party-a", &party(i)),
                ("--party-b", &party(i + 1)),
                ("--request-id", request_id),
            ]
            .map(|(flag, value)| [flag.to_owned(), value.to_owned()])
            .concat(),
        );
        flags
    }
}

/// A client's line for `call` (`Bind: binding_id=… x_number=… state=… expire_time=…`) as
/// `(key, value)` pairs; panics, with all it said, if it printed none.
fn line<'a>(out: &'a Output, call: &str) -> Vec<(&'a str, &'a str)> {
    let stdout = std::str::from_utf8(&out.stdout).unwrap();
    let prefix = format!("{call}: ");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {call} line\n{}", said(out)));
    line.split(' ')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect()
}

fn field<'a>(line: &[(&str, &'a str)], key: &str) -> &'a str {
    line.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A run with the token: exit 0, Bind and GetBinding show the same ACTIVE binding on one of
/// the app's numbers, Unbind shows it RELEASED, and the daemon has it RELEASED too.
async fn assert_bound_and_released(served: &Served, out: &Output, request_id: &str) {
    assert!(out.status.success(), "{}", said(out));
    let bound = line(out, "Bind");
    let got = line(out, "GetBinding");
    let released = line(out, "Unbind");
    let id = field(&bound, "binding_id");
    let x = field(&bound, "x_number");
    assert!(!id.is_empty(), "{}", said(out));
    let setup = Setup::standard();
    assert!(
        setup.get(APP).numbers.iter().any(|n| n.number == x),
        "x_number {x} is not one of {APP}'s\n{}",
        said(out)
    );
    assert_eq!(
        field(&bound, "state"),
        "BINDING_STATE_ACTIVE",
        "{}",
        said(out)
    );
    assert_ne!(field(&bound, "expire_time"), "never", "{}", said(out));
    for (call, l, state) in [
        ("GetBinding", &got, "BINDING_STATE_ACTIVE"),
        ("Unbind", &released, "BINDING_STATE_RELEASED"),
    ] {
        assert_eq!(
            (
                field(l, "binding_id"),
                field(l, "x_number"),
                field(l, "state")
            ),
            (id, x, state),
            "{call}\n{}",
            said(out)
        );
    }
    let now = served.binding(id).await;
    assert_eq!(
        (now.state(), now.x_number.as_str(), now.request_id.as_str()),
        (pb::BindingState::Released, x, request_id)
    );
}

/// A refused run: exit 1, no binding printed, and on stderr the call, the gRPC code and the
/// ErrorInfo reason (and `metadata`, `key=value` each).
fn assert_refused(out: &Output, code: &str, reason: &str, metadata: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", said(out));
    assert!(out.stdout.is_empty(), "{}", said(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let wanted = [
        "Bind failed:".to_owned(),
        format!("code={code} "),
        format!("reason={reason} "),
        "domain=xpool".to_owned(),
    ];
    for part in wanted
        .iter()
        .map(String::as_str)
        .chain(metadata.iter().copied())
    {
        assert!(
            stderr.contains(part),
            "no {part:?} on stderr\n{}",
            said(out)
        );
    }
}

/// The committed stubs under `committed` are the files `generate.sh` (which said `out`) just
/// wrote under `generated`, byte for byte; else the message says to run `how`.
fn assert_same_files(committed: &Path, generated: &Path, how: &str, out: &Output) {
    let dir = committed
        .strip_prefix(root())
        .unwrap_or(committed)
        .display();
    let committed = files(committed);
    let generated = files(generated);
    assert!(
        !generated.is_empty(),
        "generate.sh made no stubs\n{}",
        said(out)
    );
    let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&generated),
        "the committed stubs are not the files generate.sh makes: run {how}"
    );
    for (name, text) in &generated {
        assert!(committed[name] == *text, "{dir}/{name} is stale: run {how}");
    }
}

/// Every file under `dir` by its path relative to `dir`, but Python's byte-code caches.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_name() == "__pycache__" {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                found.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}
