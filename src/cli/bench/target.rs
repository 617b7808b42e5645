//! One client connection per worker, for each target: the daemon over gRPC (or `--connections`
//! shared HTTP/2 connections; with `--cluster`, spread round robin over the replicas), the
//! simulator over signed HTTP, or Redis through the `redis` crate. Each answers Bind / Unbind /
//! Get the same way, and Health: the daemon's `Health/Check`, Redis's `PING`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};

use super::redis_peer::{self, Peer};
use super::spawn::Spawned;
use super::{BenchArgs, BenchMode, TargetKind, area_code, pool_number};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::platform::wire::{AxbBindRequest, AxbQuery, AxbUnbind};
use xpool::upstream::{AppClient, AppSettings, Secret};

/// A binding the target acknowledged.
#[derive(Debug, Clone)]
pub struct Bound {
    pub id: String,
    pub x: String,
    /// The deadline the target recorded, Unix ms (gRPC only).
    pub expires_at_ms: Option<i64>,
}

/// A failed call: its code (gRPC code name, platform result code, or a transport class) and
/// whether it told the caller when to retry.
#[derive(Debug, Clone)]
pub struct OpError {
    pub code: String,
    pub retry_hint: bool,
}

impl OpError {
    fn new(code: impl Into<String>) -> Self {
        OpError {
            code: code.into(),
            retry_hint: false,
        }
    }
}

type Res<T> = Result<T, OpError>;

/// The direct target's X choice: round-robin over each area's numbers, as the daemon's
/// least-loaded pick spreads equal loads.
#[derive(Debug)]
pub struct XRing {
    by_area: Vec<Vec<String>>,
    next: AtomicUsize,
}

impl XRing {
    fn new(numbers: usize, areas: usize) -> Self {
        let mut by_area = vec![Vec::new(); areas.max(1)];
        for i in 0..numbers {
            by_area[i % areas.max(1)].push(pool_number(i));
        }
        XRing {
            by_area,
            next: AtomicUsize::new(0),
        }
    }

    fn pick(&self, area: usize) -> Option<String> {
        let xs = self.by_area.get(area)?;
        if xs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(xs[i % xs.len()].clone())
    }
}

/// One worker's connection.
#[derive(Debug)]
pub enum Conn {
    Grpc {
        client: BindingServiceClient<Channel>,
        // Boxed: it is used only by health-only runs, and keeps the variants close in size.
        health: Box<HealthClient<Channel>>,
        app: String,
        deadline: Duration,
        request_ids: bool,
        tag: String,
        seq: u64,
        has_b: bool,
    },
    Direct {
        client: Arc<AppClient>,
        xs: Arc<XRing>,
    },
    Redis(Peer),
}

