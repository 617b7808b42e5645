//! One app's campaign task: wait for a session, wait for the app's key to be vacant and for
//! this node's turn, campaign, lead until the term ends, and start over. The rules are in
//! [`leadership`](super::leadership)'s module docs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xpool_etcd::election::{self, Campaign};
use xpool_etcd::{Client, Txn, TxnOp};

use super::leadership::{
    Leaders, Leadership, LeadershipConfig, LeadershipEvent, LossReason, ResignRequest,
};
use super::membership::{Nodes, Session};
use super::ranking;

/// The longest wait between handovers of one app (see the module docs of `leadership`).
const MAX_HAND_OVER_WAIT: Duration = Duration::from_secs(600);

/// What to do after waiting for a turn.
enum Turn {
    Campaign,
    Again,
    Exit,
}

/// One app's campaign; see the module docs.
pub(super) struct AppTask {
    pub(super) app: String,
    pub(super) key: String,
    pub(super) node_id: String,
    pub(super) client: Client,
    pub(super) config: Arc<LeadershipConfig>,
    /// This node's session, from the membership; closed when it stops.
    pub(super) session: watch::Receiver<Option<Session>>,
    /// The live node table, from the membership.
    pub(super) nodes: watch::Receiver<Nodes>,
    /// The leaders table, from the elector's mirror.
    pub(super) leaders: watch::Receiver<Leaders>,
    /// Where `Won` / `Lost` go; the elector's caller holds the receiver.
    pub(super) events: mpsc::Sender<LeadershipEvent>,
    /// Resign requests from [`Elector::resign`](super::leadership::Elector::resign).
    pub(super) resigns: mpsc::Receiver<ResignRequest>,
    /// The elector's graceful stop: resign, then end.
    pub(super) graceful: CancellationToken,
    /// This node gave the app up: it ranks itself last until someone else takes it.
    pub(super) stepped_down: bool,
    /// How long a term lasts before this node may hand the app over; `None`: never.
    pub(super) hand_over_after: Option<Duration>,
}

