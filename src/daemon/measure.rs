//! The tower layer that counts every gRPC call by method and status code, and times it (from
//! the request until its response ends: the whole stream for a streaming call).
//!
//! The code is the response's `grpc-status`: in the headers of a trailers-only answer (errors),
//! else in the trailers; a response whose body ends without one was cut off (`CANCELLED`). A
//! method the server does not have counts as `unknown`, so a client cannot grow the label set.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderMap;
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::Metrics;

/// The layer: [`Server::layer(Measure::new(…))`](tonic::transport::Server::layer).
#[derive(Debug, Clone)]
pub struct Measure {
    metrics: Arc<Metrics>,
}

impl Measure {
    pub fn new(metrics: Arc<Metrics>) -> Measure {
        Measure { metrics }
    }
}

impl<S> Layer<S> for Measure {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The routes, measured.
#[derive(Debug, Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Measured<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = Call {
            metrics: Arc::clone(&self.metrics),
            method: req.uri().path().to_owned(),
            started: Instant::now(),
            done: false,
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let mut call = call;
            if let Some(code) = grpc_status(response.headers()) {
                call.end(code);
            }
            Ok(response.map(|body| Body::new(MeasuredBody { inner: body, call })))
        })
    }
}

/// One call being measured; counted once, when its code is known or its response ends.
#[derive(Debug)]
struct Call {
    metrics: Arc<Metrics>,
    method: String,
    started: Instant,
    done: bool,
}

impl Call {
    fn end(&mut self, code: i32) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let method = if code == tonic::Code::Unimplemented as i32 {
            "unknown".to_owned()
        } else {
            std::mem::take(&mut self.method)
        };
        self.metrics
            .grpc_request(method, code_name(code), self.started.elapsed());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The body was dropped before it ended: the client went away, or the server cut it.
        self.end(tonic::Code::Cancelled as i32);
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A response body that reports its call's code when its trailers pass (or it ends).
#[derive(Debug)]
struct MeasuredBody {
    inner: Body,
    call: Call,
}

impl http_body::Body for MeasuredBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.call.end(code);
                }
            }
            Poll::Ready(None) => self.call.end(tonic::Code::Ok as i32),
            Poll::Ready(Some(Err(_))) => self.call.end(tonic::Code::Internal as i32),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// gRPC's name of a status code.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}
