//! `xpool.v1.ReconcileService`: reconciliation runs — start one, look one up, list them, watch
//! one to its end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::access;
use super::convert::{required, timestamp};
use super::page::{self, Filters};
use super::pb;
use super::pb::reconcile_service_server::ReconcileService;
use crate::auth::Access;
use crate::lifecycle::{
    PoolError, RUNS_KEPT, Reason, ReconcileRun, Reconciler, RunError, RunId, RunRequest, RunState,
    quoted,
};
use crate::platform::number;

/// A Watch stream sends new counts of a running run at most this often (state changes at once).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// ListReconcileRuns pages: the default (every finished run kept) and the most.
const DEFAULT_PAGE: usize = RUNS_KEPT;
const MAX_PAGE: usize = 100;

#[derive(Debug)]
pub struct Reconcile {
    reconciler: Arc<Reconciler>,
    /// The daemon's tasks: one per Watch stream, which ends with its run's final state (at the
    /// latest when shutdown cancels the run) or when its caller hangs up.
    tasks: TaskTracker,
}

impl Reconcile {
    pub fn new(reconciler: Arc<Reconciler>, tasks: TaskTracker) -> Self {
        Reconcile { reconciler, tasks }
    }
}

type RunStream = ReceiverStream<Result<pb::ReconcileRun, Status>>;

