//! The checks after a round, once the faults are lifted and the daemon serves:
//!
//! 1. every acknowledged binding is there, in a state its history allows (ACTIVE on its slot
//!    until unbound or past its deadline; RELEASED only if unbound; EXPIRED only once due; never
//!    ACTIVE again once ended);
//! 2. no party twice on one X and no slot held twice, among the bindings that hold slots
//!    (PENDING, ACTIVE, RELEASING), and the index counts what they hold;
//! 3. after a reconcile, local state equals the platform's: every ACTIVE binding is live
//!    upstream and every live upstream binding is ACTIVE here, or in doubt here (RELEASING, or a
//!    PENDING reservation of the same parties);
//! 4. no request id has two bindings: locally, and on the platform (each request id has a party
//!    A of its own).
//!
//! The rules themselves are in `rules`. A difference an expiry in progress explains is accepted
//! after a round and waited out when settling; one between two listings made a moment apart is
//! looked at again; any other fails at once.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;

use super::history::{History, Request, lock};
use super::rules::{self, Findings, Times};
use super::{APPS, now_ms};
use crate::support::{Sim, list_bindings, list_numbers, reconcile_and_wait, rpc};

/// How long a difference explained by an expiry may last.
const SETTLE: Duration = Duration::from_secs(8);
/// A reconcile queries every X of every app and writes durably (slow when builds share the
/// disk).
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a round's checks work with.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub channel: Channel,
    pub sim: &'a Sim,
    /// The platform app key of each of `APPS`.
    pub keys: &'a [String],
    pub hist: &'a Mutex<History>,
    /// Names the round (and the seed) in every failure.
    pub label: String,
    /// Whether a request may have landed on the platform after its caller gave up.
    pub late_commits: bool,
}

/// What a round's reconcile did.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub orphans_adopted: i64,
    pub pending_resolved: i64,
    pub fields_corrected: i64,
}

