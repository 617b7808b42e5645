//! The daemon's life: [`Daemon::build`] opens the store and wires the parts without starting
//! anything, [`Daemon::recover`] settles what the last run left open, and [`Daemon::run`] serves
//! until shutdown, then stops every task it started and closes the store.

mod admin;
mod cluster;
pub mod connections;
mod gauges;
mod health;
mod measure;
mod router;
mod serve;
mod store_watch;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alloc::Rules;
use crate::calls::{CallLog, CallLogSettings};
use crate::config::{self, AppConfig, Config};
use crate::jobs;
use crate::lifecycle::{self, AppSetup, Clock, ExpiryPolicy, Pool, RetentionPolicy};
use crate::metrics::ReadCounter;
use crate::store::{Store, StoreOptions};
use crate::upstream::{self, AppClient};

/// How long start-up spends expiring bindings whose deadline passed while the daemon was down;
/// the expiry job takes over the rest.
const CATCH_UP_BUDGET: Duration = Duration::from_secs(5);

/// How often bindings left pending are retried in the background.
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// A daemon that is wired but not yet serving. Every task it starts runs on its
/// [`TaskTracker`] and stops on its [`CancellationToken`].
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    store: Arc<Store>,
    pool: Arc<Pool>,
    expiry: jobs::Expiry,
    retention: jobs::Retention,
    reconciler: Arc<lifecycle::Reconciler>,
    /// Call events, CDRs, SMS and the change feed (written by the push receiver, read over
    /// gRPC).
    calls: Arc<CallLog>,
    /// Stops the reconciliation worker as soon as shutdown refuses new calls (a run can take
    /// minutes, and every step is crash-safe): the running and queued runs end CANCELLED, which
    /// ends their Watch streams, so the drain need not wait for them. A child of `cancel`.
    stop_reconciling: CancellationToken,
    metrics: Arc<crate::metrics::Metrics>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Counts of the gRPC listener's connections, kept by the accept loop and each connection.
    connections: Arc<connections::ConnectionStats>,
    /// A listener bound by the caller for the push receiver (see
    /// [`Daemon::with_push_listener`]); taken when serving starts.
    push_listener: Option<tokio::net::TcpListener>,
    /// The same for the admin listener (see [`Daemon::with_admin_listener`]).
    admin_listener: Option<tokio::net::TcpListener>,
    /// Cluster mode (`[cluster]`): this replica's membership, copy, writer and leadership;
    /// taken at stop.
    cluster: std::sync::Mutex<Option<cluster::ClusterNode>>,
}

