//! Two in-process servers on loopback: a follower with the layer, and a leader, both serving
//! fakes of `BindingService` and `ReconcileService` that note every call they handle.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::server::TcpIncoming;
use tonic_types::StatusExt as _;

use super::tests::{BIND, Table, WAIT, chunked, framed, request};
use super::*;
use crate::grpc::pb;
use crate::grpc::pb::binding_service_client::BindingServiceClient;
use crate::grpc::pb::binding_service_server::{BindingService, BindingServiceServer};
use crate::grpc::pb::reconcile_service_client::ReconcileServiceClient;
use crate::grpc::pb::reconcile_service_server::{ReconcileService, ReconcileServiceServer};

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