#[tonic::async_trait]
impl ReconcileService for Reconcile {
    async fn reconcile(
        &self,
        req: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileRun>, Status> {
        access::require(&req, Access::Admin)?;
        let request = RunRequest::try_from(req.into_inner())?;
        let run = self.reconciler.submit(request)?;
        Ok(Response::new(run.into()))
    }

    async fn get_reconcile_run(
        &self,
        req: Request<pb::GetReconcileRunRequest>,
    ) -> Result<Response<pb::ReconcileRun>, Status> {
        access::require(&req, Access::Admin)?;
        let pb::GetReconcileRunRequest { run_id } = req.into_inner();
        let id = run_id_of(&run_id)?;
        let run = self.reconciler.get(id).ok_or_else(|| not_found(&run_id))?;
        Ok(Response::new(run.into()))
    }

    async fn list_reconcile_runs(
        &self,
        req: Request<pb::ListReconcileRunsRequest>,
    ) -> Result<Response<pb::ListReconcileRunsResponse>, Status> {
        access::require(&req, Access::Admin)?;
        let pb::ListReconcileRunsRequest {
            page_size,
            page_token,
        } = req.into_inner();
        let limit = match page_size {
            0 => DEFAULT_PAGE,
            n => page::page_size(n)?.min(MAX_PAGE),
        };
        let filters = Filters::new("ListReconcileRuns", &[]);
        let before =
            match filters.position(&page_token)? {
                None => None,
                Some(position) => Some(position.parse::<u64>().map_err(|_| {
                    PoolError::invalid("page_token", "not a page token of this call")
                })?),
            };
        let (runs, next) = self.reconciler.list(before, limit);
        Ok(Response::new(pb::ListReconcileRunsResponse {
            runs: runs.into_iter().map(Into::into).collect(),
            next_page_token: next
                .map(|n| filters.token(&n.to_string()))
                .unwrap_or_default(),
        }))
    }

    type WatchReconcileRunStream = RunStream;

    async fn watch_reconcile_run(
        &self,
        req: Request<pb::WatchReconcileRunRequest>,
    ) -> Result<Response<RunStream>, Status> {
        access::require(&req, Access::Admin)?;
        let pb::WatchReconcileRunRequest { run_id } = req.into_inner();
        let id = run_id_of(&run_id)?;
        let run = self
            .reconciler
            .watch(id)
            .ok_or_else(|| not_found(&run_id))?;
        let (tx, rx) = mpsc::channel(1);
        self.tasks.spawn(follow(run, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends `run` to `tx` now and as it changes — a new state at once, new counts at most once per
/// [`PROGRESS_EVERY`] — until its final state is sent or the caller hangs up.
async fn follow(
    mut run: watch::Receiver<ReconcileRun>,
    tx: mpsc::Sender<Result<pb::ReconcileRun, Status>>,
) {
    loop {
        let now = run.borrow_and_update().clone();
        let state = now.state;
        if tx.send(Ok(now.into())).await.is_err() || state.is_final() {
            return;
        }
        let sent = Instant::now();
        tokio::select! {
            () = tx.closed() => return,
            changed = run.changed() => if changed.is_err() { return },
        }
        if run.borrow().state == state {
            // Only counts moved: wait out the interval, unless the state changes meanwhile.
            let state_changed = async { run.wait_for(|r| r.state != state).await.is_ok() };
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep_until(sent + PROGRESS_EVERY) => {}
                ok = state_changed => if !ok { return },
            }
        }
    }
}

fn run_id_of(value: &str) -> Result<RunId, PoolError> {
    required("run_id", value)?;
    RunId::parse(value)
        .ok_or_else(|| PoolError::invalid("run_id", format!("{} is not a run id", quoted(value))))
}

fn not_found(run_id: &str) -> Status {
    PoolError::refused(
        Reason::RunNotFound,
        format!(
            "no reconciliation run {} (the daemon keeps the last {RUNS_KEPT} it ran since it \
             started; in cluster mode a run stays on the replica that ran it, and is gone when \
             that replica stops or the app's leadership moves: start another)",
            quoted(run_id)
        ),
    )
    .with("run_id", run_id)
    .into()
}

impl TryFrom<pb::ReconcileRequest> for RunRequest {
    type Error = PoolError;

    fn try_from(r: pb::ReconcileRequest) -> Result<Self, PoolError> {
        let pb::ReconcileRequest {
            app,
            numbers,
            dry_run,
        } = r;
        if let Some(x) = numbers.iter().find(|x| !number::is_global(x)) {
            return Err(PoolError::invalid(
                "numbers",
                format!("{} is not an E.164 number", quoted(x)),
            ));
        }
        Ok(RunRequest {
            app: (!app.is_empty()).then_some(app),
            numbers,
            dry_run,
        })
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn state(s: RunState) -> pb::ReconcileRunState {
    match s {
        RunState::Queued => pb::ReconcileRunState::Queued,
        RunState::Running => pb::ReconcileRunState::Running,
        RunState::Succeeded => pb::ReconcileRunState::Succeeded,
        RunState::Failed => pb::ReconcileRunState::Failed,
        RunState::Cancelled => pb::ReconcileRunState::Cancelled,
    }
}

impl From<ReconcileRun> for pb::ReconcileRun {
    fn from(run: ReconcileRun) -> pb::ReconcileRun {
        let ReconcileRun {
            id,
            request,
            state: run_state,
            report: r,
            create_time_ms,
            start_time_ms,
            end_time_ms,
        } = run;
        pb::ReconcileRun {
            run_id: id.to_string(),
            app: request.app.unwrap_or_default(),
            numbers: request.numbers,
            dry_run: request.dry_run,
            state: state(run_state).into(),
            xs_total: count(r.xs_total),
            xs_checked: count(r.xs_checked),
            orphans_adopted: count(r.orphans_adopted),
            orphans_released: count(r.orphans_released),
            ghosts_freed: count(r.ghosts_freed),
            fields_corrected: count(r.fields_corrected),
            pending_resolved: count(r.pending_resolved),
            numbers_removed: count(r.numbers_removed),
            errors: r.errors.into_iter().map(Into::into).collect(),
            error_count: count(r.error_count),
            create_time: Some(timestamp(create_time_ms)),
            start_time: start_time_ms.map(timestamp),
            end_time: end_time_ms.map(timestamp),
        }
    }
}

impl From<RunError> for pb::ReconcileError {
    fn from(e: RunError) -> pb::ReconcileError {
        let RunError {
            app,
            number,
            binding_id,
            platform_code,
            message,
        } = e;
        pb::ReconcileError {
            app,
            number: number.unwrap_or_default(),
            binding_id: binding_id.map(|id| id.to_string()).unwrap_or_default(),
            platform_code: platform_code.unwrap_or_default(),
            message,
        }
    }
}