impl Daemon {
    /// Opens the store and the pool, adds the configured numbers and wires the jobs; starts
    /// no task and binds nothing. On an error the store is closed again. Refuses a config
    /// With `[cluster]` the pool serves no app until this replica leads it (see `cluster`).
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Daemon> {
        let store = Arc::new(
            Store::open(&StoreOptions {
                path: config.store.path.clone(),
                cache_capacity_bytes: config.store.cache_capacity_mb * 1024 * 1024,
                temporary: false,
            })
            .with_context(|| format!("opening the store at {}", config.store.path.display()))?,
        );
        tracing::info!(
            path = %config.store.path.display(),
            released_retention_days = config.store.released_retention_days,
            request_id_retention_hours = config.store.request_id_retention_hours,
            "store open"
        );
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let connections: Arc<connections::ConnectionStats> = Arc::default();
        let mut metrics = crate::metrics::Metrics::default();
        store.observe_log(metrics.log.clone());
        let upstream_metrics = metrics.upstream.clone();
        let pool =
            match open_pool(&config, &store, &clock, &tasks, &cancel, &upstream_metrics).await {
                Ok(pool) => pool,
                Err(e) => {
                    if let Err(close) = store.close().await {
                        tracing::warn!(error = %close, "closing the store after a failed start");
                    }
                    return Err(e);
                }
            };
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
        let retention = jobs::Retention {
            pool: Arc::clone(&pool),
            clock: Arc::clone(&clock),
        };
        let stop_reconciling = cancel.child_token();
        let (runs, drift) = (
            metrics.reconcile_runs.clone(),
            metrics.reconcile_drift.clone(),
        );
        let reconciler = Arc::new(
            lifecycle::Reconciler::new(
                Arc::clone(&pool),
                Arc::clone(&clock),
                Duration::from_secs(config.reconcile.grace_seconds),
                match config.reconcile.orphan_policy {
                    config::OrphanPolicy::Adopt => lifecycle::OrphanPolicy::Adopt,
                    config::OrphanPolicy::Release => lifecycle::OrphanPolicy::Release,
                },
            )
            .observed(lifecycle::RunObserver::new(move |run| {
                count_run(&runs, &drift, run);
            })),
        );
        let calls = Arc::new(CallLog::new(
            Arc::clone(&store),
            Arc::clone(&pool),
            Arc::clone(&clock),
            CallLogSettings {
                retention_days: config.callbacks.retention_days,
                watch_retention_hours: config.watch.retention_hours,
            },
        ));
        let retained = Arc::clone(&pool);
        metrics.register_collector(Box::new(ReadCounter::new(
            "retention_deleted",
            "Bindings that left service deleted once their retention had passed",
            move || retained.retention_deleted(),
        )));
        metrics.register_collector(Box::new(Arc::clone(&connections)));
        metrics.register_collector(Box::new(gauges::PoolGauges {
            pool: Arc::clone(&pool),
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            skew_grace_ms: expiry.policy.skew_grace_ms,
        }));
        Ok(Daemon {
            config,
            store,
            pool,
            expiry,
            retention,
            reconciler,
            calls,
            stop_reconciling,
            metrics: Arc::new(metrics),
            cancel,
            tasks,
            connections,
            push_listener: None,
            admin_listener: None,
            cluster: std::sync::Mutex::default(),
        })
    }

