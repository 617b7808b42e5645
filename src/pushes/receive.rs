//! The path of every push: the peer is allowed, the method is POST, the body fits and is JSON
//! of a push kind this path takes, the signature (if the signing app checks them) is good;
//! then the kind's handler. Each step refuses with its own status and outcome, and nothing a
//! push holds can make the receiver fail: a refused push is counted, logged (once a minute per
//! reason) and answered, and the next one is served as if nothing happened.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse as _, Response};
use http_body::Body as _;
use serde_json::Value;
use time::OffsetDateTime;

use super::Receiver;
use super::forward::Arrived;
use super::reply::{Outcome, Reply, describe_json_error};
use super::signature;
use crate::platform::push::PushKind;

/// Longest a push's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The axum handler of every path and method.
pub(super) async fn receive(
    State(receiver): State<Arc<Receiver>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrived = Instant::now();
    let reply = receiver
        .handle(peer, &method, uri.path(), &headers, body, arrived)
        .await;
    receiver.settle(&reply, Some(peer.ip()));
    reply.into_response()
}

/// The kind a path takes, for the per-kind paths; `None`: any kind.
fn path_kind(path: &str) -> Option<PushKind> {
    match path.trim_end_matches('/') {
        "/callin" | "/events" => Some(PushKind::CallEvent),
        "/cdr" => Some(PushKind::Fee),
        "/numstatus" => Some(PushKind::NumStatus),
        "/sms" => Some(PushKind::Sms),
        _ => None,
    }
}

/// Why a body could not be read.
enum ReadError {
    TooLarge,
    Broken,
}

impl Receiver {
    async fn handle(
        self: &Arc<Self>,
        peer: SocketAddr,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Body,
        arrived: Instant,
    ) -> Reply {
        if !self.settings.allows(peer.ip()) {
            let note = "the peer is not in callbacks.allow_from";
            return Reply::refused(None, Outcome::Forbidden, note);
        }
        if method != Method::POST {
            return Reply::refused(None, Outcome::BadMethod, "pushes are POSTed");
        }
        let bytes = match self.read_body(headers, body).await {
            Ok(bytes) => bytes,
            Err(reply) => return reply,
        };
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(e) => {
                let note = format!("the body is not JSON: {}", describe_json_error(&e));
                return Reply::refused(None, Outcome::BadJson, note);
            }
        };
        let Some(kind) = PushKind::of(&value) else {
            let note = "the body is none of the push kinds (it has no statusInfo, feeLst, \
                        smsEvent, or eventType numStatus)";
            return Reply::refused(None, Outcome::UnknownKind, note);
        };
        if let Some(expected) = path_kind(path).filter(|expected| *expected != kind) {
            let note = format!(
                "{} takes {} pushes, and this is a {} push",
                path.trim_end_matches('/'),
                expected.as_str(),
                kind.as_str()
            );
            return Reply::refused(Some(kind), Outcome::WrongPath, note);
        }
        let signature = signature::read(headers);
        let now = OffsetDateTime::now_utc();
        let signed = match self
            .apps
            .signer(signature, now, self.settings.max_clock_skew_seconds)
        {
            Ok(signed) => signed,
            Err(why) => {
                let note = format!("the signature is refused: {why}");
                return Reply::refused(Some(kind), Outcome::BadSignature, note);
            }
        };
        let forwarded = Arrived {
            peer,
            path,
            headers,
            body: &bytes,
        };
        if let Some(reply) = self
            .forward_if_led_elsewhere(kind, &value, signed, &forwarded)
            .await
        {
            return reply;
        }
        match kind {
            PushKind::CallEvent => self.call_event(value, signed, arrived).await,
            PushKind::Fee => self.fees(value, signed).await,
            PushKind::NumStatus => self.num_status(value, signed).await,
            PushKind::Sms => self.sms(value, signed).await,
        }
    }

    /// The body, at most `callbacks.max_push_bytes` of it, within [`BODY_TIMEOUT`].
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Reply> {
        let max = self.settings.max_push_bytes;
        let too_large = || {
            let note = format!("the body is larger than {max} bytes (callbacks.max_push_bytes)");
            Reply::refused(None, Outcome::TooLarge, note)
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        match tokio::time::timeout(BODY_TIMEOUT, read_limited(body, max)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(ReadError::TooLarge)) => Err(too_large()),
            Ok(Err(ReadError::Broken)) => {
                Err(Reply::refused(None, Outcome::BadBody, "the body broke off"))
            }
            Err(_) => {
                let note = format!("the body did not arrive within {BODY_TIMEOUT:?}");
                Err(Reply::refused(None, Outcome::BadBody, note))
            }
        }
    }

    /// Counts a finished push and logs why it was refused or dropped (naming the `peer` that
    /// sent it, when the push is still being answered).
    pub(super) fn settle(&self, reply: &Reply, peer: Option<IpAddr>) {
        let Some(outcome) = reply.outcome else {
            return;
        };
        self.metrics.pushes.push(reply.kind, outcome.as_str());
        if let Some(note) = &reply.note {
            self.warnings.warn(reply.kind, outcome, note, peer);
        }
    }
}

/// Reads `body` whole, giving up as soon as it is longer than `max`.
async fn read_limited(mut body: Body, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| ReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(ReadError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_kind_paths_take_their_kind_and_others_any() {
        assert_eq!(path_kind("/callin"), Some(PushKind::CallEvent));
        assert_eq!(path_kind("/events/"), Some(PushKind::CallEvent));
        assert_eq!(path_kind("/cdr"), Some(PushKind::Fee));
        assert_eq!(path_kind("/numstatus"), Some(PushKind::NumStatus));
        assert_eq!(path_kind("/sms"), Some(PushKind::Sms));
        assert_eq!(path_kind("/"), None);
        assert_eq!(path_kind("/status"), None);
        assert_eq!(path_kind("/xpool/cdr"), None);
    }

    #[tokio::test]
    async fn a_body_is_read_up_to_its_limit() {
        let read = |text: &'static str, max| read_limited(Body::from(text), max);
        assert_eq!(read("{}", 2).await.ok(), Some(b"{}".to_vec()));
        assert!(matches!(read("{ }", 2).await, Err(ReadError::TooLarge)));
    }
}
