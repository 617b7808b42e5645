//! `xpool cluster status`: the rendered answer against a live cluster, the binary's table and
//! JSON, an unreachable etcd, and `xpool serve` refusing `[cluster]`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use xpool::cluster::{Prefix, status};

use crate::common::{EtcdCluster, Node, PREFIX, apps, bounded, eventually, settled};

/// A daemon config with two X-mode apps, `chat` unled, and `[cluster]` on `endpoints`.
fn config_file(dir: &Path, endpoints: &[String]) -> std::path::PathBuf {
    let text = format!(
        r#"
[store]
path = "{dir}/data"
[[apps]]
name = "rides"
mode = "X"
numbers = [ {{ number = "+8617600000001", area_code = "010" }} ]
[[apps]]
name = "food"
mode = "X"
numbers = [ {{ number = "+8617600000002", area_code = "010" }} ]
[[apps]]
name = "chat"
mode = "X"
numbers = [ {{ number = "+8617600000003", area_code = "010" }} ]
[cluster]
etcd_endpoints = {endpoints:?}
node_id = "cli"
advertise_addr = "127.0.0.1:50051"
"#,
        dir = dir.display()
    );
    let path = dir.join("xpool.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the built binary with `args`, without the test's own `XPOOL__` variables.
async fn xpool(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"));
    cmd.args(args).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("XPOOL__") {
            cmd.env_remove(key);
        }
    }
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("xpool finished within 30 s")
        .unwrap()
}

#[tokio::test]
async fn status_shows_members_replicas_leaders_and_lag() {
    bounded(async {
        let Some(mut cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let led = apps(2); // rides, food
        let (a, b) = tokio::join!(
            Node::start(&cluster, "node-a", &led),
            Node::start(&cluster, "node-b", &led),
        );
        eventually(Duration::from_secs(20), "one app each", || {
            settled(&[&a, &b], &led, 1)
        })
        .await;
        let client = cluster.client();
        let prefix = Prefix::new(PREFIX);
        let revision = client.get("/anything").await.unwrap().revision;
        client
            .put(prefix.applied("node-a"), (revision - 2).to_string())
            .await
            .unwrap();

        let configured = vec!["rides".to_owned(), "food".to_owned(), "chat".to_owned()];
        let found = status::gather(&client, &prefix, &configured).await.unwrap();
        assert_eq!(found.members.len(), 3);
        assert_eq!(found.replicas.len(), 2);
        let node_a = &found.replicas[0];
        assert_eq!(node_a.node_id, "node-a");
        assert_eq!(node_a.applied, Some(revision - 2));
        assert!(
            node_a.lag(found.revision).unwrap() >= 3,
            "the put itself is a revision"
        );
        assert_eq!(found.replicas[1].applied, None);
        assert_eq!(found.apps.len(), 3);
        assert_eq!(found.apps[2], ("chat".to_owned(), None));
        for (app, leader) in &found.apps[..2] {
            let leader = leader.as_ref().unwrap();
            let owner = if a.leads().contains(app) {
                "node-a"
            } else {
                "node-b"
            };
            assert_eq!(leader.node_id, owner);
        }

        let text = status::render(&found);
        assert_eq!(text.matches("healthy").count(), 3, "{text}");
        assert_eq!(text.matches("  yes").count(), 1, "one raft leader: {text}");
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line {start:?} in {text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        let row = line("node-a");
        assert_eq!(
            row[1..4],
            ["127.0.0.1:50006", "test", "2023-11-14T22:13:20Z"],
            "{text}"
        );
        assert_eq!(row[4], (revision - 2).to_string());
        assert_eq!(line("node-b")[4..], ["unknown", "unknown"], "{text}");
        assert_eq!(line("chat"), ["chat", "none", "-"], "{text}");
        let json = status::to_json(&found);
        assert_eq!(json["apps"][2]["leader"], serde_json::Value::Null);
        assert_eq!(json["replicas"][0]["appliedRevision"], revision - 2);
        assert_eq!(json["members"].as_array().unwrap().len(), 3);

        // One member down: listed as unreachable, the rest as before.
        cluster.kill(2);
        let found = status::gather(&client, &prefix, &configured).await.unwrap();
        let text = status::render(&found);
        assert_eq!(text.matches("healthy").count(), 2, "{text}");
        assert_eq!(text.matches("unreachable: ").count(), 1, "{text}");
        assert_eq!(found.replicas.len(), 2, "{text}");
    })
    .await;
}

#[tokio::test]
async fn the_binary_prints_the_status_and_fails_clearly_without_etcd() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        let node = Node::start(&cluster, "node-a", &apps(1)).await;
        eventually(Duration::from_secs(5), "node-a leading", || {
            node.leads().len() == 1
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(dir.path(), &cluster.endpoints());
        let config = config.to_str().unwrap();

        let out = xpool(&["cluster", "status", "--config", config]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("etcd members (revision "), "{stdout}");
        assert!(stdout.lines().any(|l| l.starts_with("node-a ")), "{stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("rides ") && l.contains("node-a"))
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().eq(["food", "none", "-"]))
        );

        let out = xpool(&["cluster", "status", "--config", config, "--output", "json"]).await;
        assert!(out.status.success());
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["replicas"][0]["nodeId"], "node-a");
        assert_eq!(json["replicas"][0]["lag"], serde_json::Value::Null);
        assert_eq!(json["apps"][0]["leader"], "node-a");

        // Without a config: etcd's address on the command line, and the apps etcd has leaders
        // for. A malformed one is refused naming the flag, before any call.
        let endpoints = cluster.endpoints().join(",");
        let out = xpool(&[
            "cluster",
            "status",
            "--etcd-endpoints",
            &endpoints,
            "--output",
            "json",
        ])
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["replicas"][0]["nodeId"], "node-a");
        assert_eq!(json["apps"][0]["app"], "rides");
        assert_eq!(json["apps"][0]["leader"], "node-a");
        let out = xpool(&["cluster", "status", "--etcd-endpoints", "etcd-0:2379"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("--etcd-endpoints: \"etcd-0:2379\""),
            "{stderr}"
        );
        let out = xpool(&[
            "cluster",
            "status",
            "--etcd-endpoints",
            &endpoints,
            "--key-prefix",
            "x",
        ])
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("--key-prefix"), "{stderr}");

        // Nothing listens there: a clear message and exit 2 within the deadline.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let nowhere = config_file(dir.path(), &[format!("http://127.0.0.1:{port}")]);
        let started = std::time::Instant::now();
        let out = xpool(&[
            "cluster",
            "status",
            "--config",
            nowhere.to_str().unwrap(),
            "--timeout-seconds",
            "2",
        ])
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("etcd at http://127.0.0.1:{port}")),
            "{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}
