//! The layer in front of a service called directly: what it passes on, and when it does not
//! look. The router and helpers here serve `loopback_tests` too.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Body as _;
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use super::*;
use crate::grpc::pb;

/// Generous: only "did not hang".
pub(super) const WAIT: Duration = Duration::from_secs(20);

/// Routes by a fixed table: apps to routes (unlisted: local), bindings to apps (unknown:
/// local), plain reads always local. Notes every question.
#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) apps: HashMap<String, Route>,
    pub(super) bindings: HashMap<String, String>,
    pub(super) asked: Mutex<Vec<(String, CallKind)>>,
}

impl Router for Table {
    fn route(&self, target: &Target<'_>, kind: CallKind) -> Route {
        let asked = match target {
            Target::App(app) => format!("app {app}"),
            Target::Binding(id) => format!("binding {id}"),
        };
        self.asked.lock().unwrap().push((asked, kind));
        let app = match target {
            Target::App(app) => (*app).to_owned(),
            Target::Binding(id) => match self.bindings.get(*id) {
                Some(app) => app.clone(),
                None => return Route::Local,
            },
        };
        if kind == CallKind::Read {
            return Route::Local;
        }
        self.apps.get(&app).cloned().unwrap_or(Route::Local)
    }
}

impl Table {
    pub(super) fn asked(&self) -> Vec<(String, CallKind)> {
        self.asked.lock().unwrap().clone()
    }
}

/// A service that notes the path and body of each request and answers an empty 200.
#[derive(Debug, Clone, Default)]
struct Inner {
    got: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl Service<http::Request<Body>> for Inner {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let got = Arc::clone(&self.got);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let body = collect(req.into_body()).await;
            got.lock().unwrap().push((path, body));
            Ok(http::Response::new(Body::empty()))
        })
    }
}

async fn collect(mut body: Body) -> Bytes {
    let mut all = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.unwrap().into_data() {
            all.put(data);
        }
    }
    all.freeze()
}

pub(super) fn framed(flag: u8, message: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(flag);
    buf.put_u32(u32::try_from(message.len()).unwrap());
    buf.put_slice(message);
    buf.freeze()
}

/// A body that arrives in `chunks`.
pub(super) fn chunked(chunks: Vec<Bytes>) -> Body {
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, Status>(http_body::Frame::data(c)));
    Body::new(frames_body(frames))
}

/// A body from an iterator of frames.
fn frames_body(
    frames: impl Iterator<Item = Result<http_body::Frame<Bytes>, Status>> + Send + 'static,
) -> impl http_body::Body<Data = Bytes, Error = Status> + Send + 'static {
    struct Frames<I>(I);
    impl<I> http_body::Body for Frames<I>
    where
        I: Iterator<Item = Result<http_body::Frame<Bytes>, Status>> + Unpin,
    {
        type Data = Bytes;
        type Error = Status;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.next())
        }
    }
    Frames(frames.collect::<Vec<_>>().into_iter())
}

pub(super) fn request(path: &str, body: Body) -> http::Request<Body> {
    http::Request::builder()
        .uri(format!("http://follower{path}"))
        .body(body)
        .unwrap()
}

/// A layer whose router sends every write for app "a" to an address nobody listens at.
fn layer_alone() -> (Arc<Table>, Forwarded<Inner>, Inner) {
    let table = Arc::new(Table {
        apps: HashMap::from([(
            "a".to_owned(),
            Route::Unavailable("no leader for a".to_owned()),
        )]),
        ..Table::default()
    });
    let inner = Inner::default();
    let forward = Forward::new(Arc::clone(&table) as Arc<dyn Router>, "f".into(), None);
    (table, forward.layer(inner.clone()), inner)
}

pub(super) const BIND: &str = "/xpool.v1.BindingService/Bind";

