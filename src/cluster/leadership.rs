//! Per-app leadership: one campaign per configured app on `P leader/<app>` (value: the node
//! id), attached to this replica's lease from [`membership`](super::membership), through
//! [`xpool_etcd::election`]. Why a deposed leader's writes can never commit once another
//! replica leads — the fencing argument — is in docs/cluster.md ("Fencing") and
//! [`xpool_etcd::election`]; every write of the app's leader carries [`Leadership::fence`].
//!
//! # Who campaigns when
//! [`ranking`](super::ranking) gives each app a ranking of the live nodes (this one included).
//! When an app's key is vacant, a node campaigns `rank × rank_delay` after it saw the vacancy
//! (re-evaluated whenever nodes join or leave), so the preferred node takes it at once and a
//! lone survivor still takes everything. A node that gave an app up ([`Elector::resign`], a
//! handover) ranks itself last for the next vacancy, so that the app really moves.
//!
//! # Spread after joins
//! The first replica up takes every app, and a replica that comes back finds its apps led by
//! the others. With `rebalance_after` set, a node that leads more than ⌈apps / live nodes⌉
//! apps hands over the excess: apps it has led for `rebalance_after` whose preferred node is
//! another one, live for `rebalance_after` too. Each handover moves an app to its preferred
//! node, so this ends once no node is over the bound; a handover costs the app a moment of
//! unavailability (its in-flight writes fail their fence and are retried), nothing more. A node
//! that wins back an app it handed over (the preferred node did not take it) waits twice as
//! long before the next handover of that app.
//!
//! # Events
//! `Won { app, leadership }` when this node starts leading an app, `Lost { app, why }` when it
//! stops, alternating per app. [`Leadership::lost`] resolves before or when `Lost` is sent;
//! the store stops writing for the app on whichever it sees first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use xpool_etcd::{Compare, CompareOp};

use super::Error;
use super::campaign::AppTask;
use super::membership::Membership;
use super::mirror::{Mirror, Snapshot};

/// The leaders table: every `P leader/<app>` key, by app; the value is the leader's node id
/// and the entry's `create_revision` its fencing token.
pub type Leaders = Snapshot<String>;

/// An app's leader, as the leaders table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leading node's id.
    pub node_id: String,
    /// Its fencing token (the key's create_revision).
    pub token: i64,
}

impl Snapshot<String> {
    /// `app`'s leader, if it has one.
    pub fn leader(&self, app: &str) -> Option<Leader> {
        self.entries.get(app).map(|entry| Leader {
            node_id: entry.value.clone(),
            token: entry.create_revision,
        })
    }
}

/// How the elector campaigns.
#[derive(Debug, Clone)]
pub struct LeadershipConfig {
    /// The apps to campaign for (every replica should configure the same ones).
    pub apps: Vec<String>,
    /// The wait per rank before campaigning for a vacant app. Default 1 s.
    pub rank_delay: Duration,
    /// Hand over excess apps after this long (see the module docs); `None`: never. Default 10 s.
    pub rebalance_after: Option<Duration>,
    /// The pause after a failed campaign or resign. Default 500 ms.
    pub retry_pause: Duration,
}

impl LeadershipConfig {
    /// The defaults, for `apps`.
    pub fn new(apps: Vec<String>) -> Self {
        LeadershipConfig {
            apps,
            rank_delay: Duration::from_secs(1),
            rebalance_after: Some(Duration::from_secs(10)),
            retry_pause: Duration::from_millis(500),
        }
    }
}

/// What happened to one app's leadership on this node.
#[derive(Debug)]
pub enum LeadershipEvent {
    /// This node leads `app` from now on, until `leadership.lost()` resolves.
    Won {
        /// The app.
        app: String,
        /// The term: fence and loss signal.
        leadership: Leadership,
    },
    /// This node no longer leads `app`.
    Lost {
        /// The app.
        app: String,
        /// Why.
        why: LossReason,
    },
}

/// Why leadership of an app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The node's lease was lost (etcd unreachable for a whole TTL, or revoked).
    LeaseLost,
    /// The key was deleted or replaced while the lease looked alive (an operator's delete, or
    /// a revoked lease whose keys' deletion arrived before the keeper heard of it).
    Deposed,
    /// [`Elector::resign`] gave it up.
    Resigned,
    /// Handed over to the app's preferred node (see the module docs).
    HandedOver,
    /// The elector stopped.
    Stopped,
}

/// One term of this node's leadership of an app. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    app: String,
    key: String,
    token: i64,
    /// Cancelled by the app's campaign task when the term ends, for whatever reason.
    lost: CancellationToken,
}

