//! Cluster mode in the daemon (`[cluster]`, docs/cluster.md): this replica's membership, its
//! copy of etcd, the leader's write path, and per-app leadership wired to the pool.
//!
//! - **Start** ([`ClusterNode::start`]): the copy catches up with etcd and keeps following it;
//!   the writer commits the writes of the apps this replica leads; the node registers and
//!   campaigns for every configured app.
//! - **Won** an app: wait until the copy has applied the revision at which the leader key was
//!   created (every write of earlier terms is then in the local store), rebuild the app's pool
//!   from the store under the new term, add its configured numbers, and serve it. Expiry,
//!   reconciliation and the platform client run only for the apps served here, so the
//!   platform sees one client per app.
//! - **Lost** an app (lease lost, deposed, handed over), or the writer ended the term (a
//!   fence that failed, an outcome etcd did not confirm): stop serving it at once; for an
//!   ended term, resign so that a replica with a sound view takes it (this one too, later,
//!   rebuilt from its copy).
//! - **Stop**: resign every app, leave the cluster, stop the copy and the writer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::copy::Copy;
use crate::cluster::keys::Keys;
use crate::cluster::leadership::{Elector, Leaders, LeadershipConfig, LeadershipEvent};
use crate::cluster::membership::{Membership, MembershipConfig, Nodes};
use crate::cluster::writer::{Ended, Writer};
use crate::cluster::{Prefix, etcd_client};
use crate::config::{ClusterConfig, Config};
use crate::lifecycle::Pool;
use crate::store::{Store, Term};

/// The deadline of each etcd call.
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// This replica's part in the cluster; see the module docs.
#[derive(Debug)]
pub struct ClusterNode {
    membership: Membership,
    elector: Arc<Elector>,
    /// Stops the copy and the writer (after the elector has resigned).
    stop_replication: CancellationToken,
}

impl ClusterNode {
    /// Joins the cluster and starts following etcd, writing the led apps' writes and
    /// campaigning; `pool` serves the apps this replica comes to lead.
    pub async fn start(
        cluster: &ClusterConfig,
        callbacks: Option<String>,
        config: &Config,
        store: &Arc<Store>,
        pool: &Arc<Pool>,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> anyhow::Result<ClusterNode> {
        let client = etcd_client(cluster, ETCD_TIMEOUT).context("the etcd client")?;
        let keys = Keys::new(cluster.key_prefix.as_bytes());
        let copy = Copy::new(
            client.clone(),
            Arc::clone(store),
            keys.clone(),
            cluster.node_id.clone(),
        );
        let applied = copy.applied();
        let mut writer = Writer::new(
            client.clone(),
            Arc::clone(store),
            keys,
            cluster.node_id.clone(),
            applied.clone(),
        )
        .context("enabling the leader's write path")?;
        let ended = writer.ended();
        let stop_replication = cancel.child_token();
        tasks.spawn(copy.run(stop_replication.clone()));
        tasks.spawn(writer.run(stop_replication.clone()));
        let membership = Membership::join(
            client,
            Prefix::new(cluster.key_prefix.clone()),
            MembershipConfig::new(cluster, callbacks),
            cancel,
        )
        .await
        .context("joining the cluster")?;
        let apps = config.apps.iter().map(|app| app.name.clone()).collect();
        let (elector, events) = Elector::start(&membership, LeadershipConfig::new(apps), cancel)
            .await
            .context("starting the campaigns")?;
        let elector = Arc::new(elector);
        let follow = Follow {
            pool: Arc::clone(pool),
            elector: Arc::clone(&elector),
            applied,
            numbers: config
                .apps
                .iter()
                .map(|app| {
                    let numbers = app
                        .numbers
                        .iter()
                        .map(|n| (n.number.clone(), n.area_code.clone()))
                        .collect();
                    (app.name.clone(), numbers)
                })
                .collect(),
        };
        tasks.spawn(follow.run(events, ended, cancel.clone()));
        tracing::info!(node_id = %cluster.node_id, "joined the cluster");
        Ok(ClusterNode {
            membership,
            elector,
            stop_replication,
        })
    }

    /// The leaders table, kept current.
    pub fn leaders(&self) -> watch::Receiver<Leaders> {
        self.elector.leaders()
    }

    /// The live replicas, kept current.
    pub fn nodes(&self) -> watch::Receiver<Nodes> {
        self.membership.nodes()
    }

    /// This replica's etcd session; `None` while its lease is lost and it rejoins.
    pub fn session(&self) -> watch::Receiver<Option<crate::cluster::membership::Session>> {
        self.membership.session()
    }

    /// Resigns every app (another replica takes them at once), leaves the cluster, and
    /// stops the copy and the writer.
    pub async fn stop(self) {
        self.elector.stop().await;
        if let Err(e) = self.membership.leave().await {
            tracing::warn!(error = %e, "leaving the cluster; the lease expires on its own");
        }
        self.stop_replication.cancel();
    }
}

/// Turns leadership events into the apps the pool serves.
struct Follow {
    pool: Arc<Pool>,
    elector: Arc<Elector>,
    applied: watch::Receiver<u64>,
    /// Each app's configured numbers, added when this replica starts leading it.
    numbers: std::collections::HashMap<String, Vec<(String, String)>>,
}

impl Follow {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<LeadershipEvent>,
        mut ended: mpsc::UnboundedReceiver<Ended>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                event = events.recv() => match event {
                    None => return,
                    Some(LeadershipEvent::Won { app, leadership }) => {
                        let term = Arc::new(Term { app: app.clone(), token: leadership.token() });
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = leadership.lost() => {}
                            () = self.lead(term) => {}
                        }
                    }
                    Some(LeadershipEvent::Lost { app, why }) => {
                        if self.pool.step_down(&app) {
                            tracing::info!(app, ?why, "no longer leading the app");
                        }
                    }
                },
                Some(end) = ended.recv() => self.end(end).await,
            }
        }
    }

    /// Starts serving `term`'s app once the copy holds every earlier write.
    async fn lead(&mut self, term: Arc<Term>) {
        let won_at = u64::try_from(term.token).unwrap_or(0);
        if self.applied.wait_for(|r| *r >= won_at).await.is_err() {
            return; // the copy stopped: shutting down
        }
        let app = term.app.clone();
        if let Err(e) = self.pool.lead(&app, term).await {
            tracing::error!(app, error = %e, "cannot serve the app this replica leads; resigning it");
            self.pool.step_down(&app);
            let _ = self.elector.resign(&app).await;
            return;
        }
        let numbers = self.numbers.get(&app).cloned().unwrap_or_default();
        if !numbers.is_empty()
            && let Err(e) = self.pool.add_configured_numbers(&app, &numbers).await
        {
            tracing::warn!(app, error = %e, "adding the configured numbers; retried at the next term");
        }
        tracing::info!(app, revision = won_at, "leading the app");
    }

    /// The writer ended a term: stop serving the app and give it up, so that the next term
    /// starts from what etcd holds.
    async fn end(&mut self, end: Ended) {
        let app = &end.term.app;
        if !self.pool.serves_term(&end.term) {
            return; // an earlier term, already over
        }
        tracing::warn!(app, why = %end.why, "a write of the app could not be confirmed; resigning it");
        self.pool.step_down(app);
        if let Err(e) = self.elector.resign(app).await {
            tracing::warn!(app, error = %e, "resigning the app; its lease ends the term");
        }
    }
}
