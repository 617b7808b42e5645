//! `xpool.v1.BindingService`: thin handlers over the pool.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::access;
use super::convert::BindingPage;
use super::pb;
use super::pb::binding_service_server::BindingService;
use super::status::reason_of;
use crate::auth::Access;
use crate::lifecycle::{BindParams, Binding, BindingKey, BindingUpdate, Pool, PoolError, Reason};
use crate::metrics::Metrics;
use crate::store::Store;

/// The binding API.
#[derive(Debug)]
pub struct Bindings {
    pool: Arc<Pool>,
    /// Longest a Bind waits for its app's rate limiter when the caller set no deadline.
    max_wait: Duration,
    /// The daemon's tasks: shutdown waits for pool work whose caller hung up.
    tasks: TaskTracker,
    /// Where each Bind's outcome is counted.
    metrics: Arc<Metrics>,
    shedding: Shedding,
}

/// When Binds are refused for the store's sake.
#[derive(Debug)]
pub struct Shedding {
    pub store: Arc<Store>,
    /// Refuse while this many writes wait for the log (0: never).
    pub max_queued_writes: u64,
}

impl Shedding {
    /// OVERLOADED while the log's queue is full.
    fn check(&self) -> Result<(), PoolError> {
        if self.max_queued_writes == 0 {
            return Ok(());
        }
        let queued = self.store.write_backlog();
        if queued < self.max_queued_writes {
            return Ok(());
        }
        Err(PoolError::refused(
            Reason::Overloaded,
            format!(
                "{queued} writes wait for the store's disk (server.max_queued_writes {})",
                self.max_queued_writes
            ),
        ))
    }
}

impl Bindings {
    pub fn new(
        pool: Arc<Pool>,
        max_wait: Duration,
        tasks: TaskTracker,
        metrics: Arc<Metrics>,
        shedding: Shedding,
    ) -> Self {
        Bindings {
            pool,
            max_wait,
            tasks,
            metrics,
            shedding,
        }
    }

    /// Counts a Bind's outcome under its app (`unknown` for an app not configured, so a
    /// caller cannot grow the label set).
    fn count_bind(&self, app: &str, outcome: &Result<Response<pb::Binding>, Status>) {
        let app = if self.pool.app(app).is_ok() {
            app
        } else {
            "unknown"
        };
        let outcome = match outcome {
            Ok(_) => "ok",
            Err(status) => reason_of(status),
        };
        self.metrics.bind(app, outcome);
    }

    /// Runs `work` on the pool in its own task, so a caller hanging up cannot cut a two-phase
    /// change short, and answers with the binding it returns. With a caller's `deadline`, the
    /// answer comes before it: UNAVAILABLE with a retry hint if the work is still waiting for
    /// the platform then (it goes on, and a retry finds its outcome).
    async fn detached<F>(
        &self,
        deadline: Option<Duration>,
        work: impl FnOnce(Arc<Pool>) -> F,
    ) -> Result<Response<pb::Binding>, Status>
    where
        F: Future<Output = Result<Binding, PoolError>> + Send + 'static,
    {
        // The work keeps the call's span, so its log lines group with the call's.
        let task = self
            .tasks
            .spawn(work(Arc::clone(&self.pool)).instrument(tracing::Span::current()));
        let answered = match deadline {
            Some(d) => match tokio::time::timeout(answer_within(d), task).await {
                Ok(answered) => answered,
                Err(_) => return Err(still_running().into()),
            },
            None => task.await,
        };
        match answered {
            Ok(result) => Ok(Response::new(result?.into())),
            Err(e) => {
                tracing::error!(error = %e, "binding task failed");
                Err(PoolError::internal("internal error").into())
            }
        }
    }
}

