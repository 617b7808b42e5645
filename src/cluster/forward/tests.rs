//! The layer in front of a service called directly (what it passes on, and when it does not
//! look), and two in-process servers on loopback: a follower with the layer, and a leader, both
//! serving a fake `BindingService` that notes every call it handles.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Body as _;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::server::TcpIncoming;
use tonic_types::StatusExt as _;

use super::*;
use crate::grpc::pb;
use crate::grpc::pb::binding_service_client::BindingServiceClient;
use crate::grpc::pb::binding_service_server::{BindingService, BindingServiceServer};
use crate::grpc::pb::reconcile_service_client::ReconcileServiceClient;
use crate::grpc::pb::reconcile_service_server::{ReconcileService, ReconcileServiceServer};

/// Generous: only "did not hang".
const WAIT: Duration = Duration::from_secs(20);

/// Routes by a fixed table: apps to routes (unlisted: local), bindings to apps (unknown:
/// local), plain reads always local. Notes every question.
#[derive(Debug, Default)]
struct Table {
    apps: HashMap<String, Route>,
    bindings: HashMap<String, String>,
    asked: Mutex<Vec<(String, CallKind)>>,
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
    fn asked(&self) -> Vec<(String, CallKind)> {
        self.asked.lock().unwrap().clone()
    }
}

// ---- the layer alone ----

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

fn framed(flag: u8, message: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(flag);
    buf.put_u32(u32::try_from(message.len()).unwrap());
    buf.put_slice(message);
    buf.freeze()
}

/// A body that arrives in `chunks`.
fn chunked(chunks: Vec<Bytes>) -> Body {
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

fn request(path: &str, body: Body) -> http::Request<Body> {
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

const BIND: &str = "/xpool.v1.BindingService/Bind";

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

#[test]
fn grpc_timeouts_read_and_written() {
    let read = |v: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(v));
        grpc_timeout(&headers)
    };
    assert_eq!(read("3S"), Some(Duration::from_secs(3)));
    assert_eq!(read("250m"), Some(Duration::from_millis(250)));
    assert_eq!(read("99999999u"), Some(Duration::from_micros(99_999_999)));
    assert_eq!(read("2H"), Some(Duration::from_secs(7200)));
    for bad in ["", "S", "3", "3s", "123456789m", "-1S", "+1S", "1.5S"] {
        assert_eq!(read(bad), None, "{bad:?}");
    }
    for (left, want) in [
        (Duration::from_millis(1500), "1500000u"),
        (Duration::from_secs(100), "100000m"),
        (Duration::from_secs(200_000), "200000S"),
        (Duration::from_secs(200_000_000), "3333333M"),
        (Duration::from_secs(u64::MAX), "99999999H"),
        (Duration::ZERO, "0u"),
    ] {
        assert_eq!(encode_timeout(left), want, "{left:?}");
    }
    assert_eq!(
        hop_margin(Duration::from_millis(300)),
        Duration::from_millis(30)
    );
    assert_eq!(
        hop_margin(Duration::from_secs(30)),
        Duration::from_millis(50)
    );
    assert_eq!(hop_margin(Duration::ZERO), Duration::ZERO);
}

// ---- two servers ----

/// What a fake handler saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    method: &'static str,
    /// The request's app, or binding id.
    target: String,
    metadata: HashMap<String, String>,
}

/// A fake `BindingService`: notes each call; answers with `x-served-by: <node>`. A Bind with
/// `party_a` "fail" is refused `FAILED_PRECONDITION`.
#[derive(Debug, Clone)]
struct Fake {
    node: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn note<T>(&self, method: &'static str, target: &str, req: &tonic::Request<T>) {
        let metadata = req
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        self.seen.lock().unwrap().push(Seen {
            method,
            target: target.to_owned(),
            metadata,
        });
    }

    fn answer<T>(&self, message: T) -> Result<tonic::Response<T>, Status> {
        let mut response = tonic::Response::new(message);
        response
            .metadata_mut()
            .insert("x-served-by", MetadataValue::from_static(self.node));
        Ok(response)
    }

