//! This replica's membership: its registration `P nodes/<id>` (JSON [`NodeInfo`]) under a
//! kept-alive lease, and the table of every live replica, kept current by a watch of
//! `P nodes/` (docs/cluster.md, "Leadership").
//!
//! The lease is this replica's life in the cluster: its registration and every leadership key it
//! holds are attached to it, so when the replica dies they vanish within the TTL. When the lease
//! is lost while the process lives (etcd unreachable for a whole TTL, the lease revoked), the
//! replica revokes what is left of it, grants a new one and registers again: a new [`Session`]
//! with the next generation, logged at warn and then info. Everything attached to the old
//! lease — leaderships above all — is over; [`leadership`](super::leadership) campaigns again
//! under the new one.
//!
//! A node id already registered under another lease (this replica's previous run, not yet
//! expired, or a second replica configured with the same id) is waited for, not overwritten.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xpool_etcd::{Client, Compare, CompareOp, LeaseKeeper, Range, Txn, TxnOp, election};

use super::mirror::{Mirror, Snapshot};
use super::{Error, Prefix};
use crate::config::ClusterConfig;

/// The value of `P nodes/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Where the other replicas reach this one's gRPC.
    pub advertise_addr: String,
    /// Where the other replicas forward the platform's pushes, when this replica takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callbacks_addr: Option<String>,
    /// xpool's version.
    pub version: String,
    /// When the process started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// The live replicas by node id.
pub type Nodes = Snapshot<NodeInfo>;

/// What [`Membership::join`] registers.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// This replica's id.
    pub node_id: String,
    /// Its registration.
    pub info: NodeInfo,
    /// The TTL of its lease.
    pub lease_ttl: Duration,
    /// The pause between attempts to rejoin after the lease is lost.
    pub retry_pause: Duration,
}

impl MembershipConfig {
    /// The registration `[cluster]` describes, started now, with this build's version.
    pub fn new(cluster: &ClusterConfig, callbacks_addr: Option<String>) -> Self {
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        MembershipConfig {
            node_id: cluster.node_id.clone(),
            info: NodeInfo {
                advertise_addr: cluster.advertise_addr.clone(),
                callbacks_addr,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at_ms,
            },
            lease_ttl: cluster.lease_ttl(),
            retry_pause: Duration::from_millis(500),
        }
    }
}

/// One lease of this replica, with its registration made.
#[derive(Debug, Clone)]
pub struct Session {
    /// 1 for the first lease, one more after each rejoin.
    pub generation: u64,
    /// The lease, kept alive until it is lost or the membership stops; campaign with it.
    pub lease: Arc<LeaseKeeper>,
}

