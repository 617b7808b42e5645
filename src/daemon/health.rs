//! gRPC health (`grpc.health.v1.Health`): the server as a whole (`""`, what load balancers and
//! Kubernetes probes ask about), each gRPC service, and each configured app as `app/<name>`.
//!
//! The server and its services are SERVING while the store takes writes and the daemon is not
//! draining. An app is SERVING where, on top of that, this replica can serve its calls now:
//! on a single node, always; in cluster mode, where this replica leads it, or where its leader
//! is known and registered so that writes are forwarded to it. During an election, while a
//! replica that won the app catches up, or when its leader's lease is ending, the app is
//! NOT_SERVING on every replica, and SERVING again once a leader serves.
//!
//! The apps' statuses also show in the metrics: `xpool_app_serving{app}` (as above) and
//! `xpool_app_leading{app}` (this replica serves the app itself).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::grpc;
use crate::grpc::pb::binding_service_server::BindingServiceServer;
use crate::grpc::pb::call_service_server::CallServiceServer;
use crate::grpc::pb::pool_service_server::PoolServiceServer;
use crate::grpc::pb::reconcile_service_server::ReconcileServiceServer;
use crate::grpc::pb::store_service_server::StoreServiceServer;
use crate::grpc::pb::watch_service_server::WatchServiceServer;
use crate::metrics::{AppLabel, Metrics};

/// How often the apps' statuses are looked at again (leaders move between looks).
const APPS_CHECK: Duration = Duration::from_millis(200);

/// The health service name of app `name`.
pub fn app_service(name: &str) -> String {
    format!("app/{name}")
}

/// Whether this replica can serve an app's calls now (itself, or through its leader), and
/// whether it serves them itself.
pub(super) trait AppReach: Send + Sync + 'static {
    fn reach(&self, app: &str) -> Reach;
}

/// How an app's calls are served from this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// This replica serves them.
    Here,
    /// Its leader, another replica, does; calls are forwarded to it.
    Forwarded,
    /// Nobody can, now.
    Unreachable,
}

/// The health reporter, and whether the server as a whole serves.
#[derive(Clone)]
pub(super) struct Health {
    reporter: HealthReporter,
    serving: Arc<watch::Sender<bool>>,
}

impl Health {
    pub(super) fn new(reporter: HealthReporter) -> Health {
        Health {
            reporter,
            serving: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Sets the server as a whole and every service; the apps follow (see
    /// [`Health::follow_apps`]).
    pub(super) async fn set(&self, status: ServingStatus) {
        for service in [
            "",
            <BindingServiceServer<grpc::binding::Bindings> as tonic::server::NamedService>::NAME,
            <PoolServiceServer<grpc::pool::Numbers> as tonic::server::NamedService>::NAME,
            <ReconcileServiceServer<grpc::reconcile::Reconcile> as tonic::server::NamedService>::NAME,
            <StoreServiceServer<grpc::store::StoreAdmin> as tonic::server::NamedService>::NAME,
            <CallServiceServer<grpc::calls::Calls> as tonic::server::NamedService>::NAME,
            <WatchServiceServer<grpc::watch::Changes> as tonic::server::NamedService>::NAME,
        ] {
            self.reporter.set_service_status(service, status).await;
        }
        self.serving.send_replace(status == ServingStatus::Serving);
    }

    /// Keeps each app's status (and its metrics) current until `stop`: SERVING where the
    /// server serves and `reach` says the app's calls can be served; NOT_SERVING otherwise,
    /// and for every app once `stop` is cancelled.
    pub(super) async fn follow_apps(
        self,
        apps: Vec<String>,
        reach: Arc<dyn AppReach>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let mut serving = self.serving.subscribe();
        let mut shown: HashMap<String, ServingStatus> = HashMap::new();
        loop {
            let server_serves = *serving.borrow_and_update();
            for app in &apps {
                let how = reach.reach(app);
                let status = if server_serves && how != Reach::Unreachable {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                let label = AppLabel { app: app.clone() };
                metrics
                    .app_serving
                    .get_or_create(&label)
                    .set(i64::from(status == ServingStatus::Serving));
                metrics
                    .app_leading
                    .get_or_create(&label)
                    .set(i64::from(how == Reach::Here));
                if shown.get(app) != Some(&status) {
                    tracing::debug!(app, ?status, ?how, "app health");
                    self.reporter
                        .set_service_status(app_service(app), status)
                        .await;
                    shown.insert(app.clone(), status);
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                _ = serving.changed() => {}
                () = tokio::time::sleep(APPS_CHECK) => {}
            }
        }
        for app in &apps {
            self.reporter
                .set_service_status(app_service(app), ServingStatus::NotServing)
                .await;
            metrics
                .app_serving
                .get_or_create(&AppLabel { app: app.clone() })
                .set(0);
        }
    }
}
