//! What the receiver answers a push, what it counts, and the warnings it logs (each reason at
//! most once a minute, so a platform retrying a bad push six times, or a flood of them, cannot
//! fill the log).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::platform::push::{CONTENT_TYPE, PushKind};

/// The same warning is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What came of a push: the `outcome` label of `xpool_pushes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Outcome {
    /// Stored (or answered) as new.
    Ok,
    /// Already stored: a retried or repeated push.
    Duplicate,
    /// Not JSON, or a field of the wrong type.
    BadJson,
    /// JSON of none of the push kinds.
    UnknownKind,
    /// A kind another path than this one takes.
    WrongPath,
    /// Larger than `callbacks.max_push_bytes`.
    TooLarge,
    /// The body broke off or did not arrive in time.
    BadBody,
    /// Not signed, or not validly, for an app that verifies signatures.
    BadSignature,
    /// From a peer outside `callbacks.allow_from`.
    Forbidden,
    /// Not a POST.
    BadMethod,
    /// For no configured app; answered 200 (retrying cannot help) and dropped.
    UnknownApp,
    /// Cluster mode: sent on to the app's leader, whose answer it got (the leader counts
    /// what came of it).
    Forwarded,
    /// The store could not take it; answered 503, so the platform retries.
    Unavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Duplicate => "duplicate",
            Outcome::BadJson => "bad_json",
            Outcome::UnknownKind => "unknown_kind",
            Outcome::WrongPath => "wrong_path",
            Outcome::TooLarge => "too_large",
            Outcome::BadBody => "bad_body",
            Outcome::BadSignature => "bad_signature",
            Outcome::Forbidden => "forbidden",
            Outcome::BadMethod => "bad_method",
            Outcome::UnknownApp => "unknown_app",
            Outcome::Forwarded => "forwarded",
            Outcome::Unavailable => "unavailable",
        }
    }

    /// The HTTP status of a push that ended with this outcome.
    fn status(self) -> StatusCode {
        match self {
            Outcome::Ok | Outcome::Duplicate | Outcome::UnknownApp | Outcome::Forwarded => {
                StatusCode::OK
            }
            Outcome::BadJson
            | Outcome::UnknownKind
            | Outcome::WrongPath
            | Outcome::TooLarge
            | Outcome::BadBody => StatusCode::BAD_REQUEST,
            Outcome::BadSignature => StatusCode::UNAUTHORIZED,
            Outcome::Forbidden => StatusCode::FORBIDDEN,
            Outcome::BadMethod => StatusCode::METHOD_NOT_ALLOWED,
            Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The `kind` label: a push kind, or `unknown` before the body told it.
pub(super) fn kind_label(kind: Option<PushKind>) -> &'static str {
    kind.map_or("unknown", PushKind::as_str)
}

/// An answer to one push, and what to count and log of it.
#[derive(Debug)]
pub(super) struct Reply {
    /// The `kind` label.
    pub kind: &'static str,
    /// `None`: counted later, by whoever finishes the push (a callin's event is stored after
    /// its answer went out).
    pub outcome: Option<Outcome>,
    /// Why the push was refused or dropped: the body of a refusal and the warning logged.
    pub note: Option<String>,
    /// A JSON answer (a Block push's), sent with 200.
    json: Option<Vec<u8>>,
    /// The leader's answer to a forwarded push, sent as it came: status, content type, body.
    relayed: Option<(StatusCode, Option<HeaderValue>, Vec<u8>)>,
}

impl Reply {
    /// The push was handled: 200 with an empty body.
    pub fn done(kind: PushKind, outcome: Outcome) -> Reply {
        Reply {
            kind: kind.as_str(),
            outcome: Some(outcome),
            note: None,
            json: None,
            relayed: None,
        }
    }

    /// 200 with the JSON answer `body`; the push is counted with `outcome` (`None`: later).
    pub fn answer(kind: PushKind, outcome: Option<Outcome>, body: Vec<u8>) -> Reply {
        Reply {
            kind: kind.as_str(),
            outcome,
            note: None,
            json: Some(body),
            relayed: None,
        }
    }

    /// Refused or dropped with `outcome`, for the reason `note`.
    pub fn refused(kind: Option<PushKind>, outcome: Outcome, note: impl Into<String>) -> Reply {
        Reply {
            kind: kind_label(kind),
            outcome: Some(outcome),
            note: Some(note.into()),
            json: None,
            relayed: None,
        }
    }

    /// The answer of the leader a push was forwarded to, relayed as is.
    pub fn relayed(
        kind: PushKind,
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Vec<u8>,
    ) -> Reply {
        Reply {
            kind: kind.as_str(),
            outcome: Some(Outcome::Forwarded),
            note: None,
            json: None,
            relayed: Some((status, content_type, body)),
        }
    }

    /// With the JSON answer `body` as well (a Block push answered even though it was dropped).
    pub fn with_answer(mut self, body: Vec<u8>) -> Reply {
        self.json = Some(body);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        if let Some((status, content_type, body)) = self.relayed {
            let mut response = (status, body).into_response();
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            return response;
        }
        let status = self.outcome.map_or(StatusCode::OK, Outcome::status);
        if let Some(body) = self.json {
            return (
                status,
                [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
                body,
            )
                .into_response();
        }
        let mut response = match (status.is_success(), self.note) {
            (false, Some(note)) => (status, format!("{note}\n")).into_response(),
            _ => status.into_response(),
        };
        if status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = HeaderValue::from_static("POST");
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

/// Warnings by reason (a kind and an outcome), each logged at most once per [`WARN_EVERY`],
/// with how many were left out since.
#[derive(Debug, Default)]
pub(super) struct Warnings {
    /// By reason: when it was last logged, and how many were left out since.
    last: Mutex<HashMap<Reason, (Instant, u64)>>,
}

/// A warning's reason: the push's kind and outcome.
type Reason = (&'static str, Outcome);

impl Warnings {
    /// Logs `note` for a push of `kind` from `peer` that ended with `outcome`, unless the same
    /// reason was logged less than a minute ago.
    pub fn warn(&self, kind: &'static str, outcome: Outcome, note: &str, peer: Option<IpAddr>) {
        let now = Instant::now();
        let left_out = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            match last.get_mut(&(kind, outcome)) {
                Some((at, left_out)) if now.duration_since(*at) < WARN_EVERY => {
                    *left_out += 1;
                    return;
                }
                Some((at, left_out)) => {
                    *at = now;
                    std::mem::take(left_out)
                }
                None => {
                    last.insert((kind, outcome), (now, 0));
                    0
                }
            }
        };
        let peer = peer.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        tracing::warn!(
            kind,
            outcome = outcome.as_str(),
            %peer,
            left_out,
            "push refused or dropped: {note}"
        );
    }
}

/// A JSON error in words that quote none of the body's values (they may hold phone numbers):
/// every quoted string is elided.
pub(super) fn describe_json_error(e: &serde_json::Error) -> String {
    let mut out = String::new();
    for (i, part) in e.to_string().split('"').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else {
            out.push_str("\"…\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_answer_their_status_with_the_reason() {
        let r = Reply::refused(None, Outcome::BadMethod, "only POST").into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        let r = Reply::done(PushKind::Fee, Outcome::Duplicate).into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(header::CONTENT_TYPE).is_none());
        let r = Reply::answer(PushKind::CallEvent, None, b"{}".to_vec()).into_response();
        assert_eq!(r.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let dropped = Reply::refused(Some(PushKind::Sms), Outcome::UnknownApp, "no app");
        assert_eq!(dropped.into_response().status(), StatusCode::OK);
    }

    #[test]
    fn json_errors_quote_no_values() {
        let e = serde_json::from_str::<u64>(r#""+8613800000001""#).unwrap_err();
        let text = describe_json_error(&e);
        assert!(!text.contains("8613800000001"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn a_reason_is_logged_once_a_minute() {
        let warnings = Warnings::default();
        warnings.warn("fee", Outcome::BadJson, "one", None);
        warnings.warn("fee", Outcome::BadJson, "two", None);
        warnings.warn("sms", Outcome::BadJson, "three", None);
        let last = warnings.last.lock().unwrap();
        assert_eq!(last[&("fee", Outcome::BadJson)].1, 1, "the second left out");
        assert_eq!(last[&("sms", Outcome::BadJson)].1, 0);
    }
}
