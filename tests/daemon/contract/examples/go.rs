//! `examples/go` built offline with Debian's Go packages (GOPATH mode over
//! /usr/share/gocode, examples/README.md lists them) and run against the daemon; its committed
//! stubs checked against what `examples/generate.sh go` makes, where the generators are the
//! versions that made them. Without those packages the tests say so and pass: `.ci/run`
//! installs no Go toolchain.

use std::path::Path;
use std::process::Output;

use super::super::tools::{output, said};
use super::*;

/// Where Debian's golang-*-dev packages put their sources.
const DEBIAN_GOCODE: &str = "/usr/share/gocode";
/// The sources the example imports, with the Debian packages that hold them.
const GO_SOURCES: &[(&str, &str)] = &[
    ("google.golang.org/grpc", "golang-google-grpc-dev"),
    ("google.golang.org/protobuf", "golang-google-protobuf-dev"),
    (
        "google.golang.org/genproto/googleapis/rpc/errdetails",
        "golang-google-genproto-dev",
    ),
    (
        "github.com/golang/protobuf",
        "golang-github-golang-protobuf-1-5-dev",
    ),
];
/// What `--version` of each generator says, for the versions that made the committed stubs.
const GENERATORS: &[(&str, &str)] = &[
    ("protoc", "libprotoc 3.21.12"),
    ("protoc-gen-go", "protoc-gen-go v1.28.1"),
    ("protoc-gen-go-grpc", "protoc-gen-go-grpc 1.0"),
];

/// What `--version` says, if the tool runs.
fn version(tool: &str) -> Option<String> {
    let out = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why the Go example cannot be built here, if it cannot.
fn missing() -> Option<String> {
    let go = std::process::Command::new("go").arg("version").output();
    if !go.is_ok_and(|out| out.status.success()) {
        return Some("no `go` on PATH (Debian: apt-get install golang-go)".into());
    }
    let absent: Vec<&str> = GO_SOURCES
        .iter()
        .filter(|(import, _)| !Path::new(DEBIAN_GOCODE).join("src").join(import).is_dir())
        .map(|(_, package)| *package)
        .collect();
    (!absent.is_empty()).then(|| {
        format!(
            "Go sources missing under {DEBIAN_GOCODE} (apt-get install {})",
            absent.join(" ")
        )
    })
}

/// Builds the example into `out_dir/client` offline: GOPATH mode, the stubs linked in under
/// their go_package path, everything else from Debian's sources.
async fn build(out_dir: &Path) -> std::path::PathBuf {
    let gopath = out_dir.join("gopath");
    let stubs = gopath.join("src/github.com/xpool-dev/xpool/gen");
    std::fs::create_dir_all(&stubs).unwrap();
    std::os::unix::fs::symlink(root().join("examples/go/gen"), stubs.join("go")).unwrap();
    let binary = out_dir.join("client");
    let search = std::env::join_paths([gopath.as_path(), Path::new(DEBIAN_GOCODE)]).unwrap();
    let mut cmd = tokio::process::Command::new("go");
    cmd.current_dir(root().join("examples/go"))
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .env("GO111MODULE", "off")
        .env("GOPATH", search)
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build"),
        )
        .env("GOFLAGS", "");
    let out = output("go build (examples/go)", &mut cmd, RUN_TIMEOUT).await;
    assert!(out.status.success(), "go build failed\n{}", said(&out));
    binary
}

async fn client(binary: &Path, flags: &[String], token: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(flags).env_remove("XPOOL_TOKEN");
    if let Some(token) = token {
        cmd.env("XPOOL_TOKEN", token);
    }
    output("examples/go client", &mut cmd, RUN_TIMEOUT).await
}

#[tokio::test]
async fn the_go_example_binds_over_mutual_tls_with_a_token_and_explains_refusals() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: the Go example was not built: {why}");
        return;
    }
    let built = tempfile::tempdir().unwrap();
    let binary = build(built.path()).await;
    let served = Served::start(Tls::Mutual).await;

    let out = client(&binary, &served.flags(APP, "go-example-1", 1), Some(TOKEN)).await;
    assert_bound_and_released(&served, &out, "go-example-1").await;

    // The client certificate alone is no caller: [[auth.clients]] does not name it.
    let out = client(&binary, &served.flags(APP, "go-example-2", 3), None).await;
    assert_refused(&out, "UNAUTHENTICATED", "UNAUTHENTICATED", &[]);
}

#[tokio::test]
async fn the_committed_go_stubs_are_what_generate_sh_makes() {
    let found: Vec<Option<String>> = GENERATORS.iter().map(|(t, _)| version(t)).collect();
    let wanted: Vec<Option<String>> = GENERATORS
        .iter()
        .map(|(_, v)| Some(v.to_string()))
        .collect();
    if found != wanted {
        eprintln!(
            "SKIPPED: the committed Go stubs were not regenerated: they were made by {wanted:?}, \
             this machine has {found:?}"
        );
        return;
    }
    let fresh = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(root().join("examples/generate.sh"));
    cmd.arg("--out").arg(fresh.path()).arg("go");
    let out = output("examples/generate.sh go", &mut cmd, RUN_TIMEOUT).await;
    assert!(out.status.success(), "{}", said(&out));
    assert_same_files(
        &root().join("examples/go/gen/xpool"),
        &fresh.path().join("go/gen/xpool"),
        "examples/generate.sh go",
        &out,
    );
}