    /// Cluster mode: joins the cluster once the gRPC listener is bound at `bound` (the
    /// address other replicas forward to, unless `advertise_addr` names another), so that no
    /// app is led before this replica can answer for it.
    ///
    /// `callbacks` is where the push receiver is bound, if it runs: the other replicas forward
    /// pushes there (at the advertised host when it is bound to every interface).
    async fn join_cluster(
        &self,
        bound: std::net::SocketAddr,
        callbacks: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<()> {
        let Some(cluster) = &self.config.cluster else {
            return Ok(());
        };
        let mut cluster = cluster.clone();
        if cluster.advertise_addr.ends_with(":0") {
            cluster.advertise_addr = bound.to_string();
        }
        let callbacks = callbacks.map(|at| callbacks_advertised(&cluster.advertise_addr, at));
        let node = cluster::ClusterNode::start(
            &cluster,
            callbacks,
            &self.config,
            &self.store,
            &self.pool,
            &self.tasks,
            &self.cancel,
        )
        .await?;
        *self
            .cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(node);
        Ok(())
    }

    /// The forwarding layer: in cluster mode, calls about apps another replica leads go to
    /// it (see `router`); on a single node, off.
    fn forwarding(&self) -> anyhow::Result<crate::cluster::forward::Forward> {
        use crate::cluster::forward::Forward;
        Ok(match (self.cluster_router(), &self.config.cluster) {
            (Some(router), Some(config)) => {
                let tls = match &config.peer_tls {
                    Some(files) => Some(peer_tls(files).context("cluster.peer_tls")?),
                    None => None,
                };
                Forward::new(Arc::new(router), config.node_id.clone(), tls)
                    .max_message_bytes(self.config.server.max_message_bytes)
                    .metrics(Arc::clone(&self.metrics))
            }
            _ => Forward::off(),
        })
    }

    /// The authentication layer; in cluster mode it takes the caller of a call another
    /// replica forwarded for a client known by its certificate (`auth::FORWARDED_CLIENT`)
    /// from a peer whose certificate names a live replica: its node id, or the host of its
    /// `advertise_addr`.
    fn authenticate(&self) -> crate::auth::layer::Authenticate {
        use crate::auth::{Authenticator, layer::Authenticate, layer::Forwarders};
        let forwarders = self.cluster_router().map(|router| {
            let nodes = router.nodes;
            let is_replica: Forwarders = Arc::new(move |names: &[String]| {
                let nodes = nodes.borrow();
                nodes.entries.iter().any(|(id, node)| {
                    let addr = &node.value.advertise_addr;
                    let host = addr
                        .rsplit_once(':')
                        .map_or(addr.as_str(), |(host, _)| host);
                    names.iter().any(|name| name == id || name == host)
                })
            });
            is_replica
        });
        Authenticate::new(
            self.config.auth.as_ref().map(Authenticator::new),
            Arc::clone(&self.metrics),
            forwarders,
        )
    }

    /// Where each app's calls are served from this replica, for its health.
    fn app_reach(&self) -> Arc<dyn health::AppReach> {
        match self.cluster_router() {
            Some(router) => Arc::new(router),
            None => Arc::new(router::SingleNode(Arc::clone(&self.pool))),
        }
    }

    /// In cluster mode, once joined: where calls go, from this replica's view of the leaders
    /// and the live replicas.
    fn cluster_router(&self) -> Option<router::ClusterRouter> {
        let cluster = self
            .cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (Some(node), Some(config)) = (&*cluster, &self.config.cluster) else {
            return None;
        };
        Some(router::ClusterRouter {
            node_id: config.node_id.clone(),
            pool: Arc::clone(&self.pool),
            store: Arc::clone(&self.store),
            leaders: node.leaders(),
            nodes: node.nodes(),
            session: node.session(),
            scheme: if self.config.server.tls.is_some() {
                "https"
            } else {
                "http"
            },
            callbacks_scheme: if self.config.callbacks.tls.is_some() {
                "https"
            } else {
                "http"
            },
        })
    }

    /// Whether this daemon is a replica of a cluster (`[cluster]`).
    pub fn is_clustered(&self) -> bool {
        self.config.cluster.is_some()
    }

    /// Serves the push receiver on `listener`, bound already (a test's port 0, whose address
    /// the simulator must know before the daemon starts), instead of binding `[callbacks]
    /// listen`.
    pub fn with_push_listener(mut self, listener: tokio::net::TcpListener) -> Daemon {
        self.push_listener = Some(listener);
        self
    }

    /// Serves the admin listener (metrics, probes) on `listener`, bound already (a test's port
    /// 0, whose port it must know), instead of binding `[admin] listen`.
    pub fn with_admin_listener(mut self, listener: tokio::net::TcpListener) -> Daemon {
        self.admin_listener = Some(listener);
        self
    }

    /// Counts of the gRPC listener's connections (open, accepted, refused at the cap, …), for
    /// logs and metrics.
    pub fn connection_stats(&self) -> &Arc<connections::ConnectionStats> {
        &self.connections
    }

    /// Resolves the bindings a previous run left pending and expires those whose deadline
    /// passed while the daemon was down. Call it before binding the gRPC port, so nothing is
    /// listening (and no probe hangs) until the daemon can answer.
    pub async fn recover(&self) {
        let open = self.pool.recover().await;
        if open > 0 {
            tracing::warn!(
                open,
                "some bindings could not be resolved at start-up; retrying in the background"
            );
        }
        let overdue = self.expiry.catch_up(CATCH_UP_BUDGET).await;
        if overdue > 0 {
            tracing::info!(
                overdue,
                "expired bindings whose deadline passed while stopped"
            );
        }
    }

    /// Starts the background jobs on the daemon's tracker.
    fn start_jobs(&self) {
        self.tasks
            .spawn(self.expiry.clone().run(self.cancel.clone()));
        // In cluster mode, each replica purges the bindings of the apps it leads.
        self.tasks
            .spawn(self.retention.clone().run(self.cancel.clone()));
        // In cluster mode, each replica purges the call records of the apps it leads.
        let call_log = jobs::CallLogRetention {
            calls: Arc::clone(&self.calls),
        };
        self.tasks.spawn(call_log.run(self.cancel.clone()));
        let worker = jobs::ReconcileWorker {
            reconciler: Arc::clone(&self.reconciler),
        };
        self.tasks.spawn(worker.run(self.stop_reconciling.clone()));
        if self.config.reconcile.interval_seconds > 0 {
            let scheduled = jobs::ScheduledReconcile {
                reconciler: Arc::clone(&self.reconciler),
                every: Duration::from_secs(self.config.reconcile.interval_seconds),
            };
            self.tasks
                .spawn(scheduled.run(self.stop_reconciling.clone()));
        }
        let resolver = jobs::Resolver {
            pool: Arc::clone(&self.pool),
            every: RESOLVE_EVERY,
        };
        self.tasks.spawn(resolver.run(self.cancel.clone()));
    }

    /// Closes a daemon that will not serve (e.g. its port could not be bound).
    pub async fn close(self) -> anyhow::Result<()> {
        self.stop(Duration::from_secs(
            self.config.server.shutdown_grace_seconds,
        ))
        .await
    }

    /// Cancels every task, waits for them at most `bound`, and closes the store.
    async fn stop(&self, bound: Duration) -> anyhow::Result<()> {
        let node = self
            .cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(node) = node {
            // Resign first, so that another replica takes the apps at once.
            node.stop().await;
        }
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(bound, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?bound,
                tasks = self.tasks.len(),
                "background tasks did not stop in time; closing the store anyway"
            );
        }
        if !self.is_clustered()
            && let Err(e) = self.pool.note_table_sizes().await
        {
            tracing::warn!(error = %e, "cannot note the index's size for the next start-up");
        }
        self.store.close().await.context("flushing the store")
    }
}

