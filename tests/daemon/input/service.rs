//! Health, server reflection (v1 and v1alpha) and a clean shutdown.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

async fn channel(d: &Daemon) -> Channel {
    Channel::from_shared(d.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_is_serving_and_goes_not_serving_on_shutdown() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let d = Daemon::start().await;
    let ch = channel(&d).await;
    let mut h = HealthClient::new(ch.clone());
    for service in ["", "xpool.v1.BindingService", "xpool.v1.PoolService"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let err = h
        .check(HealthCheckRequest {
            service: "xpool.v1.Nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Watch each service, then begin shutdown: every watch sees NOT_SERVING before the daemon
    // stops (the watches hold the connection open; they are dropped before the grace ends).
    let mut watches = Vec::new();
    for service in ["", "xpool.v1.BindingService", "xpool.v1.PoolService"] {
        let mut w = h
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = w.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving, "{service:?}");
        watches.push((service, w));
    }
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(d.stop());
    let mut seen = Vec::new();
    for (service, w) in &mut watches {
        let next = tokio::time::timeout(Duration::from_secs(2), w.message()).await;
        let status = match next {
            Ok(Ok(Some(m))) => format!("{:?}", m.status()),
            Ok(Ok(None)) => "stream ended".to_owned(),
            Ok(Err(e)) => format!("error {e:?}"),
            Err(_) => "no change within 2 s".to_owned(),
        };
        seen.push((*service, status));
    }
    drop(watches);
    drop(h);
    drop(ch);
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the daemon stops")
        .unwrap();
    let elapsed = started.elapsed();
    for (service, status) in &seen {
        assert_eq!(
            status, "NotServing",
            "health of {service:?} during shutdown; all: {seen:?}"
        );
    }
    // Only the watches were in flight, and they ended as soon as they were dropped.
    assert!(
        elapsed < Duration::from_secs(4),
        "shutdown took {elapsed:?}"
    );
}

/// Sends `requests` on one reflection stream of the given protocol and returns the answers as
/// (service names, file descriptors, error codes) per request.
macro_rules! reflect {
    ($proto:ident, $ch:expr, $requests:expr) => {{
        use tonic_reflection::pb::$proto::ServerReflectionRequest;
        use tonic_reflection::pb::$proto::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$proto::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$proto::server_reflection_response::MessageResponse;
        let requests: Vec<ServerReflectionRequest> = $requests
            .into_iter()
            .map(|r: Reflect| ServerReflectionRequest {
                host: String::new(),
                message_request: Some(match r {
                    Reflect::List => MessageRequest::ListServices(String::new()),
                    Reflect::Symbol(s) => MessageRequest::FileContainingSymbol(s.into()),
                    Reflect::File(f) => MessageRequest::FileByFilename(f.into()),
                }),
            })
            .collect();
        let n = requests.len();
        let mut client = ServerReflectionClient::new($ch);
        let mut stream = client
            .server_reflection_info(tonic::codegen::tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => break,
                // tonic-reflection ends the stream with a status for an unknown symbol.
                Err(status) => {
                    out.push(Answer::Error(
                        status.code() as i32,
                        status.message().to_owned(),
                    ));
                    break;
                }
            };
            out.push(match resp.message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    Answer::Services(l.service.into_iter().map(|s| s.name).collect())
                }
                Some(MessageResponse::FileDescriptorResponse(f)) => Answer::Files(
                    f.file_descriptor_proto
                        .iter()
                        .map(|b| {
                            <prost_types::FileDescriptorProto as prost::Message>::decode(
                                b.as_slice(),
                            )
                            .unwrap()
                        })
                        .collect(),
                ),
                Some(MessageResponse::ErrorResponse(e)) => {
                    Answer::Error(e.error_code, e.error_message)
                }
                other => panic!("unexpected reflection answer {other:?}"),
            });
        }
        assert_eq!(out.len(), n, "one answer per request");
        out
    }};
}

