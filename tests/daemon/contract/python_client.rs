//! A Python client generated from `proto/` (grpcio-tools) works against the daemon: Bind,
//! GetBinding, ListBindings and Unbind, and errors whose `google.rpc.Status` details decode with
//! grpcio-status. The calls and checks are in `client.py` beside this file.

use std::path::Path;
use std::time::Duration;

use xpool::store::faults::{self, Error, Point, Times};

use super::tools::{PyTools, output, python_tools, said};
use crate::support::*;

/// One run of the client: generating the stubs, or a phase of `client.py`.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_generated_python_client_calls_the_daemon_and_decodes_its_errors() {
    let tools = python_tools();
    let stubs = tempfile::tempdir().unwrap();
    generate_stubs(tools, stubs.path()).await;

    let d = Daemon::start().await;
    // The unknown-app refusal must carry ErrorInfo reason UNKNOWN_APP.
    client(tools, stubs.path(), &d, &["calls", "--require-error-info"]).await;

    let store = d.dir.path().join("store");
    faults::set(&store, Point::LogWrite, Error::Full, Times::Always);
    client(
        tools,
        stubs.path(),
        &d,
        &["storage-error", "--reason", "STORAGE_FULL"],
    )
    .await;
    faults::clear(&store);
    wait_serving(&d.addr, Duration::from_secs(30), || None::<()>)
        .await
        .unwrap();
    d.stop().await;
}

/// `python -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT` of every
/// `.proto` file, as a Python user would generate them.
async fn generate_stubs(tools: &PyTools, out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut protos: Vec<String> = std::fs::read_dir(root.join("proto/xpool/v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".proto"))
        .map(|name| format!("xpool/v1/{name}"))
        .collect();
    protos.sort();
    let mut cmd = tokio::process::Command::new(&tools.python);
    cmd.current_dir(root)
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(&protos);
    let out = output("grpc_tools.protoc", &mut cmd, RUN_TIMEOUT).await;
    assert!(
        out.status.success(),
        "generating the Python stubs failed: {}\n{}",
        out.status,
        said(&out)
    );
}

/// Runs `client.py` with `args` against the daemon's `rides` app (AXB); it must exit 0.
async fn client(tools: &PyTools, stubs: &Path, d: &Daemon, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/daemon/contract/client.py");
    let addr = d.addr.trim_start_matches("http://");
    let mut cmd = tokio::process::Command::new(&tools.python);
    cmd.arg(&script)
        .arg("--stubs")
        .arg(stubs)
        .args(["--addr", addr, "--app", "rides"])
        .args(args);
    let out = output(&format!("client.py {args:?}"), &mut cmd, RUN_TIMEOUT).await;
    assert!(
        out.status.success(),
        "client.py {args:?} failed: {}\n{}",
        out.status,
        said(&out)
    );
}
