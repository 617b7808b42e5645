//! Cluster mode: where a call goes (`cluster::forward::Router`), from this replica's pool and
//! its view of the leaders table and the live replicas.
//!
//! - A write, or a read the caller asked to be consistent, about an app this replica serves is
//!   served here; about another app, it goes to the app's leader at its advertised address.
//! - A plain read is served from the local copy of etcd (it may trail the leader by the copy's
//!   lag).
//! - A call naming a binding id is routed by the app of the binding in the local copy; one the
//!   copy does not hold (yet) is answered here (NOT_FOUND), as a plain read would be.
//! - No leader known (an election under way), or this replica won the app and is still catching
//!   up: `UNAVAILABLE` (`LEADER_UNAVAILABLE`), which a client retries.
//! - A push from the platform goes where a write about its app would: to the leader's push
//!   receiver (`pushes::forward`).

use std::sync::Arc;

use tokio::sync::watch;

use super::health::{AppReach, Reach};
use crate::cluster::forward::{CallKind, Route, Router, Target};
use crate::cluster::leadership::Leaders;
use crate::cluster::membership::{Nodes, Session};
use crate::lifecycle::{BindingId, Pool};
use crate::pushes::{PushRoute, PushRouter};
use crate::store::Store;

/// The daemon's [`Router`]; see the module docs.
#[derive(Debug)]
pub struct ClusterRouter {
    pub node_id: String,
    pub pool: Arc<Pool>,
    pub store: Arc<Store>,
    pub leaders: watch::Receiver<Leaders>,
    pub nodes: watch::Receiver<Nodes>,
    /// This replica's etcd session (`None` while its lease is lost): without one, its view
    /// of the leaders may be stale, and its health says so.
    pub session: watch::Receiver<Option<Session>>,
    /// `http` or `https` (the replicas' gRPC listeners all use the same).
    pub scheme: &'static str,
    /// `http` or `https`: the replicas' push receivers (`[callbacks.tls]`).
    pub callbacks_scheme: &'static str,
}

impl Router for ClusterRouter {
    fn route(&self, target: &Target<'_>, kind: CallKind) -> Route {
        let app = match target {
            Target::App(app) => (*app).to_owned(),
            Target::Binding(id) => {
                let record = BindingId::parse(id)
                    .and_then(|id| self.store.get_binding(&id.into()).ok().flatten());
                match record {
                    Some(record) => record.app,
                    None => return Route::Local,
                }
            }
        };
        if !self.pool.is_configured(&app) || kind == CallKind::Read || self.pool.serves(&app) {
            return Route::Local;
        }
        let Some(leader) = self.leaders.borrow().leader(&app) else {
            return Route::Unavailable(format!(
                "no replica leads app {app:?} right now (an election is under way); retry"
            ));
        };
        if leader.node_id == self.node_id {
            return Route::Unavailable(format!(
                "this replica is taking over app {app:?} (catching up with etcd); retry"
            ));
        }
        match self.nodes.borrow().entries.get(&leader.node_id) {
            Some(node) => Route::Forward {
                addr: format!("{}://{}", self.scheme, node.value.advertise_addr),
                node_id: leader.node_id,
            },
            None => Route::Unavailable(format!(
                "app {app:?}'s leader {:?} is not registered (its lease is ending); retry",
                leader.node_id
            )),
        }
    }
}

impl PushRouter for ClusterRouter {
    /// A push goes where a write about its app would, to the leader's push receiver.
    fn push_route(&self, app: &str) -> PushRoute {
        let node_id = match self.route(&Target::App(app), CallKind::Write) {
            Route::Local => return PushRoute::Here,
            Route::Unavailable(why) => return PushRoute::Unavailable(why),
            Route::Forward { node_id, .. } => node_id,
        };
        let callbacks = self
            .nodes
            .borrow()
            .entries
            .get(&node_id)
            .and_then(|node| node.value.callbacks_addr.clone());
        match callbacks {
            Some(addr) => PushRoute::Forward {
                url: format!("{}://{addr}", self.callbacks_scheme),
                node_id,
            },
            None => PushRoute::Unavailable(format!(
                "app {app:?}'s leader {node_id:?} takes no pushes (it has no \
                 [callbacks] listen); retry"
            )),
        }
    }
}

impl AppReach for ClusterRouter {
    fn reach(&self, app: &str) -> Reach {
        if self.session.borrow().is_none() {
            return Reach::Unreachable;
        }
        match self.route(&Target::App(app), CallKind::Write) {
            Route::Local if self.pool.serves(app) => Reach::Here,
            Route::Local | Route::Unavailable(_) => Reach::Unreachable,
            Route::Forward { .. } => Reach::Forwarded,
        }
    }
}

/// A single node serves every app it has a pool for.
#[derive(Debug)]
pub struct SingleNode(pub Arc<Pool>);

impl AppReach for SingleNode {
    fn reach(&self, app: &str) -> Reach {
        if self.0.serves(app) {
            Reach::Here
        } else {
            Reach::Unreachable
        }
    }
}
