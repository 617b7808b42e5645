//! `xpool.v1.ReconcileService`: on-demand reconciliation and its status.

use std::sync::Arc;

use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::reconcile_service_server::ReconcileService;
use crate::lifecycle::{PoolError, Reconciler, Scoped};

#[derive(Debug)]
pub struct Reconcile {
    reconciler: Arc<Reconciler>,
    /// The daemon's tasks: shutdown waits for (and cancels) a run whose caller hung up.
    tasks: TaskTracker,
}

impl Reconcile {
    pub fn new(reconciler: Arc<Reconciler>, tasks: TaskTracker) -> Self {
        Reconcile { reconciler, tasks }
    }
}

#[tonic::async_trait]
impl ReconcileService for Reconcile {
    async fn reconcile(
        &self,
        req: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileReport>, Status> {
        let pb::ReconcileRequest {
            app,
            numbers,
            dry_run,
        } = req.into_inner();
        let app = (!app.is_empty()).then_some(app);
        let reconciler = Arc::clone(&self.reconciler);
        let scope = app.clone().unwrap_or_default();
        // Its own task: a caller hanging up does not cut a run short.
        let result = self
            .tasks
            .spawn(async move { reconciler.run_once(app, numbers, dry_run).await })
            .await
            .map_err(|_| PoolError::internal("reconciliation task failed"))?;
        let report = Scoped {
            app: scope,
            report: result?,
        };
        Ok(Response::new(report.into()))
    }

    async fn get_reconcile_status(
        &self,
        _req: Request<pb::GetReconcileStatusRequest>,
    ) -> Result<Response<pb::ReconcileStatus>, Status> {
        let (running, last) = self.reconciler.status();
        Ok(Response::new(pb::ReconcileStatus {
            running: running.map(Into::into),
            last: last.map(Into::into),
        }))
    }
}
