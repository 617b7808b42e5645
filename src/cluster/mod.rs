//! Cluster mode on etcd (issue 14). The design, and the fencing argument — why a deposed leader
//! can never hand out a slot the new leader also hands out — are in
//! [docs/cluster.md](../../docs/cluster.md) and in [`xpool_etcd::election`]; the modules here
//! follow them.
//!
//! - [`membership`]: this replica's registration `P nodes/<id>` under a kept-alive lease, the
//!   live node table, and the rebuild after the lease is lost.
//! - [`leadership`]: one campaign per configured app on `P leader/<app>`, spread over the
//!   replicas by [`ranking`], with `Won` / `Lost` events and the leaders table.
//! - [`status`]: what `xpool cluster status` shows.
//! - [`copy`] and [`keys`]: every replica's local store following what the leaders write to
//!   etcd (the store side is `store::replica`).
//! - [`forward`]: the tower layer that sends a call about an app this replica does not lead to
//!   the app's leader, for every method, with no code per RPC.
//!
//! - [`writer`]: the leader's write path, fenced by the term (the store side is
//!   `store::wal::leader`).
//!
//! The daemon wires them together in `daemon::cluster`.

mod campaign;
pub mod copy;
pub mod forward;
pub mod keys;
pub mod leadership;
pub mod membership;
mod mirror;
pub mod ranking;
pub mod status;
pub mod writer;

use std::time::Duration;

pub use mirror::{Entry, Snapshot};

use crate::config::ClusterConfig;

/// The errors of cluster mode's etcd side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An etcd call failed (unavailable, timed out, refused).
    #[error(transparent)]
    Etcd(#[from] xpool_etcd::Error),
    /// The configured apps or ids cannot be used (for example an app name twice).
    #[error("{0}")]
    Invalid(String),
    /// The component was stopped while the call waited.
    #[error("cluster component stopped")]
    Stopped,
}

/// The keys of one cluster, under its `key_prefix` (`P` in docs/cluster.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// The prefix, e.g. `/xpool/` (validated by the config: starts and ends with `/`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Prefix(prefix.into())
    }

    /// `P`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `P nodes/`: every replica's registration.
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.0)
    }

    /// `P nodes/<node_id>`.
    pub fn node(&self, node_id: &str) -> String {
        format!("{}nodes/{node_id}", self.0)
    }

    /// `P leader/`: every app's leadership key.
    pub fn leaders(&self) -> String {
        format!("{}leader/", self.0)
    }

    /// `P leader/<app>`.
    pub fn leader(&self, app: &str) -> String {
        format!("{}leader/{app}", self.0)
    }

    /// `P applied/`: the revision each replica has applied.
    pub fn applied_all(&self) -> String {
        format!("{}applied/", self.0)
    }

    /// `P applied/<node_id>`.
    pub fn applied(&self, node_id: &str) -> String {
        format!("{}applied/{node_id}", self.0)
    }
}

/// An etcd client for `[cluster]`: its endpoints, TLS and credentials, with `timeout` as the
/// deadline of every call. Connects lazily; fails only on an unusable TLS file.
pub fn etcd_client(config: &ClusterConfig, timeout: Duration) -> Result<xpool_etcd::Client, Error> {
    let mut etcd = xpool_etcd::ClientConfig::new(config.etcd_endpoints.iter().cloned());
    etcd.request_timeout = timeout;
    etcd.attempt_timeout = etcd.attempt_timeout.min(timeout);
    etcd.tls = config.tls.as_ref().map(|tls| xpool_etcd::TlsConfig {
        ca_file: tls.ca_file.clone(),
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        domain_name: None,
    });
    etcd.credentials = config
        .credentials
        .as_ref()
        .map(|c| xpool_etcd::Credentials::new(&c.username, c.password.expose()));
    Ok(xpool_etcd::Client::new(etcd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_prefix() {
        let p = Prefix::new("/xpool/");
        assert_eq!(p.node("n1"), "/xpool/nodes/n1");
        assert_eq!(p.nodes(), "/xpool/nodes/");
        assert_eq!(p.leader("rides"), "/xpool/leader/rides");
        assert_eq!(p.leaders(), "/xpool/leader/");
        assert_eq!(p.applied("n1"), "/xpool/applied/n1");
    }
}