#[tokio::test]
async fn a_local_call_gets_its_body_unchanged_however_it_arrives() {
    let (table, mut layer, inner) = layer_alone();
    let message = pb::BindRequest {
        app: "b".into(),
        party_a: "+8613800000001".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut body = framed(0, &message).to_vec();
    body.extend_from_slice(b"trailing bytes pass through too");
    let body = Bytes::from(body);
    // One byte at a time: the prefix and the message are split over many data frames.
    let chunks = body.iter().map(|b| Bytes::from(vec![*b])).collect();
    let response = layer.call(request(BIND, chunked(chunks))).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(inner.got.lock().unwrap()[0], (BIND.to_owned(), body));
    assert_eq!(table.asked(), [("app b".to_owned(), CallKind::Write)]);
}

#[tokio::test]
async fn calls_it_cannot_look_into_stay_local_without_asking_the_router() {
    let (table, mut layer, inner) = layer_alone();
    let bind_a = pb::BindRequest {
        app: "a".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let cases: Vec<(&str, Bytes)> = vec![
        // Not a routed method.
        ("/xpool.v1.StoreService/Backup", framed(0, &bind_a)),
        ("/grpc.health.v1.Health/Check", framed(0, &bind_a)),
        ("/no.Such/Method", framed(0, &bind_a)),
        // Compressed.
        (BIND, framed(1, &bind_a)),
        // Malformed: a length past the end, `app` not UTF-8.
        (BIND, framed(0, &[0x0a, 9, b'a'])),
        (BIND, framed(0, &[0x0a, 1, 0xff])),
        // The body ends inside the prefix, or inside the message.
        (BIND, Bytes::from_static(&[0, 0, 0])),
        (BIND, framed(0, &bind_a).slice(..7)),
        (BIND, Bytes::new()),
        // No app, no binding: ListApps, or a Bind with an empty app.
        ("/xpool.v1.PoolService/ListApps", framed(0, &[])),
        (BIND, framed(0, &[])),
    ];
    for (path, body) in &cases {
        let response = layer.call(request(path, chunked(vec![body.clone()]))).await;
        assert_eq!(response.unwrap().status(), http::StatusCode::OK, "{path}");
    }
    let got = inner.got.lock().unwrap().clone();
    let want: Vec<(String, Bytes)> = cases.into_iter().map(|(p, b)| (p.to_owned(), b)).collect();
    assert_eq!(got, want);
    assert_eq!(table.asked(), []);
}

#[tokio::test]
async fn a_message_over_the_limit_is_not_waited_for() {
    let (table, layer, inner) = layer_alone();
    let mut layer = Forward::new(Arc::clone(&table) as Arc<dyn Router>, "f".into(), None)
        .max_message_bytes(16)
        .layer(layer.inner);
    let message = pb::BindRequest {
        app: "a".into(),
        party_a: "a party longer than sixteen bytes".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let body = framed(0, &message);
    // Only the prefix arrives before the handler must see the request.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let head = body.slice(..wire::PREFIX);
    let tail = body.slice(wire::PREFIX..);
    let slow = Body::new(Slow {
        head: Some(head),
        gate: rx,
        tail: Some(tail),
    });
    let call = layer.call(request(BIND, slow));
    let (response, ()) = tokio::join!(call, async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tx.send(());
    });
    assert_eq!(response.unwrap().status(), http::StatusCode::OK);
    assert_eq!(inner.got.lock().unwrap()[0].1, body);
    assert_eq!(table.asked(), []);
}

/// A body that sends `head`, then `tail` once `gate` opens.
struct Slow {
    head: Option<Bytes>,
    gate: tokio::sync::oneshot::Receiver<()>,
    tail: Option<Bytes>,
}

impl http_body::Body for Slow {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(head))));
        }
        if self.tail.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.gate).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(self.tail.take().map(|t| Ok(http_body::Frame::data(t)))),
        }
    }
}

#[tokio::test]
async fn an_unavailable_route_is_answered_with_its_reason() {
    let (_, mut layer, inner) = layer_alone();
    let message = pb::BindRequest {
        app: "a".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let response = layer
        .call(request(BIND, chunked(vec![framed(0, &message)])))
        .await
        .unwrap();
    let status = Status::from_header_map(response.headers()).unwrap();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("no leader for a"), "{status:?}");
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "LEADER_UNAVAILABLE");
    assert_eq!(info.metadata["app"], "a");
    assert!(inner.got.lock().unwrap().is_empty());
}
