//! `xpool.v1.BindingService`: thin handlers over the pool.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::convert::{self, binding_key, state_filter};
use super::pb;
use super::pb::binding_service_server::BindingService;
use crate::lifecycle::{BindParams, ListFilter, Pool, PoolError};

/// The binding API.
#[derive(Debug)]
pub struct Bindings {
    pool: Arc<Pool>,
    /// Longest a Bind waits for its app's rate limiter when the caller set no deadline.
    max_wait: Duration,
    /// The daemon's tasks: shutdown waits for pool work whose caller hung up.
    tasks: TaskTracker,
}

impl Bindings {
    pub fn new(pool: Arc<Pool>, max_wait: Duration, tasks: TaskTracker) -> Self {
        Bindings {
            pool,
            max_wait,
            tasks,
        }
    }
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

/// Runs pool work on its own task, so a caller hanging up cannot cut a two-phase change short.
async fn detached<T: Send + 'static>(
    tasks: &TaskTracker,
    work: impl std::future::Future<Output = Result<T, PoolError>> + Send + 'static,
) -> Result<T, Status> {
    match tasks.spawn(work).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => {
            tracing::error!(error = %e, "binding task failed");
            Err(Status::internal("internal error"))
        }
    }
}

#[tonic::async_trait]
impl BindingService for Bindings {
    async fn bind(&self, req: Request<pb::BindRequest>) -> Result<Response<pb::Binding>, Status> {
        // Leave part of the deadline for the platform call and the durable writes after the
        // wait, so a caller beyond the rate limit hears UNAVAILABLE before its deadline.
        let max_wait = deadline(&req)
            .map(|d| d.saturating_sub((d / 4).max(Duration::from_millis(100))))
            .unwrap_or(self.max_wait);
        let params = BindParams::try_from(req.into_inner())?;
        let pool = Arc::clone(&self.pool);
        let binding = detached(
            &self.tasks,
            async move { pool.bind(params, max_wait).await },
        )
        .await?;
        Ok(Response::new(binding.into()))
    }

    async fn unbind(
        &self,
        req: Request<pb::UnbindRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let pb::UnbindRequest {
            binding_id,
            request_id,
            app,
        } = req.into_inner();
        let key = binding_key(&binding_id, request_id, app)?;
        let pool = Arc::clone(&self.pool);
        let binding = detached(&self.tasks, async move { pool.unbind(&key).await }).await?;
        Ok(Response::new(binding.into()))
    }

    async fn update_binding(
        &self,
        req: Request<pb::UpdateBindingRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let pb::UpdateBindingRequest {
            binding_id,
            ttl_seconds,
        } = req.into_inner();
        let id = convert::binding_id("binding_id", &binding_id)?;
        let pool = Arc::clone(&self.pool);
        let binding = detached(&self.tasks, async move {
            pool.update_ttl(id, ttl_seconds).await
        })
        .await?;
        Ok(Response::new(binding.into()))
    }

    async fn get_binding(
        &self,
        req: Request<pb::GetBindingRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let pb::GetBindingRequest {
            binding_id,
            request_id,
            app,
        } = req.into_inner();
        let key = binding_key(&binding_id, request_id, app)?;
        Ok(Response::new(self.pool.get(&key)?.into()))
    }

    async fn list_bindings(
        &self,
        req: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let pb::ListBindingsRequest {
            app,
            party,
            x_number,
            state,
            page_size,
            page_token,
        } = req.into_inner();
        let filter = ListFilter {
            app: (!app.is_empty()).then_some(app),
            party: (!party.is_empty()).then_some(party),
            x_number: (!x_number.is_empty()).then_some(x_number),
            state: state_filter(state)?,
        };
        let after = match page_token.as_str() {
            "" => None,
            token => Some(convert::binding_id("page_token", token).map_err(|_| {
                Status::invalid_argument("page_token: not a token from ListBindings")
            })?),
        };
        let limit = convert::page_size(page_size)?;
        let (page, next) = self.pool.list(&filter, after, limit)?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: page.into_iter().map(Into::into).collect(),
            next_page_token: next.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }
}