    fn binding(&self, id: &str, app: &str) -> Result<tonic::Response<pb::Binding>, Status> {
        self.answer(pb::Binding {
            binding_id: id.to_owned(),
            app: app.to_owned(),
            ..Default::default()
        })
    }
}

fn id_of(binding: Option<&pb::unbind_request::Binding>) -> String {
    match binding {
        Some(pb::unbind_request::Binding::BindingId(id)) => id.clone(),
        Some(pb::unbind_request::Binding::RequestId(id)) => format!("request {id}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl BindingService for Fake {
    async fn bind(
        &self,
        req: tonic::Request<pb::BindRequest>,
    ) -> Result<tonic::Response<pb::Binding>, Status> {
        self.note("Bind", &req.get_ref().app, &req);
        if req.get_ref().party_a == "fail" {
            return Err(Status::failed_precondition(format!(
                "{} says no",
                self.node
            )));
        }
        self.binding("new", &req.get_ref().app)
    }

    async fn unbind(
        &self,
        req: tonic::Request<pb::UnbindRequest>,
    ) -> Result<tonic::Response<pb::Binding>, Status> {
        let id = id_of(req.get_ref().binding.as_ref());
        self.note("Unbind", &id, &req);
        self.binding(&id, &req.get_ref().app)
    }

    async fn update_binding(
        &self,
        req: tonic::Request<pb::UpdateBindingRequest>,
    ) -> Result<tonic::Response<pb::Binding>, Status> {
        self.note("UpdateBinding", &req.get_ref().binding_id, &req);
        self.binding(&req.get_ref().binding_id, "")
    }

    async fn get_binding(
        &self,
        req: tonic::Request<pb::GetBindingRequest>,
    ) -> Result<tonic::Response<pb::Binding>, Status> {
        let id = match &req.get_ref().binding {
            Some(pb::get_binding_request::Binding::BindingId(id)) => id.clone(),
            Some(pb::get_binding_request::Binding::RequestId(id)) => format!("request {id}"),
            None => String::new(),
        };
        self.note("GetBinding", &id, &req);
        self.binding(&id, &req.get_ref().app)
    }

    async fn list_bindings(
        &self,
        req: tonic::Request<pb::ListBindingsRequest>,
    ) -> Result<tonic::Response<pb::ListBindingsResponse>, Status> {
        self.note("ListBindings", &req.get_ref().app, &req);
        self.answer(pb::ListBindingsResponse::default())
    }
}

/// A leader and a follower (with the layer) on loopback, and a client of the follower.
struct Pair {
    follower_addr: String,
    /// The follower's.
    metrics: Arc<Metrics>,
    leader: Arc<Mutex<Vec<Seen>>>,
    follower: Arc<Mutex<Vec<Seen>>>,
    table: Arc<Table>,
    client: BindingServiceClient<Channel>,
    stop: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    (listener, addr)
}

/// `apps` routes beside app "a" → the leader; bindings "bind-a" → app "a", "bind-b" → "b".
async fn pair(apps: Vec<(&str, Route)>) -> Pair {
    let stop = CancellationToken::new();
    let (leader_listener, leader_addr) = listener().await;
    let (follower_listener, follower_addr) = listener().await;
    let leader = Fake {
        node: "leader",
        seen: Arc::default(),
    };
    let follower = Fake {
        node: "follower",
        seen: Arc::default(),
    };
    let mut routes: HashMap<String, Route> = apps
        .into_iter()
        .map(|(app, route)| (app.to_owned(), route))
        .collect();
    routes.entry("a".to_owned()).or_insert(Route::Forward {
        node_id: "leader".into(),
        addr: leader_addr,
    });
    let table = Arc::new(Table {
        apps: routes,
        bindings: HashMap::from([
            ("bind-a".to_owned(), "a".to_owned()),
            ("bind-b".to_owned(), "b".to_owned()),
        ]),
        ..Table::default()
    });
    let (leader_seen, follower_seen) = (Arc::clone(&leader.seen), Arc::clone(&follower.seen));
    let metrics = Arc::new(Metrics::default());
    let servers = vec![
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(BindingServiceServer::new(leader.clone()))
                .add_service(ReconcileServiceServer::new(leader))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(leader_listener),
                    stop.clone().cancelled_owned(),
                ),
        ),
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(watch_runs_by_id(
                    Forward::new(
                        Arc::clone(&table) as Arc<dyn Router>,
                        "follower".into(),
                        None,
                    )
                    .metrics(Arc::clone(&metrics)),
                ))
                .add_service(BindingServiceServer::new(follower.clone()))
                .add_service(ReconcileServiceServer::new(follower))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(follower_listener),
                    stop.clone().cancelled_owned(),
                ),
        ),
    ];
    let client = BindingServiceClient::connect(follower_addr.clone())
        .await
        .unwrap();
    Pair {
        follower_addr,
        metrics,
        leader: leader_seen,
        follower: follower_seen,
        table,
        client,
        stop,
        servers,
    }
}

