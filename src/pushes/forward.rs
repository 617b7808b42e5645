//! Cluster mode: a push about an app another replica leads goes to that replica's receiver,
//! and its answer goes back to the platform as is.
//!
//! Only an app's leader may write the app's records (under its term, see `cluster::writer`),
//! and only it holds the app's bindings in memory to answer an X-mode callin from. The platform
//! pushes to whichever replica its URL reaches (a load balancer in front of them all), so the
//! replica that took the push checks what it can check alone — the peer, the method, the body,
//! the kind, the signature — finds the app the push is about, and when another replica leads
//! it, sends the same request there: the same path, headers (the signature among them) and
//! body, marked with [`FORWARDED_BY`]. The leader checks it all again as for any push, so a
//! forwarded push is taken only from a peer its `callbacks.allow_from` allows: with
//! `allow_from` set, it must cover the replicas' own addresses.
//!
//! A push is forwarded once at most: one that was forwarded already and finds that this
//! replica does not lead its app (leadership moved meanwhile) is answered 503, and the
//! platform sends it again. No leader known (an election under way), the leader taking no
//! pushes, or the leader unreachable: 503 as well. Nothing is answered 200 that the leader did
//! not store.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::Value;

use super::Receiver;
use super::apps::{PushApp, Signed};
use super::reply::{Outcome, Reply};
use crate::platform::push::PushKind;

/// The header a replica adds to a push it forwards: its node id. A push that carries it is
/// never forwarded again.
pub const FORWARDED_BY: &str = "x-xpool-forwarded-by";

/// Longest a forwarded push may take on the leader, answer included. A callin's caller is
/// waiting; the platform gives up on an answer well before this.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a push about an app is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRoute {
    /// Here: this replica leads the app (or it is no app of the cluster's).
    Here,
    /// At the receiver `url` (`http(s)://host:port`) of the app's leader `node_id`.
    Forward { url: String, node_id: String },
    /// Nowhere right now, for the reason given: the platform should send it again later.
    Unavailable(String),
}

/// Where each app's pushes go: the cluster's leaders table (`daemon::router`).
pub trait PushRouter: Debug + Send + Sync {
    fn push_route(&self, app: &str) -> PushRoute;
}

/// Forwarding in cluster mode: the router and the client that sends pushes on.
#[derive(Debug)]
pub struct Forwarding {
    pub router: std::sync::Arc<dyn PushRouter>,
    /// This replica's node id, sent in [`FORWARDED_BY`].
    pub node_id: String,
    pub http: reqwest::Client,
}

/// A push as it arrived, to send on unchanged.
pub(super) struct Arrived<'a> {
    pub peer: SocketAddr,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Receiver {
    /// In cluster mode, the answer to a push about an app this replica does not lead: the
    /// leader's, or 503. `None`: handle the push here.
    pub(super) async fn forward_if_led_elsewhere(
        &self,
        kind: PushKind,
        value: &Value,
        signed: Signed<'_>,
        arrived: &Arrived<'_>,
    ) -> Option<Reply> {
        let forwarding = self.forwarding.as_ref()?;
        let app = self.push_app(kind, value, signed)?;
        let (url, node_id) = match forwarding.router.push_route(&app.name) {
            PushRoute::Here => return None,
            PushRoute::Unavailable(why) => {
                return Some(Reply::refused(Some(kind), Outcome::Unavailable, why));
            }
            PushRoute::Forward { url, node_id } => (url, node_id),
        };
        if let Some(from) = arrived.headers.get(FORWARDED_BY) {
            let from = from.to_str().unwrap_or("?");
            let note = format!(
                "a push forwarded by replica {from} for app {}, which replica {node_id} leads \
                 now (leadership moved); retry",
                app.name
            );
            return Some(Reply::refused(Some(kind), Outcome::Unavailable, note));
        }
        Some(forwarding.send(kind, &url, &node_id, arrived).await)
    }

    /// The app a push is about, found as its kind's handler finds it: by the signing key, by
    /// the body's app key or X number, or the only app. A list push (CDRs, number status) goes
    /// by its first entry: the platform sends each app's pushes to that app's URLs.
    fn push_app<'a>(
        &'a self,
        kind: PushKind,
        value: &Value,
        signed: Signed<'a>,
    ) -> Option<&'a PushApp> {
        let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
        let by_number =
            |pointer: &str| text(pointer).and_then(|x| self.apps.by_number(&self.pool, x));
        let by_key = |pointer: &str| text(pointer).and_then(|key| self.apps.by_key(key));
        match kind {
            PushKind::CallEvent => signed
                .app()
                .or_else(|| by_number("/statusInfo/called"))
                .or_else(|| by_number("/statusInfo/origCalleeNum"))
                .or_else(|| self.apps.only()),
            PushKind::Fee => signed
                .app()
                .or_else(|| self.apps.only())
                .or_else(|| by_key("/feeLst/0/appKey"))
                .or_else(|| by_number("/feeLst/0/bindNum")),
            PushKind::NumStatus => by_number("/numInfo/0/number"),
            PushKind::Sms => signed
                .app()
                .or_else(|| by_key("/appKey"))
                .or_else(|| by_number("/smsEvent/virtualNumber"))
                .or_else(|| self.apps.only()),
        }
    }
}

impl Forwarding {
    /// Sends the push to the leader's receiver at `url`; its answer, or 503.
    async fn send(&self, kind: PushKind, url: &str, node_id: &str, arrived: &Arrived<'_>) -> Reply {
        let mut headers = arrived.headers.clone();
        for hop in [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::TE,
            header::UPGRADE,
            header::PROXY_AUTHORIZATION,
        ] {
            headers.remove(hop);
        }
        if let Ok(me) = HeaderValue::from_str(&self.node_id) {
            headers.insert(FORWARDED_BY, me);
        }
        if let Ok(peer) = HeaderValue::from_str(&arrived.peer.ip().to_string()) {
            headers.append("x-forwarded-for", peer);
        }
        let sent = self
            .http
            .post(format!("{url}{}", arrived.path))
            .headers(headers)
            .body(arrived.body.to_vec())
            .timeout(FORWARD_TIMEOUT)
            .send();
        let unavailable = |why: String| {
            let note = format!(
                "the push could not be forwarded to replica {node_id}, which leads its app \
                 ({why}); retry"
            );
            Reply::refused(Some(kind), Outcome::Unavailable, note)
        };
        let response = match sent.await {
            Ok(response) => response,
            Err(e) => return unavailable(describe(&e)),
        };
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        match response.bytes().await {
            Ok(body) => Reply::relayed(kind, status, content_type, body.to_vec()),
            Err(e) => unavailable(describe(&e)),
        }
    }
}

/// Why a forwarded push failed, without the URL's query (there is none) repeated.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {FORWARD_TIMEOUT:?}")
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        text
    }
}
