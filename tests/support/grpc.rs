//! gRPC helpers: readiness through the health service, whole listings across pages, and a
//! timeout on every call so a hang fails the test instead of blocking CI.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;

/// Every RPC made through [`rpc`].
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The service whose health says the daemon has recovered and serves.
const SERVICE: &str = "xpool.v1.BindingService";

/// One `grpc.health.v1.Health/Check` of [`SERVICE`]; `None` if the daemon did not answer.
pub async fn health(addr: &str) -> Option<ServingStatus> {
    health_of(addr, SERVICE).await
}

/// One `grpc.health.v1.Health/Check` of `service` (empty: the server overall); `None` if the
/// server did not answer within two seconds.
pub async fn health_of(addr: &str, service: &str) -> Option<ServingStatus> {
    let probe = async {
        let channel = Channel::from_shared(addr.to_owned())
            .unwrap()
            .connect()
            .await
            .ok()?;
        let reply = HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .ok()?;
        Some(reply.into_inner().status())
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
}

/// Asks health until it says SERVING. `Err` with what `gone` reports as soon as the server has
/// exited; panics after `limit`.
pub async fn wait_serving<E>(
    addr: &str,
    limit: Duration,
    mut gone: impl FnMut() -> Option<E>,
) -> Result<(), E> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(e) = gone() {
            return Err(e);
        }
        if health(addr).await == Some(ServingStatus::Serving) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the daemon at {addr} did not report SERVING within {limit:?}");
}

/// Awaits a call for at most [`RPC_TIMEOUT`] (`what` names it if it hangs).
pub async fn rpc<T>(
    what: &str,
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(RPC_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {RPC_TIMEOUT:?}"))
        .map(tonic::Response::into_inner)
}

/// Every item of a paged listing: `page(token)` answers one page and the next token.
async fn all_pages<T, F>(mut page: impl FnMut(String) -> F) -> Vec<T>
where
    F: Future<Output = (Vec<T>, String)>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await;
        out.extend(items);
        if next.is_empty() {
            return out;
        }
        token = next;
    }
}

/// Every binding of `app` in `state` (UNSPECIFIED: all), across pages.
pub async fn list_bindings(
    client: &mut BindingServiceClient<Channel>,
    app: &str,
    state: pb::BindingState,
) -> Vec<pb::Binding> {
    all_pages(|page_token| {
        let mut client = client.clone();
        let req = pb::ListBindingsRequest {
            app: app.into(),
            state: state.into(),
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        async move {
            let page = rpc("ListBindings", client.list_bindings(req))
                .await
                .unwrap();
            (page.bindings, page.next_page_token)
        }
    })
    .await
}

/// Every number of `app`, across pages.
pub async fn list_numbers(
    client: &mut PoolServiceClient<Channel>,
    app: &str,
) -> Vec<pb::NumberInfo> {
    all_pages(|page_token| {
        let mut client = client.clone();
        let req = pb::ListNumbersRequest {
            app: app.into(),
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        async move {
            let page = rpc("ListNumbers", client.list_numbers(req)).await.unwrap();
            (page.numbers, page.next_page_token)
        }
    })
    .await
}

/// Whether a reconciliation run has ended.
pub fn is_final(run: &pb::ReconcileRun) -> bool {
    use pb::ReconcileRunState::*;
    matches!(run.state(), Succeeded | Failed | Cancelled)
}

/// Starts a reconciliation run of `req`, which must be accepted at once (QUEUED or RUNNING, with
/// a run id), and follows it to its final state; the run then.
pub async fn reconcile_and_wait(
    client: &mut ReconcileServiceClient<Channel>,
    req: pb::ReconcileRequest,
) -> pb::ReconcileRun {
    let what = format!("Reconcile {req:?}");
    let run = rpc(&what, client.reconcile(req))
        .await
        .unwrap_or_else(|s| panic!("{what}: {s:?}"));
    use pb::ReconcileRunState::*;
    assert!(
        matches!(run.state(), Queued | Running) && !run.run_id.is_empty(),
        "{what}: {run:?}"
    );
    watch_run(client, &run.run_id)
        .await
        .pop()
        .expect("a watch sends the run at least once")
}

/// Every message of a WatchReconcileRun of `run_id` until the stream ends, which it must do
/// after the run's final state (and only then); each message is that run.
pub async fn watch_run(
    client: &mut ReconcileServiceClient<Channel>,
    run_id: &str,
) -> Vec<pb::ReconcileRun> {
    let req = pb::WatchReconcileRunRequest {
        run_id: run_id.into(),
    };
    let mut stream = rpc("WatchReconcileRun", client.watch_reconcile_run(req))
        .await
        .unwrap_or_else(|s| panic!("WatchReconcileRun {run_id}: {s:?}"));
    let mut seen: Vec<pb::ReconcileRun> = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(run)) => {
                assert_eq!(run.run_id, run_id, "{run:?}");
                if let Some(last) = seen.last() {
                    assert!(!is_final(last), "a message after the final state: {run:?}");
                }
                seen.push(run);
            }
            Ok(None) => break,
            Err(s) => panic!("WatchReconcileRun {run_id}: {s:?} after {seen:?}"),
        }
    }
    let last = seen.last().expect("a watch sends the run at least once");
    assert!(is_final(last), "the watch ended before the run: {seen:?}");
    seen
}

/// A Bind request for `app` with the given parties.
pub fn bind(app: &str, a: &str, b: Option<&str>) -> pb::BindRequest {
    pb::BindRequest {
        app: app.into(),
        party_a: a.into(),
        party_b: b.unwrap_or_default().into(),
        ..Default::default()
    }
}

/// [`bind`] on the X number `x`.
pub fn pinned(app: &str, a: &str, b: Option<&str>, x: &str) -> pb::BindRequest {
    pb::BindRequest {
        x_number: x.into(),
        ..bind(app, a, b)
    }
}

/// [`bind`] in the area `area`.
pub fn in_area(app: &str, a: &str, b: Option<&str>, area: &str) -> pb::BindRequest {
    pb::BindRequest {
        area_code: area.into(),
        ..bind(app, a, b)
    }
}

/// [`bind`] that takes any area when the requested one (if any) is full.
pub fn bind_any(app: &str, a: &str, b: Option<&str>) -> pb::BindRequest {
    pb::BindRequest {
        any_area: true,
        ..bind(app, a, b)
    }
}
