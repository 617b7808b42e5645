//! Leases: grant, revoke, time-to-live, and a [`LeaseKeeper`] task that keeps one alive and
//! says when it is lost.
//!
//! etcd 3.4 raises a TTL below its minimum (1.5 × the election timeout, 1.5 s by default) and
//! measures a lease from its last renewal on the etcd leader; a new etcd leader extends every
//! lease by the election timeout. The keeper counts a lease lost conservatively: from the instant
//! it *sent* its last successful renewal, plus the TTL etcd answered.

use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Request, Streaming, metadata::AsciiMetadataValue};

use crate::{
    Client, Error,
    client::{Kind, decorate},
    error::{Retry, retry_policy},
    pb::etcdserverpb::{
        LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
        LeaseTimeToLiveRequest, lease_client::LeaseClient,
    },
};

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease id, to attach keys with.
    pub id: i64,
    /// The TTL etcd granted (it may raise the requested one to its minimum).
    pub ttl: Duration,
    /// When the grant was sent: the lease cannot expire before `granted_at + ttl`.
    pub granted_at: Instant,
}

impl Client {
    /// Grants a lease of `ttl` (rounded up to whole seconds). Retried on failover like a read: a
    /// grant whose answer was lost leaves an unused lease that expires on its own.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<Lease, Error> {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let req = LeaseGrantRequest {
            ttl: seconds.max(1).try_into().unwrap_or(i64::MAX),
            id: 0,
        };
        let granted_at = Instant::now();
        let response = self
            .unary(Kind::Read, req, |channel, request| async move {
                LeaseClient::new(channel).lease_grant(request).await
            })
            .await?;
        if !response.error.is_empty() {
            return Err(Error::InvalidArgument(response.error));
        }
        let ttl = Duration::from_secs(response.ttl.max(0).unsigned_abs());
        Ok(Lease {
            id: response.id,
            ttl,
            granted_at,
        })
    }

    /// Revokes a lease, deleting its keys; a lease already gone counts as revoked.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        let result = self
            .unary(Kind::Read, LeaseRevokeRequest { id }, |channel, request| async move {
                LeaseClient::new(channel).lease_revoke(request).await
            })
            .await;
        match result {
            Ok(_) | Err(Error::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The lease's remaining time to live, `None` when it has expired or was revoked.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<Duration>, Error> {
        let req = LeaseTimeToLiveRequest { id, keys: false };
        let response = self
            .unary(Kind::Read, req, |channel, request| async move {
                LeaseClient::new(channel).lease_time_to_live(request).await
            })
            .await?;
        Ok((response.ttl > 0).then(|| Duration::from_secs(response.ttl.unsigned_abs())))
    }

    /// Starts keeping `lease` alive in a background task (renewing every TTL/3, failing over
    /// between endpoints) until the returned keeper is dropped or the lease is lost.
    pub fn keep_alive(&self, lease: Lease) -> LeaseKeeper {
        let lost = CancellationToken::new();
        let task = tokio::spawn(keep_alive(self.clone(), lease, lost.clone()));
        LeaseKeeper { lease, lost, task }
    }

    /// Grants a lease of `ttl` and keeps it alive.
    pub async fn grant_kept_alive(&self, ttl: Duration) -> Result<LeaseKeeper, Error> {
        Ok(self.keep_alive(self.lease_grant(ttl).await?))
    }
}

/// Keeps a lease alive. Dropping it stops the renewals without revoking (the lease and its keys
/// then expire within the TTL) and counts the lease as lost at once: nothing vouches for it.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: Lease,
    /// Cancelled by the keep-alive task, once, when the lease is lost: etcd said it is gone, or
    /// no renewal succeeded for a whole TTL. Callers get child tokens.
    lost: CancellationToken,
    /// The keep-alive task, aborted on drop.
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.lease.id
    }

    /// The granted TTL.
    pub fn ttl(&self) -> Duration {
        self.lease.ttl
    }

    /// Whether the lease is known lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Resolves when the lease is lost (at once if it already is).
    pub fn lost(&self) -> WaitForCancellationFutureOwned {
        self.lost.clone().cancelled_owned()
    }

    /// A token cancelled when the lease is lost (cancelling it does not affect the keeper).
    pub fn lost_token(&self) -> CancellationToken {
        self.lost.child_token()
    }

    /// Stops renewing and revokes the lease, deleting its keys at once.
    pub async fn revoke(self, client: &Client) -> Result<(), Error> {
        self.task.abort();
        client.lease_revoke(self.lease.id).await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
        self.lost.cancel();
    }
}