/// Every check of a round; panics naming `ctx.label` on a broken rule. With `settle`, waits
/// until no expiry is in progress either, so that the two sides are equal outright.
pub async fn round(ctx: &Ctx<'_>, settle: bool) -> Reconciled {
    let violations = std::mem::take(&mut lock(ctx.hist).violations);
    assert!(
        violations.is_empty(),
        "{}: under load:\n{}",
        ctx.label,
        violations.join("\n")
    );
    retry_requests(ctx).await;
    let reconciled = reconcile(ctx).await;
    let started = Instant::now();
    loop {
        let found = look(ctx).await;
        assert!(
            found.steady.is_empty(),
            "{}:\n{}",
            ctx.label,
            found.steady.join("\n")
        );
        let mut open = found.racy;
        if settle {
            open.extend(found.expiring);
        }
        if open.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "{}: still different after {SETTLE:?}:\n{}",
            ctx.label,
            open.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let violations = std::mem::take(&mut lock(ctx.hist).violations);
    assert!(
        violations.is_empty(),
        "{}: retried requests:\n{}",
        ctx.label,
        violations.join("\n")
    );
    reconciled
}

/// A client retries each request id it got no answer for; one refused for good is not retried.
async fn retry_requests(ctx: &Ctx<'_>) {
    let open: Vec<(String, Request)> = lock(ctx.hist)
        .requests
        .iter()
        .filter(|(_, r)| r.acked.is_none() && !r.refused)
        .map(|(rid, r)| (rid.clone(), r.clone()))
        .collect();
    let mut client = BindingServiceClient::new(ctx.channel.clone());
    for (rid, r) in open {
        let answer = rpc("Bind (retry)", client.bind(r.req.clone())).await;
        let mut hist = lock(ctx.hist);
        hist.counts.retries += 1;
        match answer {
            Ok(b) => hist.bind_answered(r.app, &rid, b),
            Err(s) if matches!(s.code(), Code::ResourceExhausted | Code::FailedPrecondition) => {
                hist.requests.get_mut(&rid).unwrap().refused = true;
            }
            Err(s) if s.code() == Code::Unavailable => {}
            Err(s) => hist
                .violations
                .push(format!("retry of request {rid}: {s:?}")),
        }
    }
}

/// Reconciles until no binding is left in doubt. A reservation the platform said once it does
/// not have stays PENDING until it is asked again `pending_recheck_ms` (the upstream timeout)
/// later, so a run may report that and the next one settles it; any other error fails.
async fn reconcile(ctx: &Ctx<'_>) -> Reconciled {
    let mut client = ReconcileServiceClient::new(ctx.channel.clone());
    let mut total = Reconciled::default();
    let started = Instant::now();
    loop {
        let call = reconcile_and_wait(&mut client, pb::ReconcileRequest::default());
        let report = tokio::time::timeout(RECONCILE_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| panic!("{}: Reconcile hung for {RECONCILE_TIMEOUT:?}", ctx.label));
        total.orphans_adopted += report.orphans_adopted;
        total.pending_resolved += report.pending_resolved;
        total.fields_corrected += report.fields_corrected;
        let rechecks = report
            .errors
            .iter()
            .all(|e| e.message.contains("stays pending until it is asked again"));
        assert!(
            report.errors.is_empty() || (rechecks && started.elapsed() < RECONCILE_TIMEOUT),
            "{}: Reconcile with a healthy platform and disk: {report:?}",
            ctx.label
        );
        if report.errors.is_empty() {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(super::UPSTREAM_TIMEOUT_MS)).await;
    }
}

/// One look at every app, local and upstream.
async fn look(ctx: &Ctx<'_>) -> Findings {
    let mut bindings = BindingServiceClient::new(ctx.channel.clone());
    let mut pool = PoolServiceClient::new(ctx.channel.clone());
    let mut found = Findings::default();
    for (app, spec) in APPS.iter().enumerate() {
        let before = now_ms();
        let all = list_bindings(&mut bindings, spec.name, pb::BindingState::Unspecified).await;
        let remote = ctx.sim.bindings(&ctx.keys[app]).await;
        let numbers = list_numbers(&mut pool, spec.name).await;
        let after = now_ms();
        let at = Times { before, after };
        let mut app_found = Findings::default();
        {
            let mut hist = lock(ctx.hist);
            rules::acknowledged(&mut hist, app, &all, at, ctx.late_commits, &mut app_found);
            rules::requests(&hist, app, &all, &remote, &mut app_found);
        }
        rules::held(app, &all, &numbers, &mut app_found);
        rules::in_step(app, &all, &remote, at, &mut app_found);
        by_request_id(ctx, &mut bindings, app, &all, &mut app_found).await;
        let name = spec.name;
        found
            .steady
            .extend(app_found.steady.into_iter().map(|s| format!("{name}: {s}")));
        found.expiring.extend(
            app_found
                .expiring
                .into_iter()
                .map(|s| format!("{name}: {s}")),
        );
        found
            .racy
            .extend(app_found.racy.into_iter().map(|s| format!("{name}: {s}")));
    }
    found
}

/// (4) A request id looks up the binding it was answered with (what a repeated Bind returns),
/// for every request whose binding is ACTIVE.
async fn by_request_id(
    ctx: &Ctx<'_>,
    client: &mut BindingServiceClient<Channel>,
    app: usize,
    all: &[pb::Binding],
    found: &mut Findings,
) {
    let active: BTreeSet<&str> = all
        .iter()
        .filter(|b| b.state() == pb::BindingState::Active)
        .map(|b| b.binding_id.as_str())
        .collect();
    let acked: Vec<(String, String)> = lock(ctx.hist)
        .requests
        .iter()
        .filter_map(|(rid, r)| Some((rid.clone(), r.acked.clone()?)))
        .filter(|(_, id)| active.contains(id.as_str()))
        .collect();
    for (rid, id) in acked {
        let req = pb::GetBindingRequest::by_request(APPS[app].name, rid.clone());
        match rpc("GetBinding", client.get_binding(req)).await {
            Ok(b) if b.binding_id == id => {}
            Ok(b) => found
                .steady
                .push(format!("request {rid} (answered {id}) looks up {b:?}")),
            Err(s) => found.steady.push(format!(
                "request {rid} (answered {id}) looks up nothing: {s:?}"
            )),
        }
    }
}
