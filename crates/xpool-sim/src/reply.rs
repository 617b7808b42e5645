//! Platform answers: a result code with its text and HTTP status, plus the mode's fields.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use xpool_platform::codes;

/// A failed platform call: what the simulator answers instead of success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {desc}")]
pub(crate) struct Fail {
    pub status: StatusCode,
    pub code: &'static str,
    pub desc: Cow<'static, str>,
}

impl Fail {
    /// A failure with the code's documented text and usual HTTP status.
    pub fn new(code: &'static str) -> Self {
        Fail {
            status: status_of(code),
            code,
            desc: Cow::Borrowed(codes::text(code)),
        }
    }

    /// 1010002 naming the offending parameter.
    pub fn invalid(param: &str) -> Self {
        Fail {
            status: StatusCode::FORBIDDEN,
            code: codes::INVALID_REQUEST,
            desc: Cow::Owned(format!("Invalid request. {param}")),
        }
    }

    /// 1010010 as flow control (403), not as a bad digest (401).
    pub fn flow_control() -> Self {
        Fail {
            status: StatusCode::FORBIDDEN,
            code: codes::INVALID_DIGEST_OR_FLOW_CONTROL,
            desc: Cow::Borrowed(codes::FLOW_CONTROL_TEXT),
        }
    }

    /// The same failure with another HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// The HTTP status the platform pairs with a code (binding-api.md §3).
fn status_of(code: &str) -> StatusCode {
    match code {
        codes::SUCCESS => StatusCode::OK,
        codes::INTERNAL_SYSTEM_ERROR
        | codes::INTERNAL_ERROR
        | codes::INTERNAL_ERROR_2
        | codes::PARAMETER_ERROR
        | codes::APP_KEY_INVALID => StatusCode::INTERNAL_SERVER_ERROR,
        c if c.starts_with("1023") => StatusCode::BAD_REQUEST,
        codes::INVALID_DIGEST_OR_FLOW_CONTROL | codes::TIME_OUT_LIMIT => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    }
}

/// The mode-specific fields of a successful answer, or the failure.
pub(crate) type Outcome = Result<Map<String, Value>, Fail>;

/// Success carrying the fields of a wire response struct.
pub(crate) fn ok(body: &impl Serialize) -> Outcome {
    match serde_json::to_value(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Fail::new(codes::INTERNAL_SYSTEM_ERROR)),
    }
}

/// Success with only `resultcode` and `resultdesc`.
pub(crate) fn done() -> Outcome {
    Ok(Map::new())
}

/// Renders an outcome as the platform's JSON answer; also returns the result code for the stats.
pub(crate) fn render(outcome: Outcome) -> (&'static str, Response) {
    let (status, code, desc, mut body) = match outcome {
        Ok(body) => (
            StatusCode::OK,
            codes::SUCCESS,
            Cow::Borrowed(codes::text(codes::SUCCESS)),
            body,
        ),
        Err(fail) => (fail.status, fail.code, fail.desc, Map::new()),
    };
    body.insert("resultcode".into(), Value::String(code.into()));
    body.insert("resultdesc".into(), Value::String(desc.into_owned()));
    (code, (status, Json(Value::Object(body))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_code_table() {
        assert_eq!(Fail::new(codes::AKSK_MISSING_NONCE).status, 400);
        assert_eq!(Fail::new(codes::INTERNAL_ERROR).status, 500);
        assert_eq!(Fail::new(codes::INVALID_DIGEST_OR_FLOW_CONTROL).status, 401);
        assert_eq!(Fail::flow_control().status, 403);
        assert_eq!(Fail::new(codes::RECORD_NOT_EXIST).status, 403);
        assert_eq!(
            Fail::invalid("callerNum").desc,
            "Invalid request. callerNum"
        );
    }
}
