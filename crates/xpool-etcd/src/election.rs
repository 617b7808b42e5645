//! Per-key leadership with fencing tokens.
//!
//! A candidate [`campaign`]s for a key with one transaction,
//! `If(create_revision(key) == 0) Then Put(key, value, lease) Else Get(key)`: whoever creates
//! the key leads, for as long as the key exists. The key is attached to the leader's lease, so
//! it disappears when the leader stops renewing (crash, partition, freeze) or [`resign`]s.
//!
//! # Fencing
//! The leader's **fencing token** is the key's `create_revision`, the revision of the
//! transaction that created it. Every write the leader makes carries [`Leadership::fence`],
//! `Compare(create_revision(key) == token)`, in the same transaction. Why a deposed leader's
//! write can never commit once a new leader's key exists:
//!
//! 1. etcd applies transactions one at a time in revision order, and evaluates each one's
//!    compares against the state at that point of the order, whatever the member, whenever the
//!    request was sent (a frozen leader's old request is evaluated when it is applied, not when
//!    it was sent).
//! 2. Revisions are never reused, so a key created again (by a new leader) has a
//!    `create_revision` different from the old token, and between the old key's deletion and
//!    the new key's creation the key does not exist (`create_revision` 0).
//! 3. The new leader's key can only be created after the old key was deleted (its creation
//!    compares `create_revision == 0`). So every transaction applied after the deletion sees a
//!    `create_revision` other than the old token and fails its fence; every write of the old
//!    leader that did commit was applied before the deletion, hence before the new leader's key
//!    exists, and the new leader reads it when it loads the state at or after its own key's
//!    revision.
//!
//! So no moment exists at which two leaders' writes both commit in an interleaved order. Local
//! signals ([`Leadership::lost`]) tell a leader to stop early, but correctness rests on the
//! fence alone, not on clocks or on noticing the loss in time.
//!
//! [`resign`]: Leadership::resign

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::{
    Client, Compare, CompareOp, Error, KeyValue, LeaseKeeper, Range, Txn, TxnOp, watch::EventKind,
};

/// The outcome of one campaign.
#[derive(Debug)]
pub enum Campaign {
    /// This candidate leads.
    Won(Leadership),
    /// Another candidate leads: its key (value, fencing token as `create_revision`), and the
    /// revision it was read at (pass it to [`wait_vacant`]).
    Lost {
        /// The current holder's key.
        holder: KeyValue,
        /// The store revision the holder was observed at.
        revision: i64,
    },
}

/// Tries once to take `key` with `value`, attached to `lease`. A key already held under the
/// same lease (an earlier attempt whose answer was lost) counts as won.
pub async fn campaign(
    client: &Client,
    key: impl Into<Vec<u8>>,
    value: impl Into<Vec<u8>>,
    lease: &LeaseKeeper,
) -> Result<Campaign, Error> {
    if lease.is_lost() {
        return Err(Error::LeaseNotFound);
    }
    let key = key.into();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put_with_lease(key.clone(), value, lease.id())])
        .or_else([TxnOp::get(Range::key(key.clone()))]);
    let response = client.txn(txn).await?;
    let holder = response.range(0).and_then(|kvs| kvs.first()).cloned();
    let token = match holder {
        None if response.succeeded => response.revision,
        Some(holder) if holder.lease == lease.id() => holder.create_revision,
        Some(holder) => {
            return Ok(Campaign::Lost {
                holder,
                revision: response.revision,
            });
        }
        // Deleted between the failed compare and the read cannot happen (one revision).
        None => {
            return Err(Error::Unavailable(
                "leadership key vanished during campaign".into(),
            ));
        }
    };
    Ok(Campaign::Won(Leadership::start(
        client.clone(),
        key,
        token,
        lease,
    )))
}

/// Campaigns until this candidate leads: after each lost round, waits for the holder's key to be
/// deleted. Fails when `lease` is lost (grant a new one and start again) or on a lasting error.
pub async fn campaign_until_won(
    client: &Client,
    key: impl Into<Vec<u8>>,
    value: impl Into<Vec<u8>>,
    lease: &LeaseKeeper,
) -> Result<Leadership, Error> {
    let key = key.into();
    let value = value.into();
    loop {
        match campaign(client, key.clone(), value.clone(), lease).await? {
            Campaign::Won(leadership) => return Ok(leadership),
            Campaign::Lost { revision, .. } => tokio::select! {
                waited = wait_vacant(client, key.clone(), revision) => waited?,
                () = lease.lost() => return Err(Error::LeaseNotFound),
            },
        }
    }
}

