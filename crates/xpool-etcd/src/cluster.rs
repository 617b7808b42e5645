//! Cluster membership and per-member status, for `xpool cluster status`.

use tonic::Request;

use crate::{
    Client, Error,
    client::Kind,
    pb::etcdserverpb::{
        MemberListRequest, StatusRequest, cluster_client::ClusterClient,
        maintenance_client::MaintenanceClient,
    },
};

/// One member of the etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member id.
    pub id: u64,
    /// Its `--name` (empty until a newly added member has started).
    pub name: String,
    /// The URLs it talks raft on.
    pub peer_urls: Vec<String>,
    /// The URLs clients reach it on.
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

/// What one endpoint says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The member id behind the endpoint.
    pub member_id: u64,
    /// The member id of the raft leader it follows (0: it knows of no leader).
    pub leader: u64,
    /// etcd's version.
    pub version: String,
    /// The backend database's size in bytes.
    pub db_size: i64,
    /// The raft term.
    pub raft_term: u64,
    /// The raft index it has seen.
    pub raft_index: u64,
    /// The store revision it has applied.
    pub revision: i64,
    /// Alarms and errors it reports (for example `NOSPACE`).
    pub errors: Vec<String>,
}

impl Client {
    /// The cluster's members.
    pub async fn member_list(&self) -> Result<Vec<Member>, Error> {
        let response = self
            .unary(Kind::Read, MemberListRequest {}, |channel, request| async move {
                ClusterClient::new(channel).member_list(request).await
            })
            .await?;
        Ok(response
            .members
            .into_iter()
            .map(|m| Member {
                id: m.id,
                name: m.name,
                peer_urls: m.peer_ur_ls,
                client_urls: m.client_ur_ls,
                is_learner: m.is_learner,
            })
            .collect())
    }

    /// The status of each configured endpoint, asked directly (no failover: a member that does
    /// not answer within the client's deadline reports its error), in configuration order.
    pub async fn status_all(&self) -> Vec<(String, Result<EndpointStatus, Error>)> {
        let mut calls = tokio::task::JoinSet::new();
        for index in 0..self.endpoints().count() {
            let client = self.clone();
            calls.spawn(async move { (index, client.status_of(index).await) });
        }
        let mut results: Vec<_> = calls.join_all().await;
        results.sort_by_key(|(index, _)| *index);
        results
            .into_iter()
            .map(|(index, result)| (self.url(index).to_owned(), result))
            .collect()
    }

    /// The status of endpoint `index`. Sent without `hasleader`, so a member without a leader
    /// still answers (with `leader` 0).
    async fn status_of(&self, index: usize) -> Result<EndpointStatus, Error> {
        let mut request = Request::new(StatusRequest {});
        request.set_timeout(self.timeout());
        let mut maintenance = MaintenanceClient::new(self.channel(index));
        let call = maintenance.status(request);
        let response = match tokio::time::timeout(self.timeout(), call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(Error::from_status(&status)),
            Err(_) => return Err(Error::Timeout(self.timeout())),
        };
        let header = response.header.unwrap_or_default();
        Ok(EndpointStatus {
            member_id: header.member_id,
            leader: response.leader,
            version: response.version,
            db_size: response.db_size,
            raft_term: response.raft_term,
            raft_index: response.raft_index,
            revision: header.revision,
            errors: response.errors,
        })
    }
}
