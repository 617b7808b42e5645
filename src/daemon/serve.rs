//! Serving gRPC and the push receiver until shutdown, and the shutdown sequence: health
//! NOT_SERVING for `server.shutdown_delay_seconds` while calls and pushes are still served, then
//! new ones refused and those in flight given `server.shutdown_grace_seconds`, then every task
//! stopped (bounded) and the store closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use super::Daemon;
use super::connections::{self, Accept, ConnectionLimits, TrackCalls};
use super::health::Health;
use crate::grpc;
use crate::grpc::DecodeErrors;
use crate::grpc::pb::binding_service_server::BindingServiceServer;
use crate::grpc::pb::call_service_server::CallServiceServer;
use crate::grpc::pb::pool_service_server::PoolServiceServer;
use crate::grpc::pb::reconcile_service_server::ReconcileServiceServer;
use crate::grpc::pb::store_service_server::StoreServiceServer;
use crate::grpc::pb::watch_service_server::WatchServiceServer;
use crate::pushes;
use crate::tls::ServerTls;

/// How often the TLS files are looked at for changes.
const TLS_RELOAD_CHECK: Duration = Duration::from_secs(10);

impl Daemon {
    /// Serves on `listener` until `shutdown` completes or the server fails, then stops every
    /// task the daemon started (at most the grace period) and closes the store — also when
    /// serving failed part-way.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.config.server.shutdown_grace_seconds);
        let push_listener = self.push_listener.take();
        let admin_listener = self.admin_listener.take();
        let served = self
            .serve(listener, push_listener, admin_listener, shutdown)
            .await;
        let stopped = self.stop(grace).await;
        if stopped.is_ok() {
            tracing::info!("stopped");
        }
        served.and(stopped)
    }

    async fn serve(
        &self,
        listener: TcpListener,
        push_listener: Option<TcpListener>,
        admin_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let server_config = &self.config.server;
        let max_message = server_config.max_message_bytes;
        let max_response = server_config.max_response_bytes;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = Health::new(reporter);
        health.set(tonic_health::ServingStatus::Serving).await;
        // Both versions of reflection, each listing both (clients try v1, older ones v1alpha).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(grpc::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
        };
        let reflection_v1 = reflection()
            .build_v1()?
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_response);
        let reflection_v1alpha = reflection()
            .build_v1alpha()?
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_response);
        let max_wait = Duration::from_millis(server_config.max_request_wait_ms);

        self.start_jobs();
        let stop_watching = self.cancel.child_token();
        let watching = self.tasks.spawn(super::store_watch::watch_store(
            Arc::clone(&self.store),
            Arc::clone(&self.metrics),
            health.clone(),
            stop_watching.clone(),
        ));
        let draining = Arc::new(AtomicBool::new(false));
        let admin_listener = match (admin_listener, self.config.admin.listen) {
            (Some(listener), _) => Some(listener),
            (None, Some(listen)) => Some(
                TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding the admin listener {listen}"))?,
            ),
            (None, None) => None,
        };
        if let Some(listener) = admin_listener {
            tracing::info!(addr = %listener.local_addr()?, "admin listener (metrics, probes)");
            let admin = super::admin::Admin {
                metrics: Arc::clone(&self.metrics),
                store: Arc::clone(&self.store),
                draining: Arc::clone(&draining),
            };
            let served = super::admin::serve(admin, listener, self.cancel.clone());
            self.tasks.spawn(async move {
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "the admin listener failed");
                }
            });
        }
        // Cancelled when new calls are refused: the push receiver stops taking pushes then too.
        let stop_serving = CancellationToken::new();
        let push_listener = self.bind_receiver(push_listener).await?;
        let addr = listener.local_addr()?;
        let callbacks = push_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        // In cluster mode the receiver forwards by the leaders table, which joining starts.
        self.join_cluster(addr, callbacks).await?;
        if let Some(push_listener) = push_listener {
            self.start_receiver(push_listener, stop_serving.clone())?;
        }
        let apps = self
            .config
            .apps
            .iter()
            .map(|app| app.name.clone())
            .collect();
        self.tasks.spawn(health.clone().follow_apps(
            apps,
            self.app_reach(),
            Arc::clone(&self.metrics),
            self.cancel.child_token(),
        ));
        let limits = ConnectionLimits::from_config(server_config)
            .within_fd_limit(connections::open_file_limit());
        let keepalive = (server_config.http2_keepalive_interval_seconds > 0)
            .then(|| Duration::from_secs(server_config.http2_keepalive_interval_seconds));
        let keepalive_timeout = Duration::from_secs(server_config.http2_keepalive_timeout_seconds);
        tracing::info!(
            max_connections = limits.max_connections,
            handshake_timeout = ?limits.handshake_timeout,
            idle_timeout = ?limits.idle_timeout,
            http2_keepalive = ?keepalive,
            max_message_bytes = max_message,
            max_response_bytes = max_response,
            max_concurrent_streams = server_config.max_concurrent_streams,
            max_header_bytes = server_config.max_header_bytes,
            max_queued_writes = server_config.max_queued_writes,
            "connection limits"
        );
        match &self.config.auth {
            Some(auth) => tracing::info!(
                tokens = auth.tokens.len(),
                open_health = auth.open_health,
                open_reflection = auth.open_reflection,
                "callers authenticated by bearer token"
            ),
            None if server_config.insecure && !addr.ip().is_loopback() => tracing::warn!(
                %addr,
                "no [auth] and server.insecure = true: anyone who reaches this address may \
                 bind, unbind and drain numbers"
            ),
            None => {}
        }
        let handshake_timeout = limits.handshake_timeout;
        let incoming = Accept::new(listener, limits, Arc::clone(&self.connections));
        // Ends the Watch streams when new calls are refused, so the drain need not wait for
        // them (they end with SHUTTING_DOWN and the client's resume token).
        let end_watches = self.cancel.child_token();
        let router = Server::builder()
            .trace_fn(request_span)
            .max_concurrent_streams(server_config.max_concurrent_streams)
            .http2_max_header_list_size(server_config.max_header_bytes)
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(Some(keepalive_timeout))
            .layer(super::measure::Measure::new(Arc::clone(&self.metrics)))
            .layer(TrackCalls)
            .layer(DecodeErrors)
            .layer(self.authenticate())
            .layer(self.forwarding()?)
            .add_service(
                health_service
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(max_response),
            )
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                BindingServiceServer::new(grpc::binding::Bindings::new(
                    Arc::clone(&self.pool),
                    max_wait,
                    self.tasks.clone(),
                    Arc::clone(&self.metrics),
                    grpc::binding::Shedding {
                        store: Arc::clone(&self.store),
                        max_queued_writes: server_config.max_queued_writes,
                    },
                ))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_response),
            )
            .add_service(
                PoolServiceServer::new(grpc::pool::Numbers::new(Arc::clone(&self.pool)))
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(max_response),
            )
            .add_service(
                ReconcileServiceServer::new(grpc::reconcile::Reconcile::new(
                    Arc::clone(&self.reconciler),
                    self.tasks.clone(),
                ))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_response),
            )
            .add_service(
                StoreServiceServer::new(grpc::store::StoreAdmin::new(Arc::clone(&self.store)))
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(max_response),
            )
            .add_service(
                CallServiceServer::new(grpc::calls::Calls::new(
                    Arc::clone(&self.calls),
                    Arc::clone(&self.pool),
                ))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_response),
            )
            .add_service(
                WatchServiceServer::new(grpc::watch::Changes::new(
                    Arc::clone(&self.calls),
                    Arc::clone(&self.pool),
                    end_watches.clone(),
                    self.tasks.clone(),
                ))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_response),
            );
        let stop = stop_serving.clone().cancelled_owned();
        let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
            match self.server_tls()? {
                Some(tls) => {
                    self.spawn_tls_reloads(Arc::clone(&tls));
                    let incoming = connections::tls_incoming(
                        incoming,
                        tls,
                        handshake_timeout,
                        Arc::clone(&self.connections),
                    );
                    Box::pin(router.serve_with_incoming_shutdown(incoming, stop))
                }
                None => Box::pin(router.serve_with_incoming_shutdown(incoming, stop)),
            };
        tracing::info!(%addr, "gRPC server listening");
        let mut server = self.tasks.spawn(server);

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                result??;
                anyhow::bail!("the gRPC server stopped unexpectedly");
            }
        }
        let delay = Duration::from_secs(self.config.server.shutdown_delay_seconds);
        tracing::info!(
            ?delay,
            "shutting down: health NOT_SERVING, still serving calls"
        );
        draining.store(true, Ordering::Relaxed);
        // The store's watch sets SERVING when the store recovers: it stops first.
        stop_watching.cancel();
        if watching.await.is_err() {
            tracing::warn!("the store's watch panicked");
        }
        health.set(tonic_health::ServingStatus::NotServing).await;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            result = &mut server => {
                result??;
                anyhow::bail!("the gRPC server stopped unexpectedly");
            }
        }
        tracing::info!("refusing new calls, draining in-flight requests");
        stop_serving.cancel();
        end_watches.cancel();
        self.stop_reconciling.cancel();
        let grace = Duration::from_secs(self.config.server.shutdown_grace_seconds);
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
        Ok(())
    }

    /// `[server.tls]`, loaded; `None` without it.
    fn server_tls(&self) -> anyhow::Result<Option<Arc<ServerTls>>> {
        let Some(files) = &self.config.server.tls else {
            return Ok(None);
        };
        let tls = ServerTls::load(files).map_err(|e| anyhow::anyhow!("server.tls: {e}"))?;
        tracing::info!(
            cert_file = %files.cert_file.display(),
            mutual = tls.is_mutual(),
            "gRPC over TLS"
        );
        Ok(Some(Arc::new(tls)))
    }

    /// Re-reads the TLS files on SIGHUP and when they change (looked at every
    /// [`TLS_RELOAD_CHECK`]); new handshakes use them, open connections keep theirs.
    fn spawn_tls_reloads(&self, tls: Arc<ServerTls>) {
        let stop = self.cancel.clone();
        self.tasks.spawn(async move {
            #[cfg(unix)]
            let mut hup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(hup) => Some(hup),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch SIGHUP; TLS files are still re-read when they change");
                        None
                    }
                };
            let mut every = tokio::time::interval(TLS_RELOAD_CHECK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match &mut hup {
                        Some(hup) => hup.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                let outcome = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = hangup => Some(tls.reload()),
                    _ = every.tick() => tls.reload_if_changed(),
                };
                match outcome {
                    Some(Ok(())) => tracing::info!("TLS certificate and key re-read"),
                    Some(Err(e)) => tracing::error!(
                        error = %e,
                        "re-reading the TLS files failed; the certificate in use stays"
                    ),
                    None => {}
                }
            }
        });
    }

    /// The push receiver's listener: `listener`, or `[callbacks] listen` bound; neither: the
    /// receiver is off.
    async fn bind_receiver(
        &self,
        listener: Option<TcpListener>,
    ) -> anyhow::Result<Option<TcpListener>> {
        Ok(match (listener, self.config.callbacks.listen) {
            (Some(listener), _) => Some(listener),
            (None, Some(listen)) => Some(TcpListener::bind(listen).await.with_context(|| {
                format!("binding the push receiver {listen} (callbacks.listen)")
            })?),
            (None, None) => None,
        })
    }

    /// Starts the push receiver on `listener`. It takes pushes until `stop`, then finishes
    /// those in flight (on the daemon's tracker, so the store is closed only after them). In
    /// cluster mode, after joining: pushes about apps another replica leads go there.
    fn start_receiver(&self, listener: TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            addr = %listener.local_addr()?,
            allow_from = ?self.config.callbacks.allow_from,
            https = self.config.callbacks.tls.is_some(),
            "push receiver listening (platform callbacks)"
        );
        let mut receiver = pushes::Receiver::new(
            &self.config,
            Arc::clone(&self.pool),
            Arc::clone(&self.calls),
            Arc::clone(&self.metrics),
            self.tasks.clone(),
        );
        if let (Some(router), Some(cluster)) = (self.cluster_router(), &self.config.cluster) {
            receiver = receiver.forwarding(pushes::Forwarding {
                router: Arc::new(router),
                node_id: cluster.node_id.clone(),
                http: super::push_forwarding_client(&self.config)?,
            });
        }
        let receiver = Arc::new(receiver);
        let tls = match &self.config.callbacks.tls {
            Some(files) => {
                let tls = ServerTls::load_http(files)
                    .map_err(|e| anyhow::anyhow!("callbacks.tls: {e}"))?;
                let tls = Arc::new(tls);
                self.spawn_tls_reloads(Arc::clone(&tls));
                let handshake = Duration::from_secs(self.config.server.handshake_timeout_seconds);
                Some((tls, handshake))
            }
            None => None,
        };
        let served = pushes::serve(receiver, listener, tls, stop);
        self.tasks.spawn(async move {
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the push receiver failed");
            }
        });
        Ok(())
    }
}

/// The span of one gRPC call: its method, and the caller's `x-request-id` when it sends one,
/// so that every log line of a call can be grouped (`[log] format = "json"` writes them as the
/// line's `span`).
fn request_span(req: &http::Request<()>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|id| &id[..id.len().min(128)]);
    match request_id {
        Some(id) => tracing::info_span!("grpc", method = req.uri().path(), request_id = id),
        None => tracing::info_span!("grpc", method = req.uri().path()),
    }
}
