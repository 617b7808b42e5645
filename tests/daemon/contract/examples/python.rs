//! `examples/python/client.py` with the pinned grpcio of `tools.rs`, and its committed stubs
//! checked against what `examples/generate.sh` makes now.

use std::process::Output;

use super::super::tools::{PyTools, output, python_tools, said};
use super::*;

/// Runs the example client with `flags`, the token in `XPOOL_TOKEN` if given.
async fn client(tools: &PyTools, flags: &[String], token: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(&tools.python);
    cmd.arg(root().join("examples/python/client.py"))
        .args(flags)
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("XPOOL_TOKEN");
    if let Some(token) = token {
        cmd.env("XPOOL_TOKEN", token);
    }
    output("examples/python/client.py", &mut cmd, RUN_TIMEOUT).await
}

#[tokio::test]
async fn the_python_example_binds_over_tls_with_a_token_and_explains_refusals() {
    let tools = python_tools();
    let served = Served::start(Tls::Server).await;

    let flags = served.flags(APP, "py-example-1", 1);
    let out = client(tools, &flags, Some(TOKEN)).await;
    assert_bound_and_released(&served, &out, "py-example-1").await;

    let out = client(tools, &served.flags(APP, "py-example-2", 3), None).await;
    assert_refused(&out, "UNAUTHENTICATED", "UNAUTHENTICATED", &[]);

    // The token may bind rides only: the ErrorInfo's metadata names the scope needed.
    let out = client(
        tools,
        &served.flags(OTHER_APP, "py-example-3", 5),
        Some(TOKEN),
    )
    .await;
    let scope = format!("scope=bind:{OTHER_APP}");
    assert_refused(
        &out,
        "PERMISSION_DENIED",
        "SCOPE_REQUIRED",
        &[&scope, "caller=examples"],
    );
}

#[tokio::test]
async fn the_python_example_presents_a_client_certificate_for_mutual_tls() {
    let tools = python_tools();
    let served = Served::start(Tls::Mutual).await;
    let out = client(tools, &served.flags(APP, "py-mtls-1", 1), Some(TOKEN)).await;
    assert_bound_and_released(&served, &out, "py-mtls-1").await;
}

#[tokio::test]
async fn the_committed_python_stubs_are_what_generate_sh_makes() {
    let tools = python_tools();
    let fresh = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(root().join("examples/generate.sh"));
    cmd.args(["--out"])
        .arg(fresh.path())
        .arg("python")
        .env("PYTHON", &tools.python);
    let out = output("examples/generate.sh python", &mut cmd, RUN_TIMEOUT).await;
    assert!(out.status.success(), "{}", said(&out));

    assert_same_files(
        &root().join("examples/python/xpool"),
        &fresh.path().join("python/xpool"),
        "examples/generate.sh python (with grpcio-tools as pinned in \
         tests/daemon/contract/requirements.txt)",
        &out,
    );
}

#[test]
fn the_python_example_pins_what_ci_runs_it_with() {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).unwrap();
    let pins = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let ci = pins(&read("tests/daemon/contract/requirements.txt"));
    let example = pins(&read("examples/python/requirements.txt"));
    assert!(!example.is_empty());
    for pin in &example {
        assert!(
            ci.contains(pin),
            "examples/python/requirements.txt pins {pin}, which CI does not run the example \
             with (tests/daemon/contract/requirements.txt)"
        );
    }
}
