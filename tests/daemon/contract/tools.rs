//! The Python tools the contract tests drive the daemon with: grpcio, grpcio-status and
//! grpcio-tools for a client generated from `proto/`, and grpcurl for the README's commands, at
//! the versions pinned in `requirements.txt` beside this file.
//!
//! The first test that needs them makes a virtual environment under `target/tmp/` with the
//! machine's `python3` and pip-installs that file into it (about 20 s); later runs find it ready
//! (a marker file names what it was built from), so the tests take seconds. `XPOOL_TEST_PYTHON`
//! names an interpreter that already has the packages (and grpcurl beside it or on `PATH`)
//! instead: nothing is installed then. Without Python the tests fail, saying so; they never
//! pass without having run.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The pinned packages, one `name==version` a line.
const REQUIREMENTS: &str = include_str!("requirements.txt");

/// Longest a pip install may take before the test gives up on it.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// A Python interpreter with the packages of `requirements.txt`, and grpcurl.
#[derive(Debug)]
pub struct PyTools {
    /// The interpreter.
    pub python: PathBuf,
    /// Directories to put first on `PATH` so that `grpcurl` is found (the environment's `bin`).
    pub path: Vec<PathBuf>,
}

impl PyTools {
    /// `PATH` with the tools' directories first.
    pub fn search_path(&self) -> std::ffi::OsString {
        let rest = std::env::var_os("PATH").unwrap_or_default();
        let dirs = self
            .path
            .iter()
            .cloned()
            .chain(std::env::split_paths(&rest));
        std::env::join_paths(dirs).expect("PATH entries without separators")
    }
}

/// The tools, installed on first use: once per test process, and across processes (two test
/// runs at once) under a lock file. Panics, saying what is missing, when they cannot be had.
pub fn python_tools() -> &'static PyTools {
    static TOOLS: OnceLock<Result<PyTools, String>> = OnceLock::new();
    match TOOLS.get_or_init(provision) {
        Ok(tools) => tools,
        Err(why) => panic!("{why}"),
    }
}

fn provision() -> Result<PyTools, String> {
    if let Some(python) = std::env::var_os("XPOOL_TEST_PYTHON") {
        let python = PathBuf::from(python);
        let tools = PyTools {
            path: python.parent().map(Path::to_path_buf).into_iter().collect(),
            python,
        };
        check_tools(&tools).map_err(|e| format!("XPOOL_TEST_PYTHON: {e}"))?;
        return Ok(tools);
    }
    let version = run(Command::new("python3").arg("--version")).map_err(|e| {
        format!(
            "the contract tests need Python 3 (with its venv module and pip) as `python3`, \
             or XPOOL_TEST_PYTHON naming an interpreter that has {REQUIREMENTS_PATH}'s \
             packages: {e}"
        )
    })?;
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("contract-python");
    fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let lock = File::create(root.join("lock")).map_err(|e| format!("lock file: {e}"))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", root.display()))?;

    let built_from = format!(
        "{}{}\n{REQUIREMENTS}",
        String::from_utf8_lossy(&version.stdout),
        String::from_utf8_lossy(&version.stderr)
    );
    let venv = root.join(format!("venv-{:016x}", fnv1a(built_from.as_bytes())));
    let tools = PyTools {
        python: venv.join("bin/python"),
        path: vec![venv.join("bin")],
    };
    let marker = venv.join("xpool-built-from");
    if fs::read_to_string(&marker).ok().as_deref() == Some(built_from.as_str()) {
        return Ok(tools);
    }
    remove_other_venvs(&root, &venv);
    eprintln!(
        "contract tests: installing {REQUIREMENTS_PATH} into {} (once)",
        venv.display()
    );
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))
    .map_err(|e| format!("python3 -m venv (Debian: apt-get install python3-venv): {e}"))?;
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join(REQUIREMENTS_PATH);
    run(Command::new(&tools.python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(["--quiet", "--timeout", "60", "--requirement"])
        .arg(&requirements))
    .map_err(|e| format!("pip install -r {REQUIREMENTS_PATH}: {e}"))?;
    check_tools(&tools)?;
    fs::write(&marker, &built_from).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(tools)
}

const REQUIREMENTS_PATH: &str = "tests/daemon/contract/requirements.txt";

/// The packages import and grpcurl runs.
fn check_tools(tools: &PyTools) -> Result<(), String> {
    run(Command::new(&tools.python).args([
        "-c",
        "import grpc, grpc_status, grpc_tools.protoc, google.rpc.error_details_pb2",
    ]))?;
    run(Command::new("grpcurl")
        .arg("-version")
        .env("PATH", tools.search_path()))
    .map(drop)
    .map_err(|e| format!("grpcurl: {e}"))
}

/// Environments built from an older requirements.txt or Python: 80 MB each.
fn remove_other_venvs(root: &Path, keep: &Path) {
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        let path = entry.path();
        let is_venv = entry.file_name().to_string_lossy().starts_with("venv-");
        if is_venv && path != keep {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Runs a command to its end (within [`INSTALL_TIMEOUT`]); its output if it exits 0, else what
/// it said.
fn run(cmd: &mut Command) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        if rx.recv_timeout(INSTALL_TIMEOUT).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let out = child.wait_with_output();
    let _ = tx.send(());
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{what}: {}\n{}", out.status, said(&out)))
    }
}

/// A finished command's stdout and stderr, for a failure message.
pub fn said(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` (a tool the test drives, e.g. grpcurl or the Python client) to its end within
/// `limit`, without blocking the test's runtime; panics naming `what` if it cannot start or
/// hangs. The caller judges the exit status.
pub async fn output(what: &str, cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: still running after {limit:?}"));
    out.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"))
}

/// FNV-1a: a name for an environment that stays the same across Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