impl Pair {
    /// The follower's count of forwarded calls with `outcome`.
    fn counted(&self, outcome: &'static str) -> u64 {
        let label = crate::metrics::OutcomeLabel { outcome };
        self.metrics.forwarded_calls.get_or_create(&label).get()
    }

    fn leader_saw(&self) -> Vec<(&'static str, String)> {
        summary(&self.leader)
    }

    fn follower_saw(&self) -> Vec<(&'static str, String)> {
        summary(&self.follower)
    }

    async fn stop(self) {
        drop(self.client);
        self.stop.cancel();
        for server in self.servers {
            tokio::time::timeout(WAIT, server)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

fn summary(seen: &Mutex<Vec<Seen>>) -> Vec<(&'static str, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|s| (s.method, s.target.clone()))
        .collect()
}

fn bind(app: &str) -> tonic::Request<pb::BindRequest> {
    tonic::Request::new(pb::BindRequest {
        app: app.into(),
        party_a: "+8613800000001".into(),
        ..Default::default()
    })
}

fn served_by<T>(response: &tonic::Response<T>) -> &str {
    response
        .metadata()
        .get("x-served-by")
        .unwrap()
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_write_for_an_app_led_elsewhere_is_answered_by_its_leader() {
    let mut p = pair(vec![]).await;
    let mut req = bind("a");
    req.set_timeout(Duration::from_secs(30));
    req.metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer secret"));
    req.metadata_mut()
        .insert("x-trace", MetadataValue::from_static("trace-1"));
    let response = tokio::time::timeout(WAIT, p.client.bind(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served_by(&response), "leader");
    assert_eq!(response.get_ref().app, "a");
    let response = p.client.bind(bind("b")).await.unwrap();
    assert_eq!(served_by(&response), "follower");

    assert_eq!(p.leader_saw(), [("Bind", "a".to_owned())]);
    assert_eq!(p.follower_saw(), [("Bind", "b".to_owned())]);
    let forwarded = p.leader.lock().unwrap()[0].metadata.clone();
    assert_eq!(forwarded["authorization"], "Bearer secret");
    assert_eq!(forwarded["x-trace"], "trace-1");
    assert_eq!(forwarded["xpool-forwarded-by"], "follower");
    let mut headers = HeaderMap::new();
    headers.insert(GRPC_TIMEOUT, forwarded["grpc-timeout"].parse().unwrap());
    let left = grpc_timeout(&headers).unwrap();
    assert!(
        left <= Duration::from_secs(30) && left > Duration::from_secs(10),
        "{left:?}"
    );
    // A call without a deadline is forwarded without one.
    p.client.bind(bind("a")).await.unwrap();
    assert!(
        !p.leader.lock().unwrap()[1]
            .metadata
            .contains_key("grpc-timeout")
    );
    assert_eq!(p.counted("forwarded"), 2);
    assert_eq!(
        p.table.asked()[..2],
        [
            ("app a".to_owned(), CallKind::Write),
            ("app b".to_owned(), CallKind::Write)
        ]
    );
    p.stop().await;
}

#[tokio::test]
async fn the_leaders_refusal_comes_back_as_it_is() {
    let mut p = pair(vec![]).await;
    let mut req = bind("a");
    req.get_mut().party_a = "fail".into();
    let status = p.client.bind(req).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "leader says no");
    p.stop().await;
}

#[tokio::test]
async fn bindings_are_routed_by_their_app() {
    let mut p = pair(vec![]).await;
    let update = pb::UpdateBindingRequest {
        binding_id: "bind-a".into(),
        ..Default::default()
    };
    let r = p.client.update_binding(update).await.unwrap();
    assert_eq!(served_by(&r), "leader");
    let unbind = pb::UnbindRequest {
        binding: Some(pb::unbind_request::Binding::BindingId("bind-b".into())),
        app: String::new(),
    };
    assert_eq!(
        served_by(&p.client.unbind(unbind).await.unwrap()),
        "follower"
    );
    // An app given beside a request id routes by the app.
    let unbind = pb::UnbindRequest {
        binding: Some(pb::unbind_request::Binding::RequestId("r-1".into())),
        app: "a".into(),
    };
    assert_eq!(served_by(&p.client.unbind(unbind).await.unwrap()), "leader");
    // An unknown binding is served locally (the handler says NOT_FOUND).
    let unbind = pb::UnbindRequest {
        binding: Some(pb::unbind_request::Binding::BindingId("bind-x".into())),
        app: String::new(),
    };
    assert_eq!(
        served_by(&p.client.unbind(unbind).await.unwrap()),
        "follower"
    );
    assert_eq!(
        p.leader_saw(),
        [
            ("UpdateBinding", "bind-a".to_owned()),
            ("Unbind", "request r-1".to_owned())
        ]
    );
    assert_eq!(
        p.table.asked(),
        [
            ("binding bind-a".to_owned(), CallKind::Write),
            ("binding bind-b".to_owned(), CallKind::Write),
            ("app a".to_owned(), CallKind::Write),
            ("binding bind-x".to_owned(), CallKind::Write),
        ]
    );
    p.stop().await;
}

#[tokio::test]
async fn reads_are_local_unless_consistent() {
    let mut p = pair(vec![]).await;
    let list = || pb::ListBindingsRequest {
        app: "a".into(),
        ..Default::default()
    };
    assert_eq!(
        served_by(&p.client.list_bindings(list()).await.unwrap()),
        "follower"
    );
    let mut req = tonic::Request::new(list());
    req.metadata_mut()
        .insert("xpool-consistent", MetadataValue::from_static("true"));
    assert_eq!(
        served_by(&p.client.list_bindings(req).await.unwrap()),
        "leader"
    );
    let get = pb::GetBindingRequest {
        binding: Some(pb::get_binding_request::Binding::BindingId("bind-a".into())),
        app: String::new(),
    };
    let mut req = tonic::Request::new(get);
    req.metadata_mut()
        .insert("xpool-consistent", MetadataValue::from_static("true"));
    assert_eq!(
        served_by(&p.client.get_binding(req).await.unwrap()),
        "leader"
    );
    let kinds: Vec<CallKind> = p.table.asked().into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        kinds,
        [
            CallKind::Read,
            CallKind::ConsistentRead,
            CallKind::ConsistentRead
        ]
    );
    p.stop().await;
}

#[tokio::test]
async fn a_forwarded_call_is_never_forwarded_again() {
    let mut p = pair(vec![]).await;
    let mut req = bind("a");
    req.metadata_mut()
        .insert("xpool-forwarded-by", MetadataValue::from_static("n3"));
    let status = tokio::time::timeout(WAIT, p.client.bind(req))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("forwarded by n3"), "{status:?}");
    assert!(status.message().contains("leader"), "{status:?}");
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "LEADER_UNAVAILABLE");
    assert_eq!(info.metadata["leader"], "leader");
    // One this replica leads is served.
    let mut req = bind("b");
    req.metadata_mut()
        .insert("xpool-forwarded-by", MetadataValue::from_static("n3"));
    assert_eq!(served_by(&p.client.bind(req).await.unwrap()), "follower");
    assert!(p.leader_saw().is_empty());
    assert_eq!(p.counted("refused_loop"), 1);
    p.stop().await;
}

#[tokio::test]
async fn an_unreachable_leader_is_unavailable_at_once() {
    // A port nobody listens at: bound, then closed.
    let (closed, closed_addr) = listener().await;
    drop(closed);
    let mut p = pair(vec![(
        "gone",
        Route::Forward {
            node_id: "n9".into(),
            addr: closed_addr,
        },
    )])
    .await;
    for _ in 0..2 {
        // No deadline: the connection's failure ends the call.
        let status = tokio::time::timeout(WAIT, p.client.bind(bind("gone")))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("n9"), "{status:?}");
        assert!(status.message().contains("retry"), "{status:?}");
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.metadata["leader"].as_str()),
            ("LEADER_UNAVAILABLE", "n9")
        );
    }
    assert_eq!(p.counted("unreachable"), 2);
    p.stop().await;
}