/// An open keep-alive stream on one endpoint.
struct Stream {
    index: usize,
    /// The auth token the stream was opened with.
    token: Option<AsciiMetadataValue>,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

async fn keep_alive(client: Client, lease: Lease, lost: CancellationToken) {
    let interval = (lease.ttl / 3).max(Duration::from_millis(300));
    let mut expires = lease.granted_at + lease.ttl;
    let mut stream: Option<Stream> = None;
    loop {
        if Instant::now() >= expires {
            tracing::warn!(
                lease = lease.id,
                "etcd lease not renewed within its TTL: lost"
            );
            break;
        }
        let sent_at = Instant::now();
        let limit = client.keep_alive_timeout().min(expires - sent_at);
        match tokio::time::timeout(limit, renew(&client, lease.id, &mut stream, expires)).await {
            Ok(Ok(Some(ttl))) => {
                expires = sent_at + ttl;
                tokio::time::sleep_until(sent_at + interval).await;
            }
            Ok(Ok(None)) => {
                tracing::warn!(lease = lease.id, "etcd lease expired or was revoked: lost");
                break;
            }
            Ok(Err(error)) => {
                tracing::debug!(lease = lease.id, %error, "etcd lease renewal failed, failing over");
                fail(&client, &mut stream);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                tracing::debug!(
                    lease = lease.id,
                    "etcd lease renewal timed out, failing over"
                );
                fail(&client, &mut stream);
            }
        }
    }
    lost.cancel();
}

fn fail(client: &Client, stream: &mut Option<Stream>) {
    if let Some(open) = stream.take() {
        client.failed(open.index);
    }
}

/// One renewal on the open stream (opening one first if needed): the new TTL, or `None` when
/// etcd says the lease no longer exists.
async fn renew(
    client: &Client,
    id: i64,
    stream: &mut Option<Stream>,
    expires: Instant,
) -> Result<Option<Duration>, Error> {
    let request = LeaseKeepAliveRequest { id };
    let open = match stream {
        Some(open) => {
            open.requests.send(request).await.map_err(|_| closed())?;
            open
        }
        None => stream.insert(open_stream(client, request, expires).await?),
    };
    match open.responses.message().await {
        Ok(Some(response)) if response.ttl > 0 => {
            Ok(Some(Duration::from_secs(response.ttl.unsigned_abs())))
        }
        Ok(Some(_)) => Ok(None),
        Ok(None) => Err(closed()),
        Err(status) => {
            if retry_policy(&status) == Retry::Reauthenticate {
                client.forget_token(open.token.as_ref());
            }
            Err(Error::from_status(&status))
        }
    }
}

/// Opens a keep-alive stream on the current endpoint, `first` already queued (etcd answers
/// the stream's headers with its first response).
async fn open_stream(
    client: &Client,
    first: LeaseKeepAliveRequest,
    expires: Instant,
) -> Result<Stream, Error> {
    let token = client.token(expires).await?;
    let (index, channel) = client.current();
    let (requests, rx) = mpsc::channel(4);
    requests.send(first).await.map_err(|_| closed())?;
    let mut request = Request::new(ReceiverStream::new(rx));
    decorate(&mut request, token.as_ref());
    match LeaseClient::new(channel).lease_keep_alive(request).await {
        Ok(response) => Ok(Stream {
            index,
            token,
            requests,
            responses: response.into_inner(),
        }),
        Err(status) => {
            if retry_policy(&status) == Retry::Reauthenticate {
                client.forget_token(token.as_ref());
            }
            Err(Error::from_status(&status))
        }
    }
}

fn closed() -> Error {
    Error::Unavailable("lease keep-alive stream closed".into())
}
