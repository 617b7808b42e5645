//! Requests that cannot be decoded are the caller's fault, not the server's: a tower layer
//! around the routes turns the statuses tonic gives them into the codes the API promises.
//!
//! tonic answers a protobuf decode failure (junk bytes, a string field that is not UTF-8) with
//! INTERNAL, a truncated message or a bad frame flag with INTERNAL, and a message over
//! `max_decoding_message_size` with OUT_OF_RANGE — all before a handler runs, as a
//! trailers-only response whose status sits in the headers. This layer rewrites those to
//! INVALID_ARGUMENT naming the field (as far as prost's error names it) and RESOURCE_EXHAUSTED
//! (`MESSAGE_TOO_LARGE`), with the details every status of the API carries (`grpc::status`).
//! Statuses from handlers are never touched: none of them carries these texts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

use crate::lifecycle::{PoolError, Reason};

/// The layer: [`Server::layer(DecodeErrors)`](tonic::transport::Server::layer).
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrors;

impl<S> Layer<S> for DecodeErrors {
    type Service = Rewritten<S>;

    fn layer(&self, inner: S) -> Rewritten<S> {
        Rewritten { inner }
    }
}

/// The routes, with decode failures answered as the caller's error.
#[derive(Debug, Clone)]
pub struct Rewritten<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Rewritten<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            let headers = response.headers_mut();
            if let Some(status) = Status::from_header_map(headers).and_then(|s| rewrite(&s)) {
                headers.remove("grpc-status-details-bin");
                if let Err(e) = status.add_header(headers) {
                    tracing::warn!(error = %e, "cannot rewrite a decode failure's status");
                }
            }
            Ok(response)
        })
    }
}

const PROTOBUF: &str = "failed to decode Protobuf message: ";
const TRUNCATED: &str = "Unexpected EOF decoding stream.";
const BAD_FLAG: &str = "protocol error: received message with invalid compression flag";
const TOO_LARGE: &str = "Error, decoded message length too large: ";

/// The status a caller should get instead of `status`, if it is one of tonic's decode failures.
fn rewrite(status: &Status) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::Internal => {
            if let Some(error) = message.strip_prefix(PROTOBUF) {
                let (field, what) = located(error);
                Some(PoolError::invalid(
                    field,
                    format!("{what} (the request message could not be decoded)"),
                ))
            } else if message == TRUNCATED {
                Some(PoolError::invalid(
                    "request",
                    "the message ends before the length its frame header gives",
                ))
            } else if message.starts_with(BAD_FLAG) {
                Some(PoolError::invalid(
                    "request",
                    "the message frame's compression flag is not 0 or 1",
                ))
            } else {
                None
            }
        }
        Code::OutOfRange => message.strip_prefix(TOO_LARGE).map(|sizes| {
            PoolError::refused(
                Reason::MessageTooLarge,
                format!("request: message too large: {sizes} (server.max_message_bytes)"),
            )
        }),
        _ => None,
    }
    .map(Status::from)
}

/// prost's `Inner.field: Outer.field: description` as (`field path`, `description`), outermost
/// field first: `numbers.number`; `request` when the error names no field.
fn located(error: &str) -> (String, &str) {
    let mut fields = Vec::new();
    let mut rest = error;
    while let Some((head, tail)) = rest.split_once(": ") {
        let Some((message, field)) = head.split_once('.') else {
            break;
        };
        if !is_ident(message) || !is_ident(field) {
            break;
        }
        fields.push(field);
        rest = tail;
    }
    if fields.is_empty() {
        return ("request".to_owned(), error);
    }
    fields.reverse();
    (fields.join("."), rest)
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(code: Code, message: &str) -> Option<(Code, String)> {
        rewrite(&Status::new(code, message)).map(|s| (s.code(), s.message().to_owned()))
    }

    #[test]
    fn protobuf_failures_name_the_field() {
        let got = rewritten(
            Code::Internal,
            "failed to decode Protobuf message: BindRequest.party_a: invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(
            got,
            Some((
                Code::InvalidArgument,
                "party_a: invalid string value: data is not UTF-8 encoded \
                 (the request message could not be decoded)"
                    .to_owned()
            ))
        );
        let nested = rewritten(
            Code::Internal,
            "failed to decode Protobuf message: NumberSpec.number: AddNumbersRequest.numbers: invalid string value: data is not UTF-8 encoded",
        )
        .unwrap();
        assert!(
            nested.1.starts_with("numbers.number: invalid string value"),
            "{nested:?}"
        );
        let bare = rewritten(
            Code::Internal,
            "failed to decode Protobuf message: invalid wire type value: 7",
        )
        .unwrap();
        assert!(
            bare.1.starts_with("request: invalid wire type value: 7"),
            "{bare:?}"
        );
    }

    #[test]
    fn frame_failures_are_the_callers_and_size_is_resource_exhausted() {
        let truncated = rewritten(Code::Internal, TRUNCATED).unwrap();
        assert_eq!(truncated.0, Code::InvalidArgument);
        let flag = rewritten(
            Code::Internal,
            "protocol error: received message with invalid compression flag: 5 (valid flags are 0 and 1), while sending request",
        )
        .unwrap();
        assert_eq!(flag.0, Code::InvalidArgument);
        let large = rewritten(
            Code::OutOfRange,
            "Error, decoded message length too large: found 70016 bytes, the limit is: 65536 bytes",
        )
        .unwrap();
        assert_eq!(large.0, Code::ResourceExhausted);
        assert!(large.1.contains("found 70016 bytes"), "{large:?}");
    }

    #[test]
    fn rewritten_statuses_carry_the_details_of_the_api() {
        use tonic_types::StatusExt as _;
        let status = rewrite(&Status::new(
            Code::Internal,
            "failed to decode Protobuf message: BindRequest.party_a: invalid string value: data is not UTF-8 encoded",
        ))
        .unwrap();
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INVALID_FIELD");
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "party_a");
        let large = rewrite(&Status::new(
            Code::OutOfRange,
            "Error, decoded message length too large: found 70016 bytes, the limit is: 65536 bytes",
        ))
        .unwrap();
        let info = large.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
        assert!(large.get_error_details().retry_info().is_none());
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for (code, message) in [
            (Code::Internal, "internal error: something broke"),
            (Code::Internal, "storage failure"),
            (
                Code::Internal,
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ),
            (Code::OutOfRange, "page 9 is past the end"),
            (Code::InvalidArgument, "party_a: required"),
        ] {
            assert_eq!(rewritten(code, message), None, "{message}");
        }
    }
}
