//! The built `xpool` binary as a child process.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;

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