#[tokio::test]
async fn a_leader_that_never_answers_does_not_hold_the_call_past_its_deadline() {
    // Accepts connections and reads nothing: a stopped process.
    let (silent, silent_addr) = listener().await;
    let mut p = pair(vec![(
        "stuck",
        Route::Forward {
            node_id: "n8".into(),
            addr: silent_addr,
        },
    )])
    .await;
    let mut req = bind("stuck");
    req.set_timeout(Duration::from_millis(300));
    let status = tokio::time::timeout(WAIT, p.client.bind(req))
        .await
        .unwrap()
        .unwrap_err();
    // The layer's answer comes before tonic's own (CANCELLED) at the deadline.
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("n8"), "{status:?}");
    assert!(status.message().contains("deadline"), "{status:?}");
    assert_eq!(p.counted("timed_out"), 1);
    drop(silent);
    p.stop().await;
}

#[tokio::test]
async fn an_unavailable_route_is_unavailable_with_its_reason() {
    let mut p = pair(vec![(
        "down",
        Route::Unavailable("app \"down\" has no leader yet (election in progress)".into()),
    )])
    .await;
    let status = p.client.bind(bind("down")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("election in progress"),
        "{status:?}"
    );
    assert!(p.leader_saw().is_empty() && p.follower_saw().is_empty());
    assert_eq!(p.counted("no_leader"), 1);
    p.stop().await;
}

