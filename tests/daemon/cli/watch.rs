//! `xpool watch`: a Bind made meanwhile is printed with its resume token; Ctrl-C ends it
//! cleanly, saying where to resume, and a watch resumed there prints what came after.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::support::*;

/// `xpool watch` with its stdout piped, read a line at a time.
struct Watch {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Watch {
    fn spawn(addr: &str, args: &[&str]) -> Watch {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"))
            .arg("watch")
            .args(args)
            .args(["--server", addr])
            .env_remove("XPOOL_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Watch { child, lines }
    }

    async fn line(&mut self) -> String {
        let line = tokio::time::timeout(WATCH_WAIT, self.lines.next_line()).await;
        line.expect("a line in time")
            .unwrap()
            .expect("watch goes on")
    }
}

#[tokio::test]
async fn watch_prints_a_bind_made_meanwhile_and_resumes_after_ctrl_c() {
    let d = Daemon::start_with(Setup::standard().only(&["rides"])).await;
    let mut watch = Watch::spawn(&d.addr, &["--app", "rides", "--output", "json"]);
    // The first line is where the watch starts: a token and no event.
    let first: Value = serde_json::from_str(&watch.line().await).unwrap();
    let start = first["resumeToken"].as_str().unwrap().to_owned();
    assert!(!start.is_empty() && first.get("kind").is_none(), "{first}");

    let made = d.bind_ok(bind("rides", &party(1), Some(&party(2)))).await;
    let event: Value = serde_json::from_str(&watch.line().await).unwrap();
    assert_eq!(event["kind"], "WATCH_KIND_BINDING_BOUND", "{event}");
    assert_eq!(event["app"], "rides");
    assert_eq!(
        event["binding"]["bindingId"],
        made.binding_id.as_str(),
        "{event}"
    );
    assert_eq!(event["binding"]["state"], "BINDING_STATE_ACTIVE");
    let after = event["resumeToken"].as_str().unwrap().to_owned();
    assert_ne!(after, start);

    // Ctrl-C: exit 0, saying where to resume.
    let pid = watch.child.id().unwrap().to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(sent.await.unwrap().success());
    let out = within("xpool watch after SIGINT", watch.child.wait_with_output()).await;
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("resume with --resume-token {after}")),
        "{stderr}"
    );

    // Resumed from the start, as a table: the Bind again, then a later Unbind; then killed.
    let mut resumed = Watch::spawn(&d.addr, &["--resume-token", &start]);
    let line = resumed.line().await;
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1..4], ["binding_bound", "rides", "binding"], "{line}");
    assert_eq!(cols[4], made.binding_id, "{line}");
    assert!(line.ends_with(&format!("resume {after}")), "{line}");
    d.unbind_ok(&made.binding_id).await;
    let line = resumed.line().await;
    assert!(line.contains(&format!(
        "binding_released  rides  binding {}",
        made.binding_id
    )));
    resumed.child.kill().await.unwrap();
    d.stop().await;
}

#[tokio::test]
async fn a_watch_the_daemon_ends_at_shutdown_exits_1_with_the_token_to_resume_with() {
    let d = Daemon::start_with(Setup::standard().only(&["rides"])).await;
    let mut watch = Watch::spawn(&d.addr, &["--output", "json"]);
    watch.line().await;
    let made = d.bind_ok(bind("rides", &party(1), Some(&party(2)))).await;
    let event: Value = serde_json::from_str(&watch.line().await).unwrap();
    assert_eq!(event["binding"]["bindingId"], made.binding_id.as_str());
    let last = event["resumeToken"].as_str().unwrap().to_owned();

    d.stop().await;
    let out = within("xpool watch after shutdown", watch.child.wait_with_output()).await;
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("xpool watch: UNAVAILABLE: "), "{stderr}");
    assert!(stderr.contains("reason: SHUTTING_DOWN"), "{stderr}");
    assert!(
        stderr.contains(&format!("resume with --resume-token {last}")),
        "{stderr}"
    );
}