async fn open_pool(
    config: &Config,
    store: &Arc<Store>,
    clock: &Arc<dyn Clock>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
    metrics: &crate::metrics::UpstreamMetrics,
) -> anyhow::Result<Arc<Pool>> {
    let http = upstream::http_client();
    let setups = config
        .apps
        .iter()
        .map(|app| app_setup(app, &http, tasks, cancel, metrics))
        .collect();
    let retention = RetentionPolicy::new(
        config.store.released_retention(),
        config.store.request_id_retention(),
    );
    if config.cluster.is_some() {
        // Apps are served (and their configured numbers added) as this replica leads them.
        return Ok(Arc::new(Pool::standby(
            Arc::clone(store),
            setups,
            clock,
            retention,
        )?));
    }
    let pool = Pool::open(Arc::clone(store), setups, clock, retention)?;
    add_configured_numbers(&pool, config).await?;
    Ok(Arc::new(pool))
}

fn app_setup(
    app: &AppConfig,
    http: &reqwest::Client,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
    metrics: &crate::metrics::UpstreamMetrics,
) -> AppSetup {
    let rules = Rules {
        mode: app.mode,
        max_bindings_per_x: app.max_bindings_per_x,
        extension_digits: app.extension_digits,
        max_extensions_per_x: app.max_extensions_per_x,
        cool_down_ms: (app.cool_down_seconds as i64).saturating_mul(1000),
        fallback_areas: app.fallback_areas.clone(),
    };
    let client = app.has_upstream().then(|| {
        let client = AppClient::new(app.upstream_settings(), http.clone());
        client.observe(&app.name, metrics.clone());
        Arc::new(client)
    });
    AppSetup {
        name: app.name.clone(),
        rules,
        client,
        pending_recheck: Duration::from_millis(app.pending_recheck_ms),
        check_numbers_on_add: app.check_numbers_on_add,
        call_defaults: app.call_defaults.clone(),
        tasks: tasks.clone(),
        cancel: cancel.clone(),
    }
}

