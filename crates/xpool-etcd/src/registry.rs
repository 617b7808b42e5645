//! The node registry: each replica registers `node_id → advertise_addr` under a prefix, attached
//! to its lease, so a replica that stops renewing drops out of [`list_nodes`] within its TTL.

use serde::{Deserialize, Serialize};

use crate::{Client, Error, LeaseKeeper};

/// One registered replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The replica's configured node id.
    pub node_id: String,
    /// The address other replicas reach it at.
    pub advertise_addr: String,
}

/// Registers (or re-registers) `node_id` under `prefix`, attached to `lease`; returns the
/// revision of the write.
pub async fn register(
    client: &Client,
    prefix: &str,
    node_id: &str,
    advertise_addr: &str,
    lease: &LeaseKeeper,
) -> Result<i64, Error> {
    let node = Node {
        node_id: node_id.to_owned(),
        advertise_addr: advertise_addr.to_owned(),
    };
    let value = serde_json::to_vec(&node).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    client
        .put_with_lease(format!("{prefix}{node_id}"), value, lease.id())
        .await
}

/// Removes `node_id`'s registration at once (rather than at its lease's expiry).
pub async fn deregister(client: &Client, prefix: &str, node_id: &str) -> Result<(), Error> {
    client.delete(format!("{prefix}{node_id}")).await.map(drop)
}

/// The registered replicas, in node id order, and the revision they were read at. Entries that
/// do not parse are skipped with a warning.
pub async fn list_nodes(client: &Client, prefix: &str) -> Result<(Vec<Node>, i64), Error> {
    let response = client.get_prefix(prefix).await?;
    let nodes = response
        .kvs
        .iter()
        .filter_map(|kv| match serde_json::from_slice::<Node>(&kv.value) {
            Ok(node) => Some(node),
            Err(error) => {
                let key = String::from_utf8_lossy(&kv.key);
                tracing::warn!(%key, %error, "skipping an unreadable node registration");
                None
            }
        })
        .collect();
    Ok((nodes, response.revision))
}