#[derive(Debug, Clone, Copy)]
enum Reflect {
    List,
    Symbol(&'static str),
    File(&'static str),
}

#[derive(Debug)]
enum Answer {
    Services(Vec<String>),
    Files(Vec<prost_types::FileDescriptorProto>),
    Error(i32, String),
}

fn check_reflection(protocol: &str, answers: &[Answer]) {
    let Answer::Services(services) = &answers[0] else {
        panic!("{protocol}: list: {:?}", answers[0]);
    };
    for s in [
        "xpool.v1.BindingService",
        "xpool.v1.PoolService",
        "xpool.v1.CallService",
        "xpool.v1.WatchService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|x| x == s),
            "{protocol}: {s} not listed: {services:?}"
        );
    }
    // describe xpool.v1.BindingService: the file that defines it, with its methods.
    let Answer::Files(files) = &answers[1] else {
        panic!("{protocol}: BindingService: {:?}", answers[1]);
    };
    let binding = files
        .iter()
        .find(|f| {
            f.package() == "xpool.v1" && f.service.iter().any(|s| s.name() == "BindingService")
        })
        .unwrap_or_else(|| panic!("{protocol}: no file defines BindingService: {files:?}"));
    let svc = binding
        .service
        .iter()
        .find(|s| s.name() == "BindingService")
        .unwrap();
    let methods: Vec<&str> = svc.method.iter().map(|m| m.name()).collect();
    for m in [
        "Bind",
        "Unbind",
        "UpdateBinding",
        "GetBinding",
        "ListBindings",
    ] {
        assert!(methods.contains(&m), "{protocol}: {m} not in {methods:?}");
    }
    assert!(
        binding
            .message_type
            .iter()
            .any(|m| m.name() == "BindRequest"),
        "{protocol}"
    );
    // describe xpool.v1.BindRequest and xpool.v1.PoolService.
    for (i, what) in [(2, "BindRequest"), (3, "PoolService")] {
        let Answer::Files(files) = &answers[i] else {
            panic!("{protocol}: {what}: {:?}", answers[i]);
        };
        assert!(
            files.iter().any(|f| f.package() == "xpool.v1"
                && (f.message_type.iter().any(|m| m.name() == what)
                    || f.service.iter().any(|s| s.name() == what))),
            "{protocol}: {what} not described"
        );
    }
    // The import a client needs to resolve Binding's timestamps is served too.
    let Answer::Files(files) = &answers[4] else {
        panic!("{protocol}: timestamp.proto: {:?}", answers[4]);
    };
    assert!(
        files
            .iter()
            .any(|f| f.name() == "google/protobuf/timestamp.proto"),
        "{protocol}: google/protobuf/timestamp.proto not served"
    );
    // The health service is described too.
    let Answer::Files(files) = &answers[5] else {
        panic!("{protocol}: Health: {:?}", answers[5]);
    };
    assert!(
        files.iter().any(|f| f.package() == "grpc.health.v1"),
        "{protocol}"
    );
    // An unknown symbol is NOT_FOUND (an error answer, or tonic-reflection's closing status).
    let Answer::Error(code, message) = &answers[6] else {
        panic!("{protocol}: unknown symbol: {:?}", answers[6]);
    };
    assert_eq!(*code, Code::NotFound as i32, "{protocol}: {message}");
}

#[tokio::test]
async fn reflection_lists_and_describes_in_v1_and_v1alpha() {
    let d = Daemon::start().await;
    let requests = [
        Reflect::List,
        Reflect::Symbol("xpool.v1.BindingService"),
        Reflect::Symbol("xpool.v1.BindRequest"),
        Reflect::Symbol("xpool.v1.PoolService"),
        Reflect::File("google/protobuf/timestamp.proto"),
        Reflect::Symbol("grpc.health.v1.Health"),
        Reflect::Symbol("xpool.v1.Nope"),
    ];
    let v1 = reflect!(v1, channel(&d).await, requests);
    check_reflection("v1", &v1);
    let v1alpha = reflect!(v1alpha, channel(&d).await, requests);
    check_reflection("v1alpha", &v1alpha);
    d.stop().await;
}

#[tokio::test]
async fn clean_shutdown_keeps_the_bindings_for_the_next_start() {
    let (d, mut c) = Daemon::start_with_client().await;
    let mut made = Vec::new();
    for (i, req) in [axb(), ax(), axe(), axyb(), x_mode()]
        .into_iter()
        .enumerate()
    {
        let req = with(req, |r| r.request_id = format!("keep-{i}"));
        made.push(c.bind(req).await.unwrap().into_inner());
    }
    drop(c);
    let started = std::time::Instant::now();
    // `restart` stops cleanly (asserting Ok within the grace period) and starts on the same store.
    let d = d.restart().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut c = d.bindings().await;
    for b in &made {
        let got = d.get(&b.binding_id).await;
        assert_eq!(&got, b);
        let by_request = c
            .get_binding(pb::GetBindingRequest::by_request(
                b.app.clone(),
                b.request_id.clone(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&by_request, b);
    }
    // A repeated Bind after the restart returns the stored binding, not a new one.
    let again = c
        .bind(with(axb(), |r| r.request_id = "keep-0".into()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.binding_id, made[0].binding_id);
    assert_all_local_equals_sim(&d).await;
    // And it still works: unbind one of the old bindings.
    let released = d.unbind_ok(&made[0].binding_id).await;
    assert_eq!(released.state(), pb::BindingState::Released);
    d.stop().await;
}