/// Counts a finished reconciliation run and the drift it fixed.
fn count_run(
    runs: &prometheus_client::metrics::family::Family<
        crate::metrics::StateLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    drift: &prometheus_client::metrics::family::Family<
        crate::metrics::DriftLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    run: &lifecycle::ReconcileRun,
) {
    let state = match run.state {
        lifecycle::RunState::Succeeded => "succeeded",
        lifecycle::RunState::Failed => "failed",
        lifecycle::RunState::Cancelled => "cancelled",
        lifecycle::RunState::Queued | lifecycle::RunState::Running => return,
    };
    runs.get_or_create(&crate::metrics::StateLabel { state })
        .inc();
    if run.request.dry_run {
        return;
    }
    let app = run.request.app.clone().unwrap_or_else(|| "*".to_owned());
    let r = &run.report;
    for (kind, n) in [
        ("orphans_adopted", r.orphans_adopted),
        ("orphans_released", r.orphans_released),
        ("ghosts_freed", r.ghosts_freed),
        ("fields_corrected", r.fields_corrected),
        ("pending_resolved", r.pending_resolved),
        ("numbers_removed", r.numbers_removed),
    ] {
        if n > 0 {
            let labels = crate::metrics::DriftLabels {
                app: app.clone(),
                kind,
            };
            drift.get_or_create(&labels).inc_by(n);
        }
    }
}

/// Numbers listed in the config join their app's pool at start-up (without asking the
/// platform: the first Bind on a number it refuses retires that number).
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
        let outcome = pool
            .add_configured_numbers(&app.name, &numbers)
            .await
            .with_context(|| format!("adding the configured numbers of app {}", app.name))?;
        let (added, updated) = (outcome.added.len(), outcome.updated.len());
        if added + updated > 0 {
            tracing::info!(app = %app.name, added, updated, "configured numbers added");
        }
    }
    Ok(())
}

/// Where the other replicas reach this one's push receiver, bound at `bound`: there, unless
/// it is bound to every interface (`0.0.0.0`, `[::]`); then at the host of `advertise_addr`
/// (`host:port`, already checked).
fn callbacks_advertised(advertise_addr: &str, bound: std::net::SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let host = advertise_addr
        .rsplit_once(':')
        .map_or(advertise_addr, |(host, _)| host);
    format!("{host}:{}", bound.port())
}

/// The client that forwards pushes to the other replicas' receivers: HTTPS, trusting
/// `[cluster.peer_tls]`'s CA and showing its certificate, when `[callbacks.tls]` is on.
fn push_forwarding_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    let peer = config.cluster.as_ref().and_then(|c| c.peer_tls.as_ref());
    if let (Some(_), Some(files)) = (&config.callbacks.tls, peer) {
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        if let Some(ca) = &files.ca_file {
            let ca =
                reqwest::Certificate::from_pem(&read(ca)?).context("cluster.peer_tls.ca_file")?;
            builder = builder.tls_certs_only([ca]);
        }
        if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
            let mut pem = read(cert)?;
            pem.extend_from_slice(&read(key)?);
            let identity =
                reqwest::Identity::from_pem(&pem).context("cluster.peer_tls.cert_file")?;
            builder = builder.identity(identity);
        }
    }
    builder.build().context("the client that forwards pushes")
}

/// The client side of TLS towards the other replicas (`[cluster.peer_tls]`): their CA and,
/// when given, this replica's certificate. Read once, at start.
fn peer_tls(
    files: &crate::config::ClusterTlsConfig,
) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &files.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::callbacks_advertised;

    #[test]
    fn the_push_receiver_is_advertised_at_a_host_the_others_can_dial() {
        let at = |addr: &str| addr.parse().unwrap();
        assert_eq!(
            callbacks_advertised("xpool-0.xpool:50051", at("0.0.0.0:8090")),
            "xpool-0.xpool:8090"
        );
        assert_eq!(
            callbacks_advertised("[fd00::1]:50051", at("[::]:8090")),
            "[fd00::1]:8090"
        );
        assert_eq!(
            callbacks_advertised("10.0.0.1:50051", at("10.0.0.2:8090")),
            "10.0.0.2:8090",
            "bound to one address: that one"
        );
    }
}
