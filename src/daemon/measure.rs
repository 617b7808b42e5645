//! The tower layer that counts every gRPC call by method and status code, and times it (from
//! the request until its response ends: the whole stream for a streaming call).
//!
//! The code is the response's `grpc-status`: in the headers of a trailers-only answer (errors),
//! else in the trailers; a response whose body ends without one was cut off (`CANCELLED`). A
//! path that is not one of the served methods (read from the services' descriptors) counts as
//! `unknown`, so no client — authenticated or not — can grow the label set.

use std::collections::HashSet;
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
    methods: Arc<HashSet<String>>,
}

impl Measure {
    pub fn new(metrics: Arc<Metrics>) -> Measure {
        Measure {
            metrics,
            methods: Arc::new(served_methods()),
        }
    }
}

/// `/package.Service/Method` of every method the server has: xpool's, health's and
/// reflection's.
fn served_methods() -> HashSet<String> {
    use prost::Message as _;
    let sets = [
        crate::grpc::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashSet::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    methods
}

impl<S> Layer<S> for Measure {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            inner,
            metrics: Arc::clone(&self.metrics),
            methods: Arc::clone(&self.methods),
        }
    }
}

/// The routes, measured.
#[derive(Debug, Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<Metrics>,
    methods: Arc<HashSet<String>>,
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
        let path = req.uri().path();
        let method = if self.methods.contains(path) {
            path.to_owned()
        } else {
            "unknown".to_owned()
        };
        let call = Call {
            metrics: Arc::clone(&self.metrics),
            method,
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
        let method = std::mem::take(&mut self.method);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_methods_are_known_and_nothing_else() {
        let methods = served_methods();
        for known in [
            "/xpool.v1.BindingService/Bind",
            "/xpool.v1.WatchService/Watch",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(methods.contains(known), "{known}");
        }
        assert!(!methods.contains("/xpool.v1.BindingService/DropTables"));
    }
}