/// The current holder of `key`, if any.
pub async fn holder(client: &Client, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, Error> {
    Ok(client.get(key).await?.kvs.into_iter().next())
}

/// Returns once `key` is deleted after revision `since` (at once if it no longer exists).
pub async fn wait_vacant(
    client: &Client,
    key: impl Into<Vec<u8>>,
    since: i64,
) -> Result<(), Error> {
    let key = key.into();
    let mut since = since;
    loop {
        let mut watcher = client.watch_key(key.clone(), since + 1);
        loop {
            match watcher.next().await {
                Some(Ok(batch)) if batch.events.iter().any(|e| e.kind == EventKind::Delete) => {
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(Error::Compacted { .. })) | None => break,
                Some(Err(e)) => return Err(e),
            }
        }
        // History gone: look at the key itself, and watch on from there.
        let now = client.get(key.clone()).await?;
        if now.kvs.is_empty() {
            return Ok(());
        }
        since = now.revision;
    }
}

/// Leadership of one key, held until [`Leadership::lost`] resolves or it is resigned. Dropping
/// it stops the monitoring, not the leadership (the key lives as long as its lease).
#[derive(Debug)]
pub struct Leadership {
    client: Client,
    key: Vec<u8>,
    token: i64,
    /// Cancelled once, by the monitor task, when the key is deleted or replaced or the lease is
    /// lost. Callers get child tokens.
    lost: CancellationToken,
    /// Watches the key and the lease; aborted on drop.
    monitor: JoinHandle<()>,
}

impl Leadership {
    fn start(client: Client, key: Vec<u8>, token: i64, lease: &LeaseKeeper) -> Self {
        let lost = CancellationToken::new();
        let monitor = tokio::spawn(monitor(
            client.clone(),
            key.clone(),
            token,
            lease.lost_token(),
            lost.clone(),
        ));
        Self {
            client,
            key,
            token,
            lost,
            monitor,
        }
    }

    /// The leadership key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The fencing token: the key's create_revision. Strictly larger for every later leader.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// The compare to put in every write transaction of this leader: it holds only while the
    /// key still exists with this leader's create_revision (see the module docs).
    pub fn fence(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.token)
    }

    /// Whether leadership is known lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Resolves when leadership is lost: the key deleted or replaced, or the lease lost
    /// (expired, revoked, or not renewed for a whole TTL).
    pub fn lost(&self) -> WaitForCancellationFutureOwned {
        self.lost.clone().cancelled_owned()
    }

    /// A token cancelled when leadership is lost (cancelling it does not affect this handle).
    pub fn lost_token(&self) -> CancellationToken {
        self.lost.child_token()
    }

    /// Gives leadership up: deletes the key if it is still this leader's. The lease stays.
    pub async fn resign(self) -> Result<(), Error> {
        self.lost.cancel();
        let txn = Txn::new()
            .when([self.fence()])
            .and_then([TxnOp::delete(self.key.clone())]);
        self.client.txn(txn).await.map(drop)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

/// Cancels `lost` when the lease is lost or the key stops being this leader's.
async fn monitor(
    client: Client,
    key: Vec<u8>,
    token: i64,
    lease_lost: CancellationToken,
    lost: CancellationToken,
) {
    tokio::select! {
        () = lease_lost.cancelled() => tracing::warn!(token, "leadership lost: lease lost"),
        () = key_gone(&client, &key, token) => tracing::warn!(token, "leadership lost: key deleted"),
    }
    lost.cancel();
}

/// Returns once the key no longer exists with create_revision `token`.
async fn key_gone(client: &Client, key: &[u8], token: i64) {
    let mut since = token;
    loop {
        let mut watcher = client.watch_key(key.to_vec(), since + 1);
        while let Some(Ok(batch)) = watcher.next().await {
            if batch
                .events
                .iter()
                .any(|e| e.kind == EventKind::Delete || e.kv.create_revision != token)
            {
                return;
            }
        }
        // The watch ended (history compacted): check the key, and watch on from there.
        loop {
            match client.get(key.to_vec()).await {
                Ok(now) if now.first().is_none_or(|kv| kv.create_revision != token) => return,
                Ok(now) => {
                    since = now.revision;
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "leadership check failed, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }
}
