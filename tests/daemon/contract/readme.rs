//! The README's commands work as written. Its top block says how to start the daemon on a
//! fresh machine (`cargo run -- serve`): the built binary runs with those arguments, no config,
//! in an empty working directory. Then every command of the "Calling it" block runs in order
//! through `sh`, with grpcurl from the test's Python environment (`tools.rs`), and must exit 0
//! and print what the README's `# ->` comments show; beyond those, what each call answers is
//! checked against the calls before it (GetBinding finds the Bind's binding, ListBindings lists
//! it, ...). The block is read from README.md on every run, so the test follows its edits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::Value;
use xpool::config::Config;

use super::shell::{Step, sh_block, shown_pairs, steps, words};
use super::tools::{output, python_tools, said};
use crate::support::*;

const CALLING_IT: &str = "## Calling it";
/// One README command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_readme_commands_run_as_written_against_a_fresh_serve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let serve_args = top_commands(&readme);
    let section = &readme[readme.find(CALLING_IT).expect("a Calling it section")..];
    let prose = &section[..section.find("```sh").unwrap()];
    assert!(
        prose.contains(&format!("`cargo run -- {}`", serve_args.join(" "))),
        "\"{CALLING_IT}\" names the command of the README's top block"
    );
    let block = steps(sh_block(&readme, Some(CALLING_IT)));
    let tools = python_tools();

    // The README's address is the embedded default's; if another process holds it on this
    // machine, the daemon listens on a free port instead and the commands are pointed there.
    let readme_addr = Config::embedded_default(Vec::new())
        .unwrap()
        .server
        .listen
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let _dump = LogDump(dir.path().to_path_buf());
    let (mut daemon, addr) = serve(dir.path(), &serve_args, &readme_addr).await;
    assert!(
        dir.path().join("xpool-data").is_dir(),
        "the store is ./xpool-data"
    );

    let mut seen = Seen::default();
    for step in &block {
        let command = step.command.replace(&readme_addr, &addr);
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&command)
            .current_dir(dir.path())
            .env("PATH", tools.search_path());
        let out = output(&step.command, &mut cmd, COMMAND_TIMEOUT).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README command failed ({}):\n{command}\n{}",
            out.status,
            said(&out)
        );
        seen.check(step, &readme_addr, &stdout);
    }
    let ran: BTreeSet<&str> = seen.methods.iter().map(String::as_str).collect();
    for method in ["Bind", "GetBinding", "ListBindings", "Unbind"] {
        assert!(
            ran.contains(method),
            "the README shows {method}: ran {ran:?}"
        );
    }

    stop(&mut daemon).await;
}

/// The README's top block is `cargo run -- serve` and `cargo test`; the arguments of the first.
fn top_commands(readme: &str) -> Vec<String> {
    let top: Vec<Vec<String>> = steps(sh_block(readme, None))
        .iter()
        .map(|s| words(&s.command))
        .collect();
    assert_eq!(
        top,
        [vec!["cargo", "run", "--", "serve"], vec!["cargo", "test"]],
        "the README's top commands"
    );
    top[0][3..].to_vec()
}

/// Starts the built binary with `args` (which start with `serve`) in `dir`; the child and its
/// address (`host:port`) once it serves.
async fn serve(dir: &Path, args: &[String], readme_addr: &str) -> (tokio::process::Child, String) {
    let log = dir.join("daemon.log");
    let mut cmd = xpool_serve(&log);
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    cmd.args(&args[1..]).current_dir(dir);
    if std::net::TcpListener::bind(readme_addr).is_err() {
        eprintln!("{readme_addr} is taken on this machine: the daemon listens on a free port");
        cmd.env("XPOOL__SERVER__LISTEN", "127.0.0.1:0");
    }
    let callbacks = xpool::config::EMBEDDED_CALLBACKS_LISTEN;
    if std::net::TcpListener::bind(callbacks).is_err() {
        eprintln!("{callbacks} is taken on this machine: the push receiver takes a free port");
        cmd.env("XPOOL__CALLBACKS__LISTEN", "127.0.0.1:0");
    }
    let mut child = cmd.spawn().expect("spawning the xpool binary");
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("`xpool serve` exited during start-up ({status})");
        }
        if let Some(addr) = listening_addr(&log) {
            break addr;
        }
        assert!(Instant::now() < deadline, "no listening address logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let exited = || child.try_wait().unwrap();
    if let Err(status) = wait_serving(&addr, left, exited).await {
        panic!("`xpool serve` exited during start-up ({status})");
    }
    let addr = addr.trim_start_matches("http://").to_owned();
    (child, addr)
}

