//! Checks the files in `deploy/`: the Kubernetes manifests (parsed as YAML; the single-node
//! install and cluster mode's), every daemon config (run through the built binary's
//! `serve --check-config`), the Dockerfile and the systemd unit.
//! Nothing here starts a daemon or needs a cluster; `systemd-analyze verify` runs where it exists.

#[path = "deploy/cluster.rs"]
mod cluster;
#[path = "deploy/configs.rs"]
mod configs;
#[path = "deploy/docker.rs"]
mod docker;
#[path = "deploy/kubernetes.rs"]
mod kubernetes;
#[path = "deploy/manifests.rs"]
mod manifests;
#[path = "deploy/systemd.rs"]
mod systemd;
#[path = "deploy/wiring.rs"]
mod wiring;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `deploy/` of this checkout.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Files under `deploy/` whose name ends with one of `extensions`.
fn deploy_files(extensions: &[&str]) -> Vec<PathBuf> {
    files_under(&deploy_dir())
        .into_iter()
        .filter(|path| {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            extensions.contains(&ext)
        })
        .collect()
}

/// `path` relative to the repository root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `xpool serve --check-config --config CONFIG` with only `env` in its environment (none of
/// this process's `XPOOL__*` variables leak in).
fn check_config(config: &Path, env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xpool"))
        .args(["serve", "--check-config", "--config"])
        .arg(config)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running xpool serve --check-config")
}

/// Panics with the command's output unless it exited 0.
fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