impl Leadership {
    pub(super) fn new(app: String, key: String, token: i64, lost: CancellationToken) -> Self {
        Leadership {
            app,
            key,
            token,
            lost,
        }
    }

    /// The app.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The fencing token: the leadership key's create_revision, larger for every later term.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// The compare every write of this term carries: true only while the key still exists
    /// with this term's create_revision (docs/cluster.md, "Fencing").
    pub fn fence(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.token)
    }

    /// Whether the term is known to be over.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Resolves when the term is over (at once if it is).
    pub fn lost(&self) -> WaitForCancellationFutureOwned {
        self.lost.clone().cancelled_owned()
    }
}

/// A request to give an app up; answered with whether this node led it.
pub(super) type ResignRequest = oneshot::Sender<bool>;

/// Campaigns for every configured app; see the module docs.
#[derive(Debug)]
pub struct Elector {
    /// The leaders table, sent by the mirror task.
    leaders: watch::Receiver<Leaders>,
    /// Each app's resign requests, received by its campaign task.
    resigns: HashMap<String, mpsc::Sender<ResignRequest>>,
    /// Abrupt stop (a child of the caller's token): tasks end without touching etcd.
    cancel: CancellationToken,
    /// Graceful stop: every led app is resigned first.
    graceful: CancellationToken,
    /// The campaign tasks.
    campaigns: TaskTracker,
    /// The leaders table's mirror task.
    mirror: TaskTracker,
}

impl Elector {
    /// Loads the leaders table and starts one campaign per app under `membership`'s sessions.
    /// Returns the elector and the events of this node's leaderships (keep receiving them:
    /// campaigns wait while the channel is full). Cancelling `cancel` stops everything at once
    /// without resigning, as a crash would: the keys go with the lease.
    pub async fn start(
        membership: &Membership,
        config: LeadershipConfig,
        cancel: &CancellationToken,
    ) -> Result<(Elector, mpsc::Receiver<LeadershipEvent>), Error> {
        let mut seen = HashSet::new();
        if let Some(app) = config.apps.iter().find(|app| !seen.insert(*app)) {
            return Err(Error::Invalid(format!("app {app:?} is configured twice")));
        }
        let client = membership.client().clone();
        let prefix = membership.prefix().clone();
        let (mirror, leaders) = Mirror::load(client.clone(), prefix.leaders(), |v| {
            String::from_utf8(v.to_vec()).ok()
        })
        .await?;
        let cancel = cancel.child_token();
        let graceful = CancellationToken::new();
        let mirror_task = TaskTracker::new();
        mirror_task.spawn(mirror.run(cancel.clone()));
        mirror_task.close();
        let (events, events_rx) = mpsc::channel(config.apps.len() * 4 + 4);
        let config = Arc::new(config);
        let campaigns = TaskTracker::new();
        let mut resigns = HashMap::new();
        for app in config.apps.iter() {
            let (tx, rx) = mpsc::channel(4);
            resigns.insert(app.clone(), tx);
            let task = AppTask {
                key: prefix.leader(app),
                app: app.clone(),
                node_id: membership.node_id().to_owned(),
                client: client.clone(),
                config: Arc::clone(&config),
                session: membership.session(),
                nodes: membership.nodes(),
                leaders: leaders.clone(),
                events: events.clone(),
                resigns: rx,
                graceful: graceful.clone(),
                stepped_down: false,
                hand_over_after: config.rebalance_after,
            };
            campaigns.spawn(task.run(cancel.clone()));
        }
        campaigns.close();
        let elector = Elector {
            leaders,
            resigns,
            cancel,
            graceful,
            campaigns,
            mirror: mirror_task,
        };
        Ok((elector, events_rx))
    }

    /// The leaders table, kept current.
    pub fn leaders(&self) -> watch::Receiver<Leaders> {
        self.leaders.clone()
    }

    /// Gives up the current term of `app` if this node leads it (the store calls this when a
    /// write's outcome is unknown): the term's `lost()` resolves, the key is deleted with the
    /// term's fence, `Lost { why: Resigned }` is sent, and this node campaigns again only after
    /// every other node's turn. `Ok(false)`: this node did not lead `app`.
    pub async fn resign(&self, app: &str) -> Result<bool, Error> {
        let requests = self
            .resigns
            .get(app)
            .ok_or_else(|| Error::Invalid(format!("no app {app:?} is configured")))?;
        let (reply, answer) = oneshot::channel();
        requests.send(reply).await.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Stops gracefully: every led app is resigned (and `Lost { why: Stopped }` sent), then the
    /// tasks end. The lease is the membership's: [`Membership::leave`] revokes it.
    pub async fn stop(&self) {
        self.graceful.cancel();
        self.campaigns.wait().await;
        self.cancel.cancel();
        self.mirror.wait().await;
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