impl AppTask {
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        loop {
            let Some(session) = self.wait_session(&cancel).await else {
                return;
            };
            match self.wait_turn(&session, &cancel).await {
                Turn::Campaign => {}
                Turn::Again => continue,
                Turn::Exit => return,
            }
            let attempt = election::campaign(
                &self.client,
                self.key.clone(),
                self.node_id.clone(),
                &session.lease,
            );
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = attempt => outcome,
            };
            match outcome {
                Ok(Campaign::Won(term)) => {
                    if self.stepped_down {
                        // The handover found no taker: wait longer before the next one.
                        self.hand_over_after = self
                            .hand_over_after
                            .map(|d| (d * 2).min(MAX_HAND_OVER_WAIT));
                    }
                    self.stepped_down = false;
                    if !self.lead(term, &session, &cancel).await {
                        return;
                    }
                }
                Ok(Campaign::Lost { .. }) => self.someone_else_leads(),
                Err(error) => {
                    tracing::warn!(app = %self.app, %error, "campaign failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(self.config.retry_pause) => {}
                    }
                }
            }
        }
    }

    /// Another node took the app: the hold-back and the handover backoff are over.
    fn someone_else_leads(&mut self) {
        self.stepped_down = false;
        self.hand_over_after = self.config.rebalance_after;
    }

    /// The current session, once there is a live one; `None`: stop.
    async fn wait_session(&mut self, cancel: &CancellationToken) -> Option<Session> {
        loop {
            let current = self.session.borrow_and_update().clone();
            if let Some(session) = current.filter(|s| !s.lease.is_lost()) {
                return Some(session);
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = self.graceful.cancelled() => return None,
                changed = self.session.changed() => changed.ok()?,
                Some(reply) = self.resigns.recv() => { let _ = reply.send(false); }
            }
        }
    }

    /// Waits until the key is vacant and this node's delay since the vacancy has passed.
    async fn wait_turn(&mut self, session: &Session, cancel: &CancellationToken) -> Turn {
        let mut vacant_since: Option<Instant> = None;
        loop {
            let holder = self
                .leaders
                .borrow_and_update()
                .entries
                .get(&self.app)
                .map(|e| e.lease);
            match holder {
                // Ours (a campaign whose answer was lost): campaigning claims it. Unless this
                // node just gave it up and the table has not caught up: wait for that.
                Some(lease) if lease == session.lease.id() && !self.stepped_down => {
                    return Turn::Campaign;
                }
                Some(lease) if lease == session.lease.id() => vacant_since = None,
                Some(_) => {
                    vacant_since = None;
                    if self.stepped_down {
                        self.someone_else_leads();
                    }
                }
                None => {
                    vacant_since.get_or_insert_with(Instant::now);
                }
            }
            let deadline = vacant_since.map(|since| since + self.delay());
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Turn::Campaign;
            }
            let sleep = tokio::time::sleep_until(
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                () = cancel.cancelled() => return Turn::Exit,
                () = self.graceful.cancelled() => return Turn::Exit,
                () = session.lease.lost() => return Turn::Again,
                changed = self.session.changed() => {
                    return if changed.is_ok() { Turn::Again } else { Turn::Exit };
                }
                changed = self.leaders.changed() => if changed.is_err() { return Turn::Exit },
                changed = self.nodes.changed() => if changed.is_err() { return Turn::Exit },
                Some(reply) = self.resigns.recv() => { let _ = reply.send(false); }
                () = sleep, if deadline.is_some() => return Turn::Campaign,
            }
        }
    }

    /// `rank × rank_delay`, this node ranked among the live nodes and itself (last after it
    /// stepped down).
    fn delay(&self) -> Duration {
        let nodes = self.live_nodes();
        let rank = if self.stepped_down {
            nodes.len()
        } else {
            let rankings = ranking::rankings(&self.config.apps, &nodes);
            ranking::rank(&rankings, &self.app, &self.node_id)
        };
        self.config.rank_delay * u32::try_from(rank).unwrap_or(u32::MAX)
    }

    fn live_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.nodes.borrow().entries.keys().cloned().collect();
        if !nodes.contains(&self.node_id) {
            nodes.push(self.node_id.clone());
        }
        nodes
    }

    /// Leads until the term ends; sends `Won` and `Lost`. `false`: stop the task.
    async fn lead(
        &mut self,
        term: election::Leadership,
        session: &Session,
        cancel: &CancellationToken,
    ) -> bool {
        let lost = term.lost_token();
        let handle = Leadership::new(
            self.app.clone(),
            self.key.clone(),
            term.token(),
            lost.clone(),
        );
        tracing::info!(app = %self.app, token = term.token(), "leading");
        let won = LeadershipEvent::Won {
            app: self.app.clone(),
            leadership: handle,
        };
        if !self.emit(won, cancel).await {
            lost.cancel();
            return false;
        }
        let won_at = Instant::now();
        let period = self
            .config
            .rebalance_after
            .map_or(Duration::from_secs(3600), |d| {
                (d / 4).max(Duration::from_millis(50))
            });
        let mut tick = tokio::time::interval(period);
        let mut go_on = true;
        let why = loop {
            tokio::select! {
                () = term.lost() => break if session.lease.is_lost() {
                    LossReason::LeaseLost
                } else {
                    LossReason::Deposed
                },
                () = cancel.cancelled() => {
                    go_on = false;
                    break LossReason::Stopped;
                }
                () = self.graceful.cancelled() => {
                    go_on = false;
                    lost.cancel();
                    self.give_up(term, session, cancel).await;
                    break LossReason::Stopped;
                }
                Some(reply) = self.resigns.recv() => {
                    lost.cancel();
                    self.give_up(term, session, cancel).await;
                    self.stepped_down = true;
                    let _ = reply.send(true);
                    break LossReason::Resigned;
                }
                _ = tick.tick() => if self.should_hand_over(won_at, session) {
                    lost.cancel();
                    self.give_up(term, session, cancel).await;
                    self.stepped_down = true;
                    break LossReason::HandedOver;
                },
            }
        };
        lost.cancel();
        tracing::info!(app = %self.app, ?why, "no longer leading");
        let event = LeadershipEvent::Lost {
            app: self.app.clone(),
            why,
        };
        self.emit(event, cancel).await && go_on
    }

    /// Deletes the key with the term's fence, retrying until it is done, the lease is lost (the
    /// key goes with it) or the task is cancelled.
    async fn give_up(
        &self,
        term: election::Leadership,
        session: &Session,
        cancel: &CancellationToken,
    ) {
        let fence = term.fence();
        let mut result = term.resign().await;
        while let Err(error) = result {
            if session.lease.is_lost() || cancel.is_cancelled() {
                return;
            }
            tracing::warn!(app = %self.app, %error, "resigning failed; retrying");
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.config.retry_pause) => {}
            }
            let txn = Txn::new()
                .when([fence.clone()])
                .and_then([TxnOp::delete(self.key.clone())]);
            result = self.client.txn(txn).await.map(drop);
        }
    }

    /// Whether this node leads more than its share and this app is one to hand over: among
    /// the apps it leads whose preferred node is another live, settled one, in name order, the
    /// first (led − capacity).
    fn should_hand_over(&self, won_at: Instant, session: &Session) -> bool {
        let Some(after) = self.hand_over_after else {
            return false;
        };
        if won_at.elapsed() < after {
            return false;
        }
        let nodes = self.live_nodes();
        let apps = &self.config.apps;
        let capacity = ranking::capacity(apps.len(), nodes.len());
        let leaders = self.leaders.borrow();
        let mine: Vec<&String> = apps
            .iter()
            .filter(|app| {
                leaders
                    .entries
                    .get(*app)
                    .is_some_and(|e| e.lease == session.lease.id())
            })
            .collect();
        let Some(excess) = mine.len().checked_sub(capacity).filter(|&e| e > 0) else {
            return false;
        };
        let rankings = ranking::rankings(apps, &nodes);
        let table = self.nodes.borrow();
        let settled = |node: &str| {
            table
                .entries
                .get(node)
                .is_some_and(|e| e.seen.elapsed() >= after)
        };
        mine.into_iter()
            .filter(|app| {
                rankings
                    .get(*app)
                    .and_then(|r| r.first())
                    .is_some_and(|preferred| *preferred != self.node_id && settled(preferred))
            })
            .take(excess)
            .any(|app| *app == self.app)
    }

    /// Sends an event; when cancelled meanwhile, sends it only if there is room. `false`: the
    /// task was cancelled.
    async fn emit(&self, event: LeadershipEvent, cancel: &CancellationToken) -> bool {
        tokio::select! {
            permit = self.events.reserve() => {
                if let Ok(permit) = permit {
                    permit.send(event);
                }
                true
            }
            () = cancel.cancelled() => {
                let _ = self.events.try_send(event);
                false
            }
        }
    }
}