/// Opens `args.concurrency` connections. `phase` keeps their request ids apart from another
/// phase's connections (e.g. the preload's).
pub async fn connect_all(
    args: &BenchArgs,
    procs: &Spawned,
    phase: &str,
) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(args.concurrency);
    match args.target {
        TargetKind::Grpc => {
            let run = std::process::id();
            let connections = match args.connections {
                0 => args.concurrency,
                n => n.min(args.concurrency),
            };
            // With --cluster, the connections go round robin over the replicas.
            let urls = match procs.server_urls.as_slice() {
                [] => std::slice::from_ref(&procs.server_url),
                urls => urls,
            };
            let mut channels = Vec::with_capacity(connections);
            for c in 0..connections {
                let url = &urls[c % urls.len()];
                let endpoint = Endpoint::from_shared(url.clone())?
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(5));
                let channel = endpoint
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {url}"))?;
                channels.push(channel);
            }
            for i in 0..args.concurrency {
                // A tonic channel is a handle: clones share its HTTP/2 connection.
                let channel = channels[i % connections].clone();
                conns.push(Conn::Grpc {
                    client: BindingServiceClient::new(channel.clone()),
                    health: Box::new(HealthClient::new(channel)),
                    app: args.app.clone(),
                    deadline: Duration::from_millis(args.deadline_ms),
                    request_ids: !args.no_request_id,
                    tag: format!("bench-{run}-{phase}{i}"),
                    seq: 0,
                    has_b: args.mode.has_b(),
                });
            }
        }
        TargetKind::Direct => {
            let mut settings = AppSettings::new(
                args.app_key.clone(),
                Secret::new(args.app_secret.clone()),
                procs.sim_url.clone(),
            );
            let unlimited =
                std::num::NonZeroU32::new(1_000_000).unwrap_or(std::num::NonZeroU32::MIN);
            settings.rate_per_second = unlimited;
            settings.burst = unlimited;
            settings.timeout = Duration::from_millis(args.deadline_ms);
            // One client for all workers, as the daemon has one per app.
            let client = Arc::new(AppClient::new(settings, xpool::upstream::http_client()));
            let xs = Arc::new(XRing::new(args.numbers, args.areas));
            for _ in 0..args.concurrency {
                conns.push(Conn::Direct {
                    client: Arc::clone(&client),
                    xs: Arc::clone(&xs),
                });
            }
        }
        TargetKind::Redis => {
            let numbers: Vec<String> = (0..args.numbers).map(pool_number).collect();
            redis_peer::prepare(&procs.redis_addr, &numbers)
                .await
                .with_context(|| format!("preparing Redis at {}", procs.redis_addr))?;
            // Enforced by the client as for gRPC: a call unanswered by then is CLIENT_TIMEOUT.
            let timeout = Duration::from_millis(args.deadline_ms) + Duration::from_millis(250);
            for _ in 0..args.concurrency {
                let peer = Peer::connect(&procs.redis_addr, args.max_bindings_per_x, Some(timeout))
                    .await
                    .with_context(|| format!("connecting to Redis at {}", procs.redis_addr))?;
                conns.push(Conn::Redis(peer));
            }
        }
    }
    Ok(conns)
}