/// This replica's membership; see the module docs.
#[derive(Debug)]
pub struct Membership {
    client: Client,
    prefix: Prefix,
    node_id: String,
    /// The current session; `None` while rejoining. Sent by the rejoin task; closed when the
    /// membership stops.
    session: watch::Receiver<Option<Session>>,
    /// The live node table, sent by the mirror task.
    nodes: watch::Receiver<Nodes>,
    /// Stops the rejoin and mirror tasks (a child of the caller's token).
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Membership {
    /// Grants a lease, registers, loads the node table, and starts the tasks that keep both
    /// current until `cancel` (or [`leave`](Self::leave) / [`stop`](Self::stop)).
    pub async fn join(
        client: Client,
        prefix: Prefix,
        config: MembershipConfig,
        cancel: &CancellationToken,
    ) -> Result<Membership, Error> {
        let first = session(&client, &prefix, &config, 1).await?;
        let (mirror, nodes) = match Mirror::load(client.clone(), prefix.nodes(), parse).await {
            Ok(loaded) => loaded,
            Err(e) => {
                let _ = client.lease_revoke(first.lease.id()).await;
                return Err(e.into());
            }
        };
        tracing::info!(node_id = %config.node_id, lease = first.lease.id(), "joined the cluster");
        let (tx, session_rx) = watch::channel(Some(first));
        let cancel = cancel.child_token();
        let tasks = TaskTracker::new();
        tasks.spawn(mirror.run(cancel.clone()));
        let rejoin = Rejoin {
            client: client.clone(),
            prefix: prefix.clone(),
            config: config.clone(),
            tx,
        };
        tasks.spawn(rejoin.run(cancel.clone()));
        tasks.close();
        Ok(Membership {
            client,
            prefix,
            node_id: config.node_id,
            session: session_rx,
            nodes,
            cancel,
            tasks,
        })
    }

    /// This replica's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The etcd client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The cluster's key prefix.
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// The current session (`None` while rejoining after a lost lease).
    pub fn session(&self) -> watch::Receiver<Option<Session>> {
        self.session.clone()
    }

    /// The live node table.
    pub fn nodes(&self) -> watch::Receiver<Nodes> {
        self.nodes.clone()
    }

    /// Leaves the cluster: stops the tasks and revokes the lease, which deletes the
    /// registration and every leadership key of this replica at once.
    pub async fn leave(self) -> Result<(), Error> {
        let lease = self.session.borrow().as_ref().map(|s| s.lease.id());
        self.stop().await;
        if let Some(id) = lease {
            self.client.lease_revoke(id).await?;
        }
        Ok(())
    }

    /// Stops the tasks without telling etcd, as a crash would: the lease stops being renewed
    /// and expires within its TTL, taking the registration and leadership keys with it.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

fn parse(value: &[u8]) -> Option<NodeInfo> {
    serde_json::from_slice(value).ok()
}

/// Grants a kept-alive lease and registers under it.
async fn session(
    client: &Client,
    prefix: &Prefix,
    config: &MembershipConfig,
    generation: u64,
) -> Result<Session, Error> {
    let lease = client.grant_kept_alive(config.lease_ttl).await?;
    if let Err(e) = register(client, prefix, config, &lease).await {
        let _ = client.lease_revoke(lease.id()).await;
        return Err(e);
    }
    Ok(Session {
        generation,
        lease: Arc::new(lease),
    })
}

/// Creates `P nodes/<id>` under `lease`, waiting while another lease holds it.
async fn register(
    client: &Client,
    prefix: &Prefix,
    config: &MembershipConfig,
    lease: &LeaseKeeper,
) -> Result<(), Error> {
    let key = prefix.node(&config.node_id);
    let value = serde_json::to_vec(&config.info).map_err(|e| Error::Invalid(e.to_string()))?;
    loop {
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put_with_lease(
                key.clone(),
                value.clone(),
                lease.id(),
            )])
            .or_else([TxnOp::get(Range::key(key.clone()))]);
        let response = client.txn(txn).await?;
        let holder = response.range(0).and_then(<[_]>::first);
        match holder {
            _ if response.succeeded => return Ok(()),
            // Our own earlier attempt, whose answer was lost.
            Some(holder) if holder.lease == lease.id() => return Ok(()),
            Some(holder) => {
                tracing::warn!(
                    node_id = %config.node_id,
                    lease = holder.lease,
                    "node id registered under another lease (this node's previous run, not yet \
                     expired, or another replica with the same node_id): waiting for it to go"
                );
                tokio::select! {
                    waited = election::wait_vacant(client, key.clone(), response.revision) => waited?,
                    () = lease.lost() => return Err(xpool_etcd::Error::LeaseNotFound.into()),
                }
            }
            None => {}
        }
    }
}

/// Rebuilds the session whenever its lease is lost.
struct Rejoin {
    client: Client,
    prefix: Prefix,
    config: MembershipConfig,
    /// Publishes the current session; dropped (closing the receivers) when the task ends.
    tx: watch::Sender<Option<Session>>,
}

impl Rejoin {
    /// Until `cancel`; then the session is withdrawn, so that once the leadership tasks let go
    /// of theirs the lease is no longer renewed.
    async fn run(self, cancel: CancellationToken) {
        self.rejoin_while_running(&cancel).await;
        self.tx.send_replace(None);
    }

    async fn rejoin_while_running(&self, cancel: &CancellationToken) {
        loop {
            let Some(current) = self.tx.borrow().clone() else {
                return;
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = current.lease.lost() => {}
            }
            let generation = current.generation + 1;
            tracing::warn!(
                node_id = %self.config.node_id,
                lease = current.lease.id(),
                "etcd lease lost: this replica's registration and leaderships are gone; rejoining"
            );
            self.tx.send_replace(None);
            // Whatever is left of the old lease goes, so its keys do not linger for a TTL.
            let _ = self.client.lease_revoke(current.lease.id()).await;
            drop(current);
            loop {
                let attempt = session(&self.client, &self.prefix, &self.config, generation);
                let result = tokio::select! {
                    () = cancel.cancelled() => return,
                    result = attempt => result,
                };
                match result {
                    Ok(session) => {
                        tracing::info!(
                            node_id = %self.config.node_id,
                            lease = session.lease.id(),
                            generation,
                            "rejoined the cluster under a new lease"
                        );
                        self.tx.send_replace(Some(session));
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "rejoining the cluster failed; retrying");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(self.config.retry_pause) => {}
                        }
                    }
                }
            }
        }
    }
}