/// The layer, also routing WatchReconcileRun by its `run_id` as if it were an app: no routed
/// method of the API streams its answer and names an app, so this one stands in for them.
fn watch_runs_by_id(mut forward: Forward) -> Forward {
    let methods = Methods::from_descriptors(crate::grpc::pb::FILE_DESCRIPTOR_SET)
        .unwrap()
        .with(
            "/xpool.v1.ReconcileService/WatchReconcileRun",
            Method {
                app: Some(1),
                binding_id: None,
                kind: CallKind::Write,
            },
        );
    forward.methods = Arc::new(methods);
    forward
}

/// The fake's reconciliation runs: only WatchReconcileRun answers, with three runs named
/// `<node>-1`…`<node>-3` and trailing metadata `x-ended-by: <node>`.
#[tonic::async_trait]
impl ReconcileService for Fake {
    async fn reconcile(
        &self,
        _: tonic::Request<pb::ReconcileRequest>,
    ) -> Result<tonic::Response<pb::ReconcileRun>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_reconcile_run(
        &self,
        _: tonic::Request<pb::GetReconcileRunRequest>,
    ) -> Result<tonic::Response<pb::ReconcileRun>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_reconcile_runs(
        &self,
        _: tonic::Request<pb::ListReconcileRunsRequest>,
    ) -> Result<tonic::Response<pb::ListReconcileRunsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchReconcileRunStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<pb::ReconcileRun, Status>>>;

