//! The admin commands (`xpool numbers`, `bindings`, `stats`, `watch`) as the built binary,
//! against a daemon in this process: what they change is checked through the gRPC API, what
//! they print against what the API answers, `--output json` by parsing it; refusals exit 1 with
//! the reason, an unreachable daemon or a wrong command line 2, and no token is ever printed.
//! Every child is awaited (`tokio::process`): the daemon and simulator run on this test's
//! runtime, so a blocking wait would stop them.

mod bindings;
mod numbers;
mod refusals;
mod watch;

use serde_json::Value;

use crate::support::*;

/// What a run of the binary did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Exited `code`, else fails the test showing what it printed.
    #[track_caller]
    pub fn exits(&self, code: i32) -> &Ran {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// The table's rows (after its header), split on whitespace.
    pub fn rows(&self) -> Vec<Vec<&str>> {
        let mut lines = self.stdout.lines();
        let header = lines.next().unwrap_or_default();
        assert!(
            header.starts_with(char::is_uppercase),
            "a header: {self:#?}"
        );
        lines.map(|l| l.split_whitespace().collect()).collect()
    }
}

/// Runs `xpool ARGS --server ADDR` (no token unless `token`) and waits for it.
pub async fn xpool(addr: &str, token: Option<&str>, args: &[&str]) -> Ran {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"));
    cmd.args(args)
        .args(["--server", addr])
        .env_remove("XPOOL_TOKEN")
        .kill_on_drop(true);
    if let Some(token) = token {
        cmd.env("XPOOL_TOKEN", token);
    }
    let what = format!("xpool {}", args.join(" "));
    let out = within(&what, cmd.output()).await.unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