fn grpc_code(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn status_error(status: &tonic::Status) -> OpError {
    OpError {
        code: grpc_code(status.code()).to_owned(),
        retry_hint: status.metadata().get("retry-after-ms").is_some(),
    }
}

fn upstream_error(e: &xpool::upstream::UpstreamError) -> OpError {
    let code = match e.code() {
        Some(code) => format!("platform {code}"),
        None => format!("{:?}", e.class()),
    };
    OpError {
        code,
        retry_hint: e.retry_after().is_some(),
    }
}

/// A Redis failure by kind: the server's error (code and message, as Redis sent it), a client
/// timeout, the connection's I/O error kind, or a reply of the wrong shape.
fn redis_error(e: &redis::RedisError) -> OpError {
    use redis::ErrorKind;
    if e.is_timeout() {
        return OpError::new("CLIENT_TIMEOUT");
    }
    if let Some(code) = e.code() {
        return OpError::new(match e.detail() {
            Some(detail) => format!("redis: {code} {detail}"),
            None => format!("redis: {code}"),
        });
    }
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    OpError::new(match (e.kind(), io) {
        (_, Some(io)) => format!("io: {}", io.kind()),
        (ErrorKind::Io, None) => "io: connection lost".to_owned(),
        (ErrorKind::UnexpectedReturnType | ErrorKind::Parse, None) => {
            "redis: unexpected reply".to_owned()
        }
        (_, None) => format!("redis: {}", e.category()),
    })
}

/// A gRPC call with its deadline sent as `grpc-timeout` and enforced here too (a server that
/// hangs past the deadline shows up as CLIENT_TIMEOUT).
async fn with_deadline<T>(
    deadline: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Res<T> {
    match tokio::time::timeout(deadline + Duration::from_millis(250), call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(status_error(&status)),
        Err(_) => Err(OpError::new("CLIENT_TIMEOUT")),
    }
}

fn request<T>(msg: T, deadline: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(deadline);
    req
}

impl Conn {
    /// Binds `a` (and `b`) in area number `area`, for `ttl` seconds (0 = no expiry; the Redis
    /// allocator has none).
    pub async fn bind(&mut self, a: &str, b: &str, area: usize, ttl: u64) -> Res<Bound> {
        match self {
            Conn::Grpc {
                client,
                app,
                deadline,
                request_ids,
                tag,
                seq,
                has_b,
                ..
            } => {
                *seq += 1;
                let msg = pb::BindRequest {
                    app: app.clone(),
                    party_a: a.to_owned(),
                    party_b: if *has_b { b.to_owned() } else { String::new() },
                    area_code: area_code(area),
                    request_id: if *request_ids {
                        format!("{tag}-{seq}")
                    } else {
                        String::new()
                    },
                    ttl: xpool::grpc::ttl(ttl),
                    ..Default::default()
                };
                let binding =
                    with_deadline(*deadline, client.bind(request(msg, *deadline))).await?;
                Ok(Bound {
                    id: binding.binding_id,
                    x: binding.x_number,
                    expires_at_ms: binding.expire_time.as_ref().map(xpool::grpc::millis),
                })
            }
            Conn::Direct { client, xs } => {
                let x = xs.pick(area).ok_or_else(|| OpError::new("no number"))?;
                let req = AxbBindRequest {
                    caller_num: a.to_owned(),
                    callee_num: b.to_owned(),
                    relation_num: Some(x),
                    area_code: Some(area_code(area)),
                    duration: (ttl > 0).then_some(ttl),
                    ..Default::default()
                };
                let resp = client
                    .axb_bind(&req)
                    .await
                    .map_err(|e| upstream_error(&e))?;
                Ok(Bound {
                    id: resp.subscription_id,
                    x: resp.relation_num,
                    expires_at_ms: None,
                })
            }
            Conn::Redis(peer) => match peer.pick(a, b).await {
                Ok(Some((id, x))) => Ok(Bound {
                    id,
                    x,
                    expires_at_ms: None,
                }),
                Ok(None) => Err(OpError::new("EXHAUSTED")),
                Err(e) => Err(redis_error(&e)),
            },
        }
    }

    pub async fn unbind(&mut self, id: &str) -> Res<()> {
        match self {
            Conn::Grpc {
                client, deadline, ..
            } => {
                let msg = pb::UnbindRequest::by_id(id);
                with_deadline(*deadline, client.unbind(request(msg, *deadline))).await?;
                Ok(())
            }
            Conn::Direct { client, .. } => client
                .axb_unbind(&AxbUnbind::Subscription(id.to_owned()))
                .await
                .map_err(|e| upstream_error(&e)),
            Conn::Redis(peer) => match peer.release(id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(OpError::new("NOT_FOUND")),
                Err(e) => Err(redis_error(&e)),
            },
        }
    }

    pub async fn get(&mut self, id: &str) -> Res<()> {
        match self {
            Conn::Grpc {
                client, deadline, ..
            } => {
                let msg = pb::GetBindingRequest::by_id(id);
                with_deadline(*deadline, client.get_binding(request(msg, *deadline))).await?;
                Ok(())
            }
            Conn::Direct { client, .. } => client
                .axb_query(&AxbQuery::Subscription(id.to_owned()))
                .await
                .map(|_| ())
                .map_err(|e| upstream_error(&e)),
            Conn::Redis(peer) => match peer.exists(id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(OpError::new("NOT_FOUND")),
                Err(e) => Err(redis_error(&e)),
            },
        }
    }
}

impl Conn {
    /// One call that does nothing behind the transport: what the client and the hop cost.
    pub async fn health(&mut self) -> Res<()> {
        match self {
            Conn::Grpc {
                health, deadline, ..
            } => {
                let msg = HealthCheckRequest {
                    service: String::new(),
                };
                with_deadline(*deadline, health.check(request(msg, *deadline))).await?;
                Ok(())
            }
            Conn::Direct { .. } => Err(OpError::new("the simulator has no health call")),
            Conn::Redis(peer) => match peer.ping().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(OpError::new("redis: unexpected reply")),
                Err(e) => Err(redis_error(&e)),
            },
        }
    }
}

impl BenchMode {
    /// For the report.
    pub fn name(self) -> &'static str {
        self.as_config()
    }
}
