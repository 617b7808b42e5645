//! What `xpool cluster status` shows: the etcd members with their health and revision, the
//! registered replicas with their applied revision (`P applied/<id>`) and lag, and each app's
//! leader. [`gather`] asks etcd; [`render`] and [`to_json`] print the answer.

use std::fmt::Write as _;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde_json::{Value, json};
use xpool_etcd::Client;
use xpool_etcd::cluster::{EndpointStatus, Member};

use super::leadership::Leader;
use super::membership::NodeInfo;
use super::{Error, Prefix};

/// The cluster as etcd has it.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// etcd's members.
    pub members: Vec<Member>,
    /// What each configured endpoint said about itself, or why it did not answer.
    pub endpoints: Vec<(String, Result<EndpointStatus, String>)>,
    /// The store revision the keys below were read at.
    pub revision: i64,
    /// The registered replicas, by node id.
    pub replicas: Vec<Replica>,
    /// The configured apps, then any other app with a leadership key, by name.
    pub apps: Vec<(String, Option<Leader>)>,
}

/// One registered replica.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Its node id.
    pub node_id: String,
    /// Its registration; `None` when the value does not parse.
    pub info: Option<NodeInfo>,
    /// The revision it has applied (`P applied/<id>`), when it says.
    pub applied: Option<i64>,
}

impl Replica {
    /// How far it is behind `revision`, when it has said what it applied.
    pub fn lag(&self, revision: i64) -> Option<i64> {
        self.applied.map(|applied| (revision - applied).max(0))
    }
}

/// Asks etcd: the member list (an error here is the command's error), every endpoint's status
/// (within a third of the client's deadline; a silent one is reported, not fatal), then the
/// replicas, applied revisions and leaders under `prefix`.
pub async fn gather(
    client: &Client,
    prefix: &Prefix,
    apps: &[String],
) -> Result<ClusterStatus, Error> {
    let members = client.member_list().await?;
    // A frozen member answers nothing: a third of the deadline for the statuses leaves the
    // rest for the reads, so one bad member shows as unreachable instead of failing it all.
    let endpoints = client
        .with_timeout(client.timeout() / 3)
        .status_all()
        .await
        .into_iter()
        .map(|(url, status)| (url, status.map_err(|e| e.to_string())))
        .collect();
    let nodes = client.get_prefix(prefix.nodes()).await?;
    let applied = client.get_prefix(prefix.applied_all()).await?;
    let leaders = client.get_prefix(prefix.leaders()).await?;
    let rest = |key: &[u8], of: &str| {
        String::from_utf8_lossy(&key[of.len().min(key.len())..]).into_owned()
    };
    let applied: Vec<(String, Option<i64>)> = applied
        .kvs
        .iter()
        .map(|kv| {
            let text = String::from_utf8_lossy(&kv.value);
            (
                rest(&kv.key, &prefix.applied_all()),
                text.trim().parse().ok(),
            )
        })
        .collect();
    let replicas = nodes
        .kvs
        .iter()
        .map(|kv| {
            let node_id = rest(&kv.key, &prefix.nodes());
            let applied = applied
                .iter()
                .find(|(id, _)| *id == node_id)
                .and_then(|(_, r)| *r);
            Replica {
                info: serde_json::from_slice(&kv.value).ok(),
                node_id,
                applied,
            }
        })
        .collect();
    let mut table: Vec<(String, Option<Leader>)> = apps.iter().map(|a| (a.clone(), None)).collect();
    for kv in &leaders.kvs {
        let app = rest(&kv.key, &prefix.leaders());
        let leader = Leader {
            node_id: String::from_utf8_lossy(&kv.value).into_owned(),
            token: kv.create_revision,
        };
        match table.iter_mut().find(|(a, _)| *a == app) {
            Some(entry) => entry.1 = Some(leader),
            None => table.push((app, Some(leader))),
        }
    }
    table[apps.len()..].sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ClusterStatus {
        members,
        endpoints,
        revision: leaders.revision.max(nodes.revision),
        replicas,
        apps: table,
    })
}

fn new_table(headers: &[&str], numeric: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    for (i, header) in headers.iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            column.set_padding((0, 2));
            if numeric.contains(header) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    table
}

fn push_table(out: &mut String, table: &Table) {
    for line in table.lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The health of member `member` as its endpoint reported it.
fn health<'a>(status: &'a ClusterStatus, member: &Member) -> (String, Option<&'a EndpointStatus>) {
    let answered = status
        .endpoints
        .iter()
        .find_map(|(_, s)| s.as_ref().ok().filter(|s| s.member_id == member.id));
    match answered {
        Some(s) if !s.errors.is_empty() => (format!("alarm: {}", s.errors.join("; ")), Some(s)),
        Some(s) if s.leader == 0 => ("no leader".to_owned(), Some(s)),
        Some(s) => ("healthy".to_owned(), Some(s)),
        None => {
            let failed = status.endpoints.iter().find(|(url, s)| {
                s.is_err()
                    && member
                        .client_urls
                        .iter()
                        .any(|u| u.trim_end_matches('/') == url.trim_end_matches('/'))
            });
            match failed {
                Some((_, Err(why))) => (format!("unreachable: {why}"), None),
                _ => ("not asked (not a configured endpoint)".to_owned(), None),
            }
        }
    }
}