    async fn watch_reconcile_run(
        &self,
        req: tonic::Request<pb::WatchReconcileRunRequest>,
    ) -> Result<tonic::Response<Self::WatchReconcileRunStream>, Status> {
        self.note("WatchReconcileRun", &req.get_ref().run_id, &req);
        let mut runs: Vec<_> = (1..=3)
            .map(|i| {
                Ok(pb::ReconcileRun {
                    run_id: format!("{}-{i}", self.node),
                    ..Default::default()
                })
            })
            .collect();
        let mut end = MetadataMap::new();
        end.insert("x-ended-by", MetadataValue::from_static(self.node));
        runs.push(Err(Status::with_metadata(Code::Aborted, "the end", end)));
        self.answer(tokio_stream::iter(runs))
    }
}

#[tokio::test]
async fn a_streamed_answer_comes_back_message_by_message_with_its_trailers() {
    let p = pair(vec![]).await;
    let mut client = ReconcileServiceClient::connect(p.follower_addr.clone())
        .await
        .unwrap();
    for (run, node) in [("a", "leader"), ("b", "follower")] {
        let watch = pb::WatchReconcileRunRequest { run_id: run.into() };
        let response = client.watch_reconcile_run(watch).await.unwrap();
        assert_eq!(served_by(&response), node);
        let mut stream = response.into_inner();
        let mut ids = Vec::new();
        let end = loop {
            match tokio::time::timeout(WAIT, stream.message()).await.unwrap() {
                Ok(Some(run)) => ids.push(run.run_id),
                Ok(None) => panic!("the stream ended without its status"),
                Err(status) => break status,
            }
        };
        assert_eq!(ids, [1, 2, 3].map(|i| format!("{node}-{i}")));
        assert_eq!((end.code(), end.message()), (Code::Aborted, "the end"));
        let ended_by = end.metadata().get("x-ended-by").unwrap();
        assert_eq!(ended_by.to_str().unwrap(), node);
    }
    assert_eq!(p.leader_saw(), [("WatchReconcileRun", "a".to_owned())]);
    p.stop().await;
}

/// A CA (PEM), and a certificate and key it signs for 127.0.0.1.
fn tls_files() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn an_https_leader_is_reached_with_the_client_tls_config() {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (ca, cert, key) = tls_files();
    let stop = CancellationToken::new();
    let (leader_listener, leader_addr) = listener().await;
    let leader_addr = leader_addr.replace("http://", "https://");
    let leader = Fake {
        node: "leader",
        seen: Arc::default(),
    };
    let leader_server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .unwrap()
            .add_service(BindingServiceServer::new(leader.clone()))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(leader_listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let table: Arc<dyn Router> = Arc::new(Table {
        apps: HashMap::from([(
            "a".to_owned(),
            Route::Forward {
                node_id: "leader".into(),
                addr: leader_addr,
            },
        )]),
        ..Table::default()
    });
    let trusting = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    for (tls, served) in [(Some(trusting), true), (None, false)] {
        let mut follower = Forward::new(Arc::clone(&table), "follower".into(), tls).layer(
            BindingServiceServer::new(Fake {
                node: "follower",
                seen: Arc::default(),
            }),
        );
        let message = pb::BindRequest {
            app: "a".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let mut req = request(BIND, chunked(vec![framed(0, &message)]));
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        req.headers_mut()
            .insert("te", HeaderValue::from_static("trailers"));
        let response = tokio::time::timeout(WAIT, follower.call(req))
            .await
            .unwrap()
            .unwrap();
        let served_by = response.headers().get("x-served-by").cloned();
        if served {
            assert_eq!(served_by.unwrap(), "leader");
        } else {
            let status = Status::from_header_map(response.headers()).unwrap();
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        }
    }
    assert_eq!(summary(&leader.seen), [("Bind", "a".to_owned())]);
    stop.cancel();
    tokio::time::timeout(WAIT, leader_server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