/// SIGTERM, and a clean exit within the grace period.
async fn stop(daemon: &mut tokio::process::Child) {
    let pid = daemon.id().expect("still running");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(STOP_TIMEOUT, daemon.wait())
        .await
        .expect("the daemon stops within the grace period")
        .unwrap();
    assert!(status.success(), "the daemon's exit: {status}");
}

/// What the README's calls did so far, to check each answer against.
#[derive(Debug, Default)]
struct Seen {
    /// `(app, request_id)` → binding id, from the Binds.
    bound: BTreeMap<(String, String), String>,
    /// Binding ids released by an Unbind.
    released: BTreeSet<String>,
    /// The apps the calls named.
    apps: BTreeSet<String>,
    /// The methods called, e.g. `Bind`.
    methods: Vec<String>,
}

impl Seen {
    /// Checks one command's output: what its `# ->` comment shows, then what the call itself
    /// implies.
    fn check(&mut self, step: &Step, readme_addr: &str, stdout: &str) {
        let words = words(&step.command);
        let what = &step.command;
        if words.first().map(String::as_str) != Some("grpcurl") {
            return;
        }
        assert!(
            words.iter().any(|w| w == readme_addr),
            "{what}: calls {readme_addr}"
        );
        let payload: Value = match words.iter().position(|w| w == "-d") {
            Some(i) => serde_json::from_str(&words[i + 1])
                .unwrap_or_else(|e| panic!("{what}: -d is not JSON: {e}")),
            None => Value::Null,
        };
        let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let app = field(&payload, "app");
        if !app.is_empty() {
            self.apps.insert(app.clone());
        }
        let Some((_, method)) = words.last().and_then(|w| w.split_once('/')) else {
            return self.check_listing(&words, stdout);
        };
        self.methods.push(method.to_owned());
        let answer: Value = serde_json::from_str(stdout)
            .unwrap_or_else(|e| panic!("{what}: the answer is not JSON ({e}):\n{stdout}"));
        for (key, value) in shown_pairs(&step.expected) {
            assert_eq!(
                answer[&key], value,
                "{what}: the README shows {key}: {value}"
            );
        }
        let binding_id = field(&answer, "bindingId");
        match method {
            "Bind" => {
                assert!(!binding_id.is_empty(), "{what}: {answer}");
                let key = (app, field(&payload, "request_id"));
                self.bound.insert(key, binding_id);
            }
            "GetBinding" => {
                let key = (app, field(&payload, "request_id"));
                let made = self
                    .bound
                    .get(&key)
                    .expect("the README looks up its own Bind");
                assert_eq!(&binding_id, made, "{what}: finds the binding its Bind made");
            }
            "ListBindings" => {
                let listed: BTreeSet<String> = answer["bindings"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: no bindings: {answer}"))
                    .iter()
                    .map(|b| field(b, "bindingId"))
                    .collect();
                for ((bound_app, _), id) in &self.bound {
                    if *bound_app == app && !self.released.contains(id) {
                        assert!(listed.contains(id), "{what}: lists {id}: {answer}");
                    }
                }
            }
            "Unbind" => {
                assert_eq!(answer["state"], "BINDING_STATE_RELEASED", "{what}");
                self.released.insert(binding_id);
            }
            "ListApps" => {
                let names: BTreeSet<String> = answer["apps"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: no apps: {answer}"))
                    .iter()
                    .map(|a| field(a, "name"))
                    .collect();
                for mode in ["ax", "axb", "axe", "axyb", "x"] {
                    let demo = format!("demo-{mode}");
                    assert!(names.contains(&demo), "{what}: lists {demo}: {answer}");
                }
            }
            "GetPoolStats" => assert_eq!(field(&answer, "app"), app, "{what}"),
            "Check" => assert_eq!(answer["status"], "SERVING", "{what}"),
            _ => {}
        }
    }

    /// `grpcurl … list` lists every service of the API; `describe S` describes it.
    fn check_listing(&self, words: &[String], stdout: &str) {
        match words.iter().position(|w| w == "list" || w == "describe") {
            Some(i) if words[i] == "list" => {
                for service in api_services() {
                    assert!(stdout.contains(&service), "list shows {service}:\n{stdout}");
                }
            }
            Some(i) => {
                let service = &words[i + 1];
                let shown = format!("{service} is a service");
                assert!(stdout.contains(&shown), "describe {service}:\n{stdout}");
            }
            None => panic!("a grpcurl command with no method: {words:?}"),
        }
    }
}

/// `xpool.v1.BindingService`, … from the descriptor set.
fn api_services() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(xpool::grpc::pb::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect()
}