/// The status as tables for people.
pub fn render(status: &ClusterStatus) -> String {
    let mut out = format!("etcd members (revision {})\n", status.revision);
    let mut t = new_table(
        &[
            "NAME",
            "ID",
            "CLIENT URL",
            "HEALTH",
            "LEADER",
            "REVISION",
            "RAFT TERM",
        ],
        &["REVISION", "RAFT TERM"],
    );
    for member in &status.members {
        let (health, answered) = health(status, member);
        t.add_row(vec![
            if member.name.is_empty() {
                "-".to_owned()
            } else {
                member.name.clone()
            },
            format!("{:x}", member.id),
            member
                .client_urls
                .first()
                .cloned()
                .unwrap_or_else(|| "-".to_owned()),
            health,
            answered
                .map_or("-", |s| if s.leader == member.id { "yes" } else { "no" })
                .to_owned(),
            answered.map_or("-".to_owned(), |s| s.revision.to_string()),
            answered.map_or("-".to_owned(), |s| s.raft_term.to_string()),
        ]);
    }
    push_table(&mut out, &t);
    for (url, answer) in &status.endpoints {
        let known = status
            .members
            .iter()
            .any(|m| m.client_urls.iter().any(|u| u == url));
        if let (Err(why), false) = (answer, known) {
            let _ = writeln!(out, "endpoint {url}: unreachable: {why}");
        }
    }
    out.push_str("\nreplicas\n");
    let mut t = new_table(
        &["NODE", "ADDRESS", "VERSION", "STARTED", "APPLIED", "LAG"],
        &["APPLIED", "LAG"],
    );
    for replica in &status.replicas {
        let info = replica.info.as_ref();
        t.add_row(vec![
            replica.node_id.clone(),
            info.map_or("(unreadable)".to_owned(), |i| i.advertise_addr.clone()),
            info.map_or("-".to_owned(), |i| i.version.clone()),
            info.map_or("-".to_owned(), |i| started(i.started_at_ms)),
            replica
                .applied
                .map_or("unknown".to_owned(), |r| r.to_string()),
            replica
                .lag(status.revision)
                .map_or("unknown".to_owned(), |l| l.to_string()),
        ]);
    }
    push_table(&mut out, &t);
    out.push_str("\napps\n");
    let mut t = new_table(&["APP", "LEADER", "TOKEN"], &["TOKEN"]);
    for (app, leader) in &status.apps {
        t.add_row(vec![
            app.clone(),
            leader
                .as_ref()
                .map_or("none".to_owned(), |l| l.node_id.clone()),
            leader
                .as_ref()
                .map_or("-".to_owned(), |l| l.token.to_string()),
        ]);
    }
    push_table(&mut out, &t);
    out
}

/// `started_at_ms` as RFC 3339, to the second.
fn started(ms: u64) -> String {
    let seconds = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The status as one JSON document (keys in lowerCamelCase, as the other admin commands print
/// them; absent values `null`).
pub fn to_json(status: &ClusterStatus) -> Value {
    let members: Vec<Value> = status
        .members
        .iter()
        .map(|member| {
            let (health, answered) = health(status, member);
            json!({
                "name": member.name,
                "id": format!("{:x}", member.id),
                "clientUrls": member.client_urls,
                "health": health,
                "isLeader": answered.map(|s| s.leader == member.id),
                "revision": answered.map(|s| s.revision),
                "raftTerm": answered.map(|s| s.raft_term),
            })
        })
        .collect();
    let replicas: Vec<Value> = status
        .replicas
        .iter()
        .map(|r| {
            json!({
                "nodeId": r.node_id,
                "advertiseAddr": r.info.as_ref().map(|i| &i.advertise_addr),
                "callbacksAddr": r.info.as_ref().and_then(|i| i.callbacks_addr.as_ref()),
                "version": r.info.as_ref().map(|i| &i.version),
                "startedAtMs": r.info.as_ref().map(|i| i.started_at_ms),
                "appliedRevision": r.applied,
                "lag": r.lag(status.revision),
            })
        })
        .collect();
    let apps: Vec<Value> = status
        .apps
        .iter()
        .map(|(app, leader)| {
            json!({
                "app": app,
                "leader": leader.as_ref().map(|l| &l.node_id),
                "token": leader.as_ref().map(|l| l.token),
            })
        })
        .collect();
    json!({ "revision": status.revision, "members": members, "replicas": replicas, "apps": apps })
}
