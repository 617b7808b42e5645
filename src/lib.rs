//! xpool: a daemon that owns a pool of Huawei Cloud PrivateNumber numbers and hands out masked
//! numbers over gRPC.
//!
//! `platform` is the wire contract, `upstream` the client that calls the platform, `sim` a local
//! simulator of the platform, `store` the sled store, `alloc` the pure allocation rules,
//! `lifecycle` the binding lifecycle, `jobs` background work, and `grpc` the API. [`run`]
//! starts it all.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod bench;
pub mod config;
pub mod grpc;
pub mod jobs;
pub mod lifecycle;
pub mod platform;
pub mod sim;
pub mod store;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::{AppConfig, Config};
use crate::grpc::pb::binding_service_server::BindingServiceServer;
use crate::grpc::pb::pool_service_server::PoolServiceServer;
use crate::grpc::pb::reconcile_service_server::ReconcileServiceServer;
use crate::lifecycle::{AppSetup, Clock, ExpiryPolicy, Pool, Rules, SystemClock};
use crate::store::{Store, StoreOptions};
use crate::upstream::AppClient;

/// Runs the daemon on `listener` until `shutdown` completes: health goes NOT_SERVING, in-flight
/// requests get the configured grace period, background jobs stop, and the store is flushed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with an injected wall clock (tests that move time).
pub async fn run_with_clock(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();

    if let Some(sim_config) = config.embedded_sim.clone() {
        let sim_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the embedded simulator")?;
        let addr = sim_listener.local_addr()?;
        config.point_at_embedded_sim(&format!("http://{addr}"));
        tracing::info!(
            %addr,
            "no config given: running the embedded default with the platform simulator in-process \
             and demo apps {}; pass --config FILE for a real platform",
            config.apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        let stop = cancel.clone();
        tasks.spawn(async move {
            if let Err(e) = sim::serve(sim_config, sim_listener, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "embedded simulator failed");
            }
        });
    }

    let store = Arc::new(
        Store::open(&StoreOptions {
            path: config.store.path.clone(),
            cache_capacity_bytes: config.store.cache_capacity_mb * 1024 * 1024,
            temporary: false,
        })
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?,
    );
    tracing::info!(path = %config.store.path.display(), "store open");

    let http = upstream::http_client();
    let setups = config
        .apps
        .iter()
        .map(|app| app_setup(app, &http))
        .collect();
    let pool = Arc::new(Pool::open(Arc::clone(&store), setups, &clock)?);
    add_configured_numbers(&pool, &config).await?;
    let open = pool.recover().await;
    if open > 0 {
        tracing::warn!(
            open,
            "some bindings could not be resolved at start-up; retrying in the background"
        );
    }

    let expiry = jobs::Expiry {
        pool: Arc::clone(&pool),
        clock: Arc::clone(&clock),
        policy: ExpiryPolicy {
            skew_grace_ms: (config.expiry.skew_grace_seconds as i64).saturating_mul(1000),
            defensive_unbind: config.expiry.defensive_unbind,
            batch_size: config.expiry.batch_size,
            round_budget: Duration::from_millis(config.expiry.round_budget_ms),
        },
    };
    // Bindings whose deadline passed while the daemon was down go first.
    let overdue = expiry.catch_up(Duration::from_secs(5)).await;
    if overdue > 0 {
        tracing::info!(
            overdue,
            "expired bindings whose deadline passed while stopped"
        );
    }
    tasks.spawn(expiry.run(cancel.clone()));
    let reconciler = Arc::new(lifecycle::Reconciler::new(
        Arc::clone(&pool),
        Arc::clone(&clock),
        Duration::from_secs(config.reconcile.grace_seconds),
        match config.reconcile.orphan_policy {
            config::OrphanPolicy::Adopt => lifecycle::OrphanPolicy::Adopt,
            config::OrphanPolicy::Release => lifecycle::OrphanPolicy::Release,
        },
    ));
    if config.reconcile.interval_seconds > 0 {
        let every = Duration::from_secs(config.reconcile.interval_seconds);
        tasks.spawn(Arc::clone(&reconciler).run(every, cancel.clone()));
    }
    let resolver = jobs::Resolver {
        pool: Arc::clone(&pool),
        every: Duration::from_secs(5),
    };
    tasks.spawn(resolver.run(cancel.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<BindingServiceServer<grpc::binding::Bindings>>()
        .await;
    health
        .set_serving::<PoolServiceServer<grpc::pool::Numbers>>()
        .await;
    health
        .set_serving::<ReconcileServiceServer<grpc::reconcile::Reconcile>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let max_wait = Duration::from_millis(config.server.max_request_wait_ms);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gRPC server listening");
    let stop_serving = CancellationToken::new();
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(BindingServiceServer::new(grpc::binding::Bindings::new(
            Arc::clone(&pool),
            max_wait,
        )))
        .add_service(PoolServiceServer::new(grpc::pool::Numbers::new(
            Arc::clone(&pool),
        )))
        .add_service(ReconcileServiceServer::new(
            grpc::reconcile::Reconcile::new(reconciler),
        ))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener),
            stop_serving.clone().cancelled_owned(),
        );
    let mut server = tokio::spawn(server);

    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            // The server stopped on its own: an error.
            cancel.cancel();
            result??;
            anyhow::bail!("the gRPC server stopped unexpectedly");
        }
    }
    tracing::info!("shutting down: health NOT_SERVING, draining in-flight requests");
    health
        .set_not_serving::<BindingServiceServer<grpc::binding::Bindings>>()
        .await;
    health
        .set_not_serving::<PoolServiceServer<grpc::pool::Numbers>>()
        .await;
    health
        .set_not_serving::<ReconcileServiceServer<grpc::reconcile::Reconcile>>()
        .await;
    // The server as a whole (what load balancers and Kubernetes probes ask about).
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    stop_serving.cancel();
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result??,
        Err(_) => {
            tracing::warn!(
                ?grace,
                "in-flight requests did not finish within the grace period"
            );
            server.abort();
        }
    }
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    store.close().await.context("flushing the store")?;
    tracing::info!("stopped");
    Ok(())
}

fn app_setup(app: &AppConfig, http: &reqwest::Client) -> AppSetup {
    let rules = Rules {
        mode: app.mode,
        max_bindings_per_x: app.max_bindings_per_x,
        extension_digits: app.extension_digits,
        max_extensions_per_x: app.max_extensions_per_x,
        cool_down_ms: (app.cool_down_seconds as i64).saturating_mul(1000),
        fallback_areas: app.fallback_areas.clone(),
    };
    let client = app
        .has_upstream()
        .then(|| Arc::new(AppClient::new(app.upstream_settings(), http.clone())));
    AppSetup {
        name: app.name.clone(),
        rules,
        client,
    }
}

/// Numbers listed in the config join their app's pool at start-up.
async fn add_configured_numbers(pool: &Pool, config: &Config) -> anyhow::Result<()> {
    for app in &config.apps {
        let numbers: Vec<(String, String)> = app
            .numbers
            .iter()
            .map(|n| (n.number.clone(), n.area_code.clone()))
            .collect();
        if numbers.is_empty() {
            continue;
        }
        let (added, updated) = pool
            .app(&app.name)?
            .add_numbers(&numbers)
            .await
            .with_context(|| format!("adding the configured numbers of app {}", app.name))?;
        if added + updated > 0 {
            tracing::info!(app = %app.name, added, updated, "configured numbers added");
        }
    }
    Ok(())
}