impl Bindings {
    /// The Bind itself (counted by [`BindingService::bind`]).
    async fn bind_one(
        &self,
        req: Request<pb::BindRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        // Leave part of the deadline for the platform call and the durable writes after the
        // wait, so a caller beyond the rate limit hears UNAVAILABLE before its deadline.
        let caller_deadline = deadline(&req);
        let max_wait = caller_deadline
            .map(|d| d.saturating_sub((d / 4).max(Duration::from_millis(100))))
            .unwrap_or(self.max_wait);
        let caller = access::caller(&req)?;
        let params = BindParams::try_from(req.into_inner())?;
        caller.require(Access::Bind(&params.app))?;
        self.shedding.check()?;
        self.detached(caller_deadline, |pool| async move {
            pool.bind(params, max_wait).await
        })
        .await
    }

    /// The app of the binding `key` names (looked up when the key is its id).
    fn app_of(&self, key: &BindingKey) -> Result<String, PoolError> {
        match key {
            BindingKey::Request { app, .. } => Ok(app.clone()),
            BindingKey::Id(_) => Ok(self.pool.get(key)?.app),
        }
    }
}

/// How long a call with deadline `d` waits for its work: what is left once the answer's way
/// back is set aside.
fn answer_within(d: Duration) -> Duration {
    d.saturating_sub((d / 10).max(Duration::from_millis(50)))
}

/// The answer to a caller whose deadline comes before the platform's answer.
fn still_running() -> PoolError {
    PoolError::refused(
        Reason::OutcomeUnknown,
        "the platform has not answered within the call's deadline; the change goes on \
         (a Bind retried with the same request_id returns its binding, GetBinding shows its state)",
    )
}

/// The caller's deadline, from the `grpc-timeout` header (e.g. `250m`, `5S`).
pub fn deadline<T>(req: &Request<T>) -> Option<Duration> {
    let value = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl BindingService for Bindings {
    async fn bind(&self, req: Request<pb::BindRequest>) -> Result<Response<pb::Binding>, Status> {
        let app = req.get_ref().app.clone();
        let answer = self.bind_one(req).await;
        self.count_bind(&app, &answer);
        answer
    }

    async fn unbind(
        &self,
        req: Request<pb::UnbindRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let caller_deadline = deadline(&req);
        let caller = access::caller(&req)?;
        let key = BindingKey::try_from(req.into_inner())?;
        caller.require(Access::Bind(&self.app_of(&key)?))?;
        self.detached(
            caller_deadline,
            |pool| async move { pool.unbind(&key).await },
        )
        .await
    }

    async fn update_binding(
        &self,
        req: Request<pb::UpdateBindingRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let caller_deadline = deadline(&req);
        let caller = access::caller(&req)?;
        let update = BindingUpdate::try_from(req.into_inner())?;
        caller.require(Access::Bind(&self.app_of(&BindingKey::Id(update.id))?))?;
        self.detached(
            caller_deadline,
            |pool| async move { pool.update(&update).await },
        )
        .await
    }

    async fn get_binding(
        &self,
        req: Request<pb::GetBindingRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let caller = access::caller(&req)?;
        let key = BindingKey::try_from(req.into_inner())?;
        let binding = self.pool.get(&key)?;
        caller.require(Access::Read(&binding.app))?;
        Ok(Response::new(binding.into()))
    }

    async fn list_bindings(
        &self,
        req: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let caller = access::caller(&req)?;
        let BindingPage {
            filter,
            after,
            limit,
            filters,
        } = BindingPage::try_from(req.into_inner())?;
        caller.require(filter.app.as_deref().map_or(Access::ReadAll, Access::Read))?;
        let (page, next) = self.pool.list(&filter, after, limit)?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: page.into_iter().map(Into::into).collect(),
            next_page_token: next
                .map(|id| filters.token(&id.to_string()))
                .unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_with_a_deadline_is_answered_before_it() {
        let ms = Duration::from_millis;
        assert_eq!(answer_within(Duration::from_secs(15)), ms(13_500));
        assert_eq!(answer_within(ms(300)), ms(250));
        assert_eq!(answer_within(ms(20)), Duration::ZERO);
    }
}
