//! Reconciliation against drift made behind the daemon's back (the simulator's own platform API,
//! its clock and its number controls): a run counts each kind of difference exactly, one run
//! makes local state equal the platform's, a second run finds nothing, a binding created while
//! its X is reconciled survives, and the `xpool reconcile` command's output and exit codes.
//! Runs as such (queueing, watching, errors, shutdown and resume) are `reconcile_runs`' subject.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::platform::wire::*;
use serde_json::json;
use tonic::Code;
use xpool::grpc::pb;
use xpool::grpc::pb::ReconcileRunState as State;

use crate::support::*;

/// The daemon's default grace (60 s) plus a second.
const PAST_GRACE_MS: i64 = 61_000;

const AXB_X: [&str; 4] = [
    "+8617000000001",
    "+8617000000002",
    "+8617000000003",
    "+8617000000004",
];

/// Reconciles `app` (all: empty) to the end; the run.
async fn reconcile(d: &Daemon, app: &str, dry_run: bool) -> pb::ReconcileRun {
    d.reconcile_and_wait(pb::ReconcileRequest {
        app: app.into(),
        numbers: Vec::new(),
        dry_run,
    })
    .await
}

/// The counts of a finished run (no id, request, state, errors or times), for exact
/// comparison; it checked every number it was to check.
#[track_caller]
fn counts(r: &pb::ReconcileRun) -> pb::ReconcileRun {
    assert_eq!(r.xs_total, r.xs_checked, "every number checked: {r:?}");
    pb::ReconcileRun {
        xs_checked: r.xs_checked,
        orphans_adopted: r.orphans_adopted,
        orphans_released: r.orphans_released,
        ghosts_freed: r.ghosts_freed,
        fields_corrected: r.fields_corrected,
        pending_resolved: r.pending_resolved,
        numbers_removed: r.numbers_removed,
        ..Default::default()
    }
}

/// A run's counts: `xs_checked` and the named findings; the rest zero.
macro_rules! counts {
    ($xs:expr $(, $field:ident = $n:expr)* $(,)?) => {
        pb::ReconcileRun { xs_checked: $xs, $($field: $n,)* ..Default::default() }
    };
}

/// A run that succeeded: no errors.
#[track_caller]
fn assert_succeeded(r: &pb::ReconcileRun) {
    assert!(
        r.errors.is_empty() && r.error_count == 0,
        "errors: {:?}",
        r.errors
    );
    assert_eq!(r.state(), State::Succeeded, "{r:?}");
}

/// A clean run that found and changed nothing.
#[track_caller]
fn assert_clean(r: &pb::ReconcileRun, xs: i64) {
    assert_succeeded(r);
    assert_eq!(counts(r), counts!(xs), "a second run finds no difference");
}

/// How a repairing test ends: another run over `app` (all: empty) finds and changes nothing
/// on `xs` numbers; then a clean stop.
async fn stop_settled(d: Daemon, app: &str, xs: i64) {
    assert_clean(&reconcile(&d, app, false).await, xs);
    d.stop().await;
}

/// The run succeeded with exactly these counts.
#[track_caller]
fn assert_report(r: &pb::ReconcileRun, want: &pb::ReconcileRun) {
    assert_succeeded(r);
    assert_eq!(&counts(r), want);
}

async fn assert_state(d: &Daemon, b: &pb::Binding, want: pb::BindingState) {
    assert_eq!(d.get(&b.binding_id).await.state(), want, "{b:?}");
}

async fn assert_not_active(d: &Daemon, b: &pb::Binding) {
    assert_ne!(
        d.get(&b.binding_id).await.state(),
        pb::BindingState::Active,
        "{b:?}"
    );
}

/// An AXB binding of A and B on X made on the platform behind the daemon's back.
async fn orphan_axb(d: &Daemon, a: u32, b: u32, x: &str) {
    d.sim
        .client("k-axb")
        .axb_bind(&AxbBindRequest {
            caller_num: party(a),
            callee_num: party(b),
            relation_num: Some(x.into()),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Binds A and B on X of the AXB app.
async fn bind_axb(d: &Daemon, a: u32, b: u32, x: &str) -> pb::Binding {
    d.bind_ok(pinned("rides", &party(a), Some(&party(b)), x))
        .await
}

/// Unbinds an AXB binding on the platform behind the daemon's back.
async fn unbind_axb_behind(d: &Daemon, b: &pb::Binding) {
    d.sim
        .client("k-axb")
        .axb_unbind(&AxbUnbind::Subscription(b.subscription_id.clone()))
        .await
        .unwrap();
}

/// An AXB binding of A and B on X that the platform then drops behind the daemon's back.
async fn ghost_axb(d: &Daemon, a: u32, b: u32, x: &str) -> pb::Binding {
    let ghost = bind_axb(d, a, b, x).await;
    unbind_axb_behind(d, &ghost).await;
    ghost
}

/// Gives an AXB binding callee B on the platform behind the daemon's back.
async fn modify_axb_behind(d: &Daemon, binding: &pb::Binding, b: u32) {
    d.sim
        .client("k-axb")
        .axb_modify(&AxbModifyRequest {
            subscription_id: binding.subscription_id.clone(),
            callee_num: Some(party(b)),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// An AXE binding of A on X with extension `ext`, made behind the daemon's back.
async fn orphan_axe(d: &Daemon, a: u32, x: &str, ext: &str) {
    d.sim
        .client("k-axe")
        .axe_bind(&AxeBindRequest {
            bind_num: party(a),
            virtual_num: Some(x.into()),
            extend_num: Some(ext.into()),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// An AXYB AX relation of A in `area` made on the platform behind the daemon's back.
async fn orphan_axyb_ax(d: &Daemon, a: u32, area: &str) -> AxybBindResponse {
    d.sim
        .client("k-axyb")
        .axyb_bind_ax(&AxybAxRequest {
            orig_num: party(a),
            area_code: Some(area.into()),
            area_match_mode: Some(AreaMatch::Strict),
            duration: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// A YB relation of B under the AX relation `ax`, behind the daemon's back.
async fn orphan_axyb_yb(d: &Daemon, ax: &AxybBindResponse, b: u32) {
    d.sim
        .client("k-axyb")
        .axyb_bind_yb(&AxybYbRequest {
            orig_num: party(b),
            subscription_id: ax.subscription_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Lets the 600 s deadlines pass on both sides (and ghosts age past the grace), reconciles
/// `app`, and checks that the report counts `want`, local state equals the platform's, `keep`
/// is ACTIVE, each of `gone` is not, and a second run is clean.
async fn expire_and_repair(
    d: &Daemon,
    (app, key): (&str, &str),
    want: pb::ReconcileRun,
    keep: &pb::Binding,
    gone: [&pb::Binding; 2],
) -> pb::ReconcileRun {
    d.sim.advance_clock(600).await;
    d.clock.advance(PAST_GRACE_MS);
    let r = reconcile(d, app, false).await;
    assert_report(&r, &want);
    assert_local_equals_sim(d, app, key).await;
    assert_state(d, keep, pb::BindingState::Active).await;
    for b in gone {
        assert_not_active(d, b).await;
    }
    assert_clean(&reconcile(d, app, false).await, want.xs_checked);
    r
}

/// A Bind that must fail without the daemon asking the platform (the slot is held locally).
async fn assert_refused_locally(d: &Daemon, app_key: &str, req: pb::BindRequest) -> tonic::Status {
    let before = d.sim.requests(app_key).await;
    let err = d
        .bindings()
        .await
        .bind(req.clone())
        .await
        .expect_err("the slot is held: the Bind must fail");
    assert_eq!(
        d.sim.requests(app_key).await,
        before,
        "the daemon asked the platform for a slot it holds: {req:?} → {err:?}"
    );
    err
}

async fn sim_subscriptions(d: &Daemon, app_key: &str) -> BTreeSet<String> {
    d.sim
        .bindings(app_key)
        .await
        .iter()
        .map(|b| b["subscriptionId"].as_str().unwrap().to_owned())
        .collect()
}

/// Every ACTIVE local binding's (id, subscription, x, a, b).
async fn local_active(d: &Daemon, app: &str) -> BTreeSet<(String, String, String, String, String)> {
    d.list(app, pb::BindingState::Active)
        .await
        .into_iter()
        .map(|b| {
            (
                b.binding_id,
                b.subscription_id,
                b.x_number,
                b.party_a,
                b.party_b,
            )
        })
        .collect()
}

// ----------------------------------------------------------------------------------------------
// Drift per mode

#[tokio::test]
async fn axb_drift_is_counted_and_repaired() {
    let d = Daemon::start().await;
    // Known to both sides.
    let keep = bind_axb(&d, 1, 2, AXB_X[0]).await;
    let ghost = bind_axb(&d, 3, 4, AXB_X[1]).await;
    let modified = bind_axb(&d, 5, 6, AXB_X[0]).await;
    let mut expiring = pinned("rides", &party(7), Some(&party(8)), AXB_X[2]);
    expiring.ttl = xpool::grpc::ttl(600);
    let expiring = d.bind_ok(expiring).await;
    assert_local_equals_sim(&d, "rides", "k-axb").await;

    // Behind the daemon's back: two orphans, one unbind, one modify, one expiry.
    for (a, b, x) in [(11, 12, AXB_X[0]), (13, 14, AXB_X[3])] {
        orphan_axb(&d, a, b, x).await;
    }
    unbind_axb_behind(&d, &ghost).await;
    modify_axb_behind(&d, &modified, 15).await;
    let r = expire_and_repair(
        &d,
        ("rides", "k-axb"),
        counts!(
            4,
            orphans_adopted = 2,
            ghosts_freed = 2,
            fields_corrected = 1
        ),
        &keep,
        [&ghost, &expiring],
    )
    .await;
    assert!(!r.dry_run);
    assert_eq!(r.app, "rides");
    assert_state(&d, &ghost, pb::BindingState::Released).await;
    let fixed = d.get(&modified.binding_id).await;
    assert_eq!(fixed.state(), pb::BindingState::Active);
    assert_eq!(fixed.party_b, party(15), "the platform's callee wins");

    // The adopted bindings hold their slots: their parties cannot be put on their Xs again.
    assert_refused_locally(
        &d,
        "k-axb",
        pinned("rides", &party(11), Some(&party(20)), AXB_X[0]),
    )
    .await;
    assert_refused_locally(
        &d,
        "k-axb",
        pinned("rides", &party(21), Some(&party(14)), AXB_X[3]),
    )
    .await;
    // The corrected binding holds its new callee's slot, and no longer the old one's.
    assert_refused_locally(
        &d,
        "k-axb",
        pinned("rides", &party(15), Some(&party(22)), AXB_X[0]),
    )
    .await;
    bind_axb(&d, 6, 23, AXB_X[0]).await;
    // The ghost's slot is free again.
    bind_axb(&d, 3, 4, AXB_X[1]).await;
    stop_in_step(d, "rides", "k-axb").await;
}

#[tokio::test]
async fn ax_drift_is_counted_and_repaired() {
    let d = Daemon::start().await;
    let sim = d.sim.client("k-ax");
    let ghost = d.bind_ok(in_area("drivers", &party(1), None, "010")).await;
    let keep = d.bind_ok(in_area("drivers", &party(2), None, "010")).await;
    assert_ne!(ghost.x_number, keep.x_number);
    // 021's only X is taken behind the daemon's back; one of the 010 bindings is unbound.
    sim.ax_bind(&AxBindRequest {
        orig_num: party(3),
        private_num: Some("+8617100000003".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    sim.ax_unbind(&AxSelector::Subscription(ghost.subscription_id.clone()))
        .await
        .unwrap();
    d.clock.advance(PAST_GRACE_MS);

    let r = reconcile(&d, "drivers", false).await;
    assert_report(&r, &counts!(3, orphans_adopted = 1, ghosts_freed = 1));
    assert_local_equals_sim(&d, "drivers", "k-ax").await;
    assert_not_active(&d, &ghost).await;
    assert_state(&d, &keep, pb::BindingState::Active).await;
    assert_clean(&reconcile(&d, "drivers", false).await, 3);

    // The adopted X is held: nothing is free in 021.
    let err = assert_refused_locally(&d, "k-ax", in_area("drivers", &party(4), None, "021")).await;
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_refused_locally(
        &d,
        "k-ax",
        pinned("drivers", &party(4), None, "+8617100000003"),
    )
    .await;
    d.stop().await;
}

#[tokio::test]
async fn axe_drift_is_counted_and_repaired() {
    let d = Daemon::start().await;
    let sim = d.sim.client("k-axe");
    let x1 = "+8617200000001";
    let x2 = "+8617200000002";
    let ghost = d.bind_ok(pinned("stores", &party(1), None, x1)).await;
    let keep = d.bind_ok(pinned("stores", &party(2), None, x1)).await;
    let mut expiring = pinned("stores", &party(3), None, x2);
    expiring.ttl = xpool::grpc::ttl(600);
    let expiring = d.bind_ok(expiring).await;
    assert_local_equals_sim(&d, "stores", "k-axe").await;

    orphan_axe(&d, 4, x2, "42").await;
    sim.axe_unbind(&AxeSelector::Subscription(ghost.subscription_id.clone()))
        .await
        .unwrap();
    expire_and_repair(
        &d,
        ("stores", "k-axe"),
        counts!(2, orphans_adopted = 1, ghosts_freed = 2),
        &keep,
        [&ghost, &expiring],
    )
    .await;
    let adopted: Vec<_> = d
        .list("stores", pb::BindingState::Active)
        .await
        .into_iter()
        .filter(|b| b.party_a == party(4))
        .collect();
    assert_eq!(adopted.len(), 1);
    assert_eq!(
        (adopted[0].x_number.as_str(), adopted[0].extension.as_str()),
        (x2, "42")
    );

    // The adopted extension is held.
    let mut req = pinned("stores", &party(5), None, x2);
    req.extension = "42".into();
    assert_refused_locally(&d, "k-axe", req).await;
    d.stop().await;
}

#[tokio::test]
async fn axyb_drift_is_counted_and_repaired() {
    let d = Daemon::start().await;
    let sim = d.sim.client("k-axyb");
    let keep = d
        .bind_ok(in_area("chat", &party(1), Some(&party(2)), "010"))
        .await;
    let ghost = d
        .bind_ok(in_area("chat", &party(3), Some(&party(4)), "021"))
        .await;
    let mut expiring = in_area("chat", &party(5), Some(&party(6)), "010");
    expiring.ttl = xpool::grpc::ttl(600);
    let expiring = d.bind_ok(expiring).await;
    assert_local_equals_sim(&d, "chat", "k-axyb").await;

    // An orphan AX + YB on the other 021 X; the 021 binding unbound; the 010 one expires.
    let ax = orphan_axyb_ax(&d, 7, "021").await;
    assert_ne!(ax.relation_number, ghost.x_number);
    orphan_axyb_yb(&d, &ax, 8).await;
    sim.axyb_unbind(&AxybUnbind {
        subscription_id: ghost.subscription_id.clone(),
        y_num: None,
        b_num: None,
    })
    .await
    .unwrap();
    expire_and_repair(
        &d,
        ("chat", "k-axyb"),
        counts!(4, orphans_adopted = 1, ghosts_freed = 2),
        &keep,
        [&ghost, &expiring],
    )
    .await;

    // 021: the freed X serves one more binding; then the adopted X is held, so none is left.
    let next = d
        .bind_ok(in_area("chat", &party(9), Some(&party(10)), "021"))
        .await;
    assert_eq!(next.x_number, ghost.x_number);
    let err = assert_refused_locally(
        &d,
        "k-axyb",
        in_area("chat", &party(11), Some(&party(12)), "021"),
    )
    .await;
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    stop_in_step(d, "chat", "k-axyb").await;
}

/// An AX relation made on the platform with two YB relations under it (two Bs reaching A through
/// two Ys): both are adopted, and a second run finds them equal to the platform.
#[tokio::test]
async fn an_axyb_orphan_with_two_yb_relations_is_adopted_whole() {
    let d = Daemon::start().await;
    let ax = orphan_axyb_ax(&d, 1, "010").await;
    for b in [2, 3] {
        orphan_axyb_yb(&d, &ax, b).await;
    }
    assert_eq!(d.sim.bindings("k-axyb").await.len(), 2);
    let r = reconcile(&d, "chat", false).await;
    assert_report(&r, &counts!(4, orphans_adopted = 2));
    assert_local_equals_sim(&d, "chat", "k-axyb").await;
    let again = reconcile(&d, "chat", false).await;
    assert_clean(&again, 4);
    assert_local_equals_sim(&d, "chat", "k-axyb").await;
    let bs: BTreeSet<String> = d
        .list("chat", pb::BindingState::Active)
        .await
        .into_iter()
        .map(|b| b.party_b)
        .collect();
    assert_eq!(bs, BTreeSet::from([party(2), party(3)]));
    d.stop().await;
}

/// Every app at once (no `app`): the counts add up over the apps, X mode is skipped.
#[tokio::test]
async fn a_run_over_all_apps_covers_every_platform_app() {
    let d = Daemon::start().await;
    orphan_axb(&d, 1, 2, AXB_X[1]).await;
    orphan_axe(&d, 3, "+8617200000001", "05").await;
    let r = reconcile(&d, "", false).await;
    assert_succeeded(&r);
    assert_eq!(r.app, "");
    // 4 AXB + 3 AX + 2 AXE + 4 AXYB numbers; the X-mode app has no platform.
    assert_report(&r, &counts!(13, orphans_adopted = 2));
    assert_all_local_equals_sim(&d).await;
    stop_settled(d, "", 13).await;
}

// ----------------------------------------------------------------------------------------------
// Dry run, policy, grace

#[tokio::test]
async fn a_dry_run_counts_without_changing_anything() {
    let d = Daemon::start().await;
    let ghost = ghost_axb(&d, 1, 2, AXB_X[0]).await;
    let modified = bind_axb(&d, 3, 4, AXB_X[1]).await;
    orphan_axb(&d, 5, 6, AXB_X[2]).await;
    modify_axb_behind(&d, &modified, 7).await;
    d.clock.advance(PAST_GRACE_MS);
    let local_before = local_active(&d, "rides").await;
    let sim_before = d.sim.bindings("k-axb").await;

    let expected = counts!(
        4,
        orphans_adopted = 1,
        ghosts_freed = 1,
        fields_corrected = 1
    );
    for _ in 0..2 {
        let dry = reconcile(&d, "rides", true).await;
        assert!(dry.dry_run);
        assert_succeeded(&dry);
        assert_eq!(counts(&dry), expected);
        assert_eq!(
            local_active(&d, "rides").await,
            local_before,
            "a dry run changed local state"
        );
        assert_eq!(
            d.sim.bindings("k-axb").await,
            sim_before,
            "a dry run changed the platform"
        );
    }
    assert_state(&d, &ghost, pb::BindingState::Active).await;
    assert_eq!(d.get(&modified.binding_id).await.party_b, party(4));

    let real = reconcile(&d, "rides", false).await;
    assert!(!real.dry_run);
    assert_succeeded(&real);
    assert_eq!(counts(&real), expected);
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    stop_settled(d, "rides", 4).await;
}

#[tokio::test]
async fn orphan_policy_release_unbinds_orphans_on_the_platform() {
    let setup = Setup::standard().daemon_section("[reconcile]\norphan_policy = \"release\"\n");
    let d = Daemon::start_with(setup).await;
    let keep = bind_axb(&d, 1, 2, AXB_X[0]).await;
    for (a, b, x) in [(3, 4, AXB_X[0]), (5, 6, AXB_X[1]), (7, 8, AXB_X[3])] {
        orphan_axb(&d, a, b, x).await;
    }
    let ax = d.sim.client("k-ax");
    ax.ax_bind(&AxBindRequest {
        orig_num: party(9),
        private_num: Some("+8617100000002".into()),
        ..Default::default()
    })
    .await
    .unwrap();

    let dry = reconcile(&d, "rides", true).await;
    assert_eq!(dry.orphans_released, 3);
    assert_eq!(
        d.sim.bindings("k-axb").await.len(),
        4,
        "a dry run releases nothing"
    );

    let r = reconcile(&d, "rides", false).await;
    assert_report(&r, &counts!(4, orphans_released = 3));
    assert_eq!(
        sim_subscriptions(&d, "k-axb").await,
        BTreeSet::from([keep.subscription_id.clone()]),
        "only the daemon's own binding is left on the platform"
    );
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    assert_eq!(d.list("rides", pb::BindingState::Active).await.len(), 1);

    let r = reconcile(&d, "drivers", false).await;
    assert_report(&r, &counts!(3, orphans_released = 1));
    assert!(d.sim.bindings("k-ax").await.is_empty());
    assert_local_equals_sim(&d, "drivers", "k-ax").await;
    stop_settled(d, "rides", 4).await;
}

#[tokio::test]
async fn a_ghost_younger_than_the_grace_window_is_not_freed() {
    let d = Daemon::start().await;
    let ghost = ghost_axb(&d, 1, 2, AXB_X[0]).await;
    // 30 s old (the platform's clock moving does not age it: the daemon's clock counts).
    d.sim.advance_clock(3600).await;
    d.clock.advance(30_000);
    let r = reconcile(&d, "rides", false).await;
    assert_report(&r, &counts!(4));
    assert_state(&d, &ghost, pb::BindingState::Active).await;
    // 59 s: still inside.
    d.clock.advance(29_000);
    assert_eq!(reconcile(&d, "rides", false).await.ghosts_freed, 0);
    assert_state(&d, &ghost, pb::BindingState::Active).await;
    // 61 s: freed.
    d.clock.advance(2_000);
    let r = reconcile(&d, "rides", false).await;
    assert_report(&r, &counts!(4, ghosts_freed = 1));
    assert_state(&d, &ghost, pb::BindingState::Released).await;
    stop_in_step(d, "rides", "k-axb").await;
}

// ----------------------------------------------------------------------------------------------
// Never free a live binding

/// Binds on the same Xs run while reconciliations of those Xs run back to back; with
/// `grace_seconds` as given. Afterwards every acknowledged binding is ACTIVE and on the platform.
async fn binds_survive_concurrent_reconciles(setup: Setup) {
    let d = Daemon::start_with(setup).await;
    // Some drift for the reconciler to act on while the binds run.
    for i in 0..4u32 {
        orphan_axb(&d, 100_000 + 2 * i, 100_001 + 2 * i, AXB_X[i as usize]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut binders = Vec::new();
    for w in 0..4u32 {
        let mut c = d.bindings().await;
        binders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            let mut i = 0u32;
            while Instant::now() < deadline {
                let a = party(w * 10_000 + 2 * i);
                let b = party(w * 10_000 + 2 * i + 1);
                let mut req = bind("rides", &a, Some(&b));
                req.any_area = true;
                // Half of them pinned, so each X is bound while it is being reconciled.
                if i.is_multiple_of(2) {
                    req.x_number = AXB_X[(i as usize / 2 + w as usize) % 4].into();
                }
                match c.bind(req).await {
                    Ok(r) => acked.push(r.into_inner()),
                    Err(e) => failed.push((a, b, e)),
                }
                i += 1;
            }
            (acked, failed)
        }));
    }
    let mut runs = 0;
    let mut freed = 0;
    while Instant::now() < deadline {
        let r = reconcile(&d, "rides", false).await;
        assert_succeeded(&r);
        freed += r.ghosts_freed;
        runs += 1;
    }
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for t in binders {
        let (a, f) = t.await.unwrap();
        acked.extend(a);
        failed.extend(f);
    }
    assert!(runs >= 2, "only {runs} reconciliations ran");
    assert!(acked.len() >= 20, "only {} binds", acked.len());
    assert_eq!(freed, 0, "a reconciliation freed live bindings");
    let on_sim = d.sim.bindings("k-axb").await;
    // No Bind may fail here (the platform is healthy and every pair is new); a failed Bind must
    // at least not have left its binding on the platform.
    let failures: Vec<String> = failed
        .iter()
        .map(|(a, b, e)| {
            let leaked = on_sim
                .iter()
                .any(|s| s["a"].as_str() == Some(a) && s["b"].as_str() == Some(b));
            format!(
                "({a}, {b}): {:?} {:?}; bound on the platform anyway: {leaked}",
                e.code(),
                e.message()
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} Binds failed while reconciliations ran:\n{}",
        failures.len(),
        failures.len() + acked.len(),
        failures.join("\n")
    );
    let on_sim = sim_subscriptions(&d, "k-axb").await;
    for b in &acked {
        let now = d.get(&b.binding_id).await;
        assert_eq!(
            now.state(),
            pb::BindingState::Active,
            "acknowledged binding {} ({}) left ACTIVE: {now:?}",
            b.binding_id,
            b.x_number
        );
        assert!(
            on_sim.contains(&b.subscription_id),
            "acknowledged binding {} is not on the platform",
            b.binding_id
        );
    }
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    // A last run finds nothing.
    let last = reconcile(&d, "rides", false).await;
    assert_clean(&last, 4);
    // No two ACTIVE bindings share a party on one X (the index was not corrupted).
    let mut seen = BTreeSet::new();
    for b in d.list("rides", pb::BindingState::Active).await {
        for p in [&b.party_a, &b.party_b] {
            assert!(
                seen.insert((b.x_number.clone(), p.clone())),
                "party {p} twice on {}",
                b.x_number
            );
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn a_binding_created_during_a_reconcile_of_its_x_survives_it() {
    binds_survive_concurrent_reconciles(Setup::standard()).await;
}

/// Without a grace window only the second query protects a young binding.
#[tokio::test]
async fn a_binding_created_during_a_reconcile_survives_even_without_grace() {
    let config = Setup::standard().daemon_section("[reconcile]\ngrace_seconds = 0\n");
    binds_survive_concurrent_reconciles(config).await;
}

// ----------------------------------------------------------------------------------------------
// Numbers the platform took away

async fn total_numbers(d: &Daemon, app: &str) -> i32 {
    d.pool_stats(app).await.areas.iter().map(|a| a.total).sum()
}

async fn removed_number_is_retired(app: &str, app_key: &str, x: &str, xs: i64, total: i32) {
    let d = Daemon::start().await;
    // AXB needs a B; the other modes take none.
    let b_of = |i: u32| (app == "rides").then(|| party(i));
    let b = d
        .bind_ok(pinned(app, &party(1), b_of(2).as_deref(), x))
        .await;
    assert_eq!(total_numbers(&d, app).await, total);
    d.sim
        .control_post("/sim/numbers", json!({"app_key": app_key, "remove": [x]}))
        .await;
    d.clock.advance(PAST_GRACE_MS);

    let r = reconcile(&d, app, false).await;
    assert_succeeded(&r);
    assert_eq!(
        counts(&r),
        counts!(xs, numbers_removed = 1),
        "{app}: the removed number {x} is reported"
    );
    assert_not_active(&d, &b).await;
    assert_local_equals_sim(&d, app, app_key).await;
    assert_eq!(
        total_numbers(&d, app).await,
        total - 1,
        "stats drop the removed number"
    );
    // Never handed out again: pinned, or by area.
    assert_refused_locally(&d, app_key, pinned(app, &party(3), b_of(4).as_deref(), x)).await;
    for i in 0..total as u32 + 2 {
        let mut req = bind(app, &party(10 + 2 * i), b_of(11 + 2 * i).as_deref());
        req.any_area = true;
        if let Ok(got) = d.bindings().await.bind(req).await {
            assert_ne!(
                got.into_inner().x_number,
                x,
                "the removed number was handed out"
            );
        }
    }
    // A second run neither re-counts it nor finds anything else.
    stop_settled(d, app, xs - 1).await;
}

#[tokio::test]
async fn an_axe_number_removed_on_the_platform_is_retired() {
    removed_number_is_retired("stores", "k-axe", "+8617200000002", 2, 2).await;
}

/// The AXB query cannot tell "not the app's number" from "no bindings" (the platform answers
/// 1012007 to both), so reconciliation frees the number's binding as a ghost; the platform's
/// refusal of the next bind on it (1012001) then retires the number for good.
#[tokio::test]
async fn an_axb_number_removed_on_the_platform_is_retired_when_a_bind_is_refused() {
    let d = Daemon::start().await;
    let x = AXB_X[1];
    let b = d
        .bind_ok(pinned("rides", &party(1), Some(&party(2)), x))
        .await;
    d.sim
        .control_post("/sim/numbers", json!({"app_key": "k-axb", "remove": [x]}))
        .await;
    d.clock.advance(PAST_GRACE_MS);
    let r = reconcile(&d, "rides", false).await;
    assert_report(&r, &counts!(4, ghosts_freed = 1));
    assert_not_active(&d, &b).await;
    assert_local_equals_sim(&d, "rides", "k-axb").await;

    let err = d
        .bindings()
        .await
        .bind(pinned("rides", &party(3), Some(&party(4)), x))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        total_numbers(&d, "rides").await,
        3,
        "stats drop the removed number"
    );
    for i in 0..6 {
        let mut req = bind("rides", &party(10 + 2 * i), Some(&party(11 + 2 * i)));
        req.any_area = true;
        if let Ok(got) = d.bindings().await.bind(req).await {
            assert_ne!(
                got.into_inner().x_number,
                x,
                "the removed number was handed out"
            );
        }
    }
    stop_in_step(d, "rides", "k-axb").await;
}

// ----------------------------------------------------------------------------------------------
// The `xpool reconcile` command

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `xpool reconcile ARGS`, which must exit with `code`.
async fn xpool_reconcile(args: &[&str], code: i32) -> Run {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_xpool"))
            .arg("reconcile")
            .args(&args)
            .env("XPOOL_LOG", "warn")
            .output()
            .expect("running xpool")
    })
    .await
    .unwrap();
    let run = Run {
        code: out.status.code().expect("exited with a code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// The value printed on the report line `what`.
fn line_value<'a>(stdout: &'a str, what: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(what))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no line {what:?} in:\n{stdout}"))
}

/// The number printed on the report line `what`.
fn line_count(stdout: &str, what: &str) -> u64 {
    line_value(stdout, what)
        .parse()
        .unwrap_or_else(|_| panic!("no count on line {what:?} in:\n{stdout}"))
}

#[tokio::test]
async fn the_reconcile_command_prints_the_report_and_exits_by_outcome() {
    let d = Daemon::start().await;
    let ghost = ghost_axb(&d, 1, 2, AXB_X[0]).await;
    orphan_axb(&d, 3, 4, AXB_X[1]).await;
    d.clock.advance(PAST_GRACE_MS);

    // Dry run, only two numbers.
    let args = &[
        "--server",
        &d.addr,
        "--app",
        "rides",
        "--number",
        AXB_X[0],
        "--number",
        AXB_X[1],
        "--dry-run",
    ];
    let run = xpool_reconcile(args, 0).await;
    assert!(
        run.stdout.contains("reconciliation of rides (dry run"),
        "{}",
        run.stdout
    );
    assert_eq!(line_count(&run.stdout, "numbers checked"), 2);
    assert_eq!(line_count(&run.stdout, "orphans adopted"), 1);
    assert_eq!(line_count(&run.stdout, "ghosts freed"), 1);
    assert_state(&d, &ghost, pb::BindingState::Active).await;

    // The real thing. Its stderr is no terminal: no progress there.
    let run = xpool_reconcile(&["--server", &d.addr, "--app", "rides"], 0).await;
    assert!(
        run.stdout.contains("reconciliation of rides\n"),
        "{}",
        run.stdout
    );
    assert_eq!(line_value(&run.stdout, "state"), "succeeded");
    assert_eq!(run.stderr, "");
    for (what, n) in [
        ("numbers checked", 4),
        ("orphans adopted", 1),
        ("orphans released", 0),
        ("ghosts freed", 1),
        ("fields corrected", 0),
        ("pending resolved", 0),
        ("numbers removed", 0),
        ("errors", 0),
    ] {
        assert_eq!(line_count(&run.stdout, what), n, "{what}:\n{}", run.stdout);
    }
    assert_local_equals_sim(&d, "rides", "k-axb").await;

    // All apps: clean.
    let run = xpool_reconcile(&["--server", &d.addr], 0).await;
    assert!(
        run.stdout.contains("reconciliation of all apps"),
        "{}",
        run.stdout
    );
    assert_eq!(line_count(&run.stdout, "numbers checked"), 13);
    assert_eq!(line_count(&run.stdout, "errors"), 0);

    // The daemon cannot be asked: 2.
    let run = xpool_reconcile(&["--server", &d.addr, "--app", "nope"], 2).await;
    assert!(run.stderr.contains("nope"), "{}", run.stderr);
    let run = xpool_reconcile(&["--server", "http://127.0.0.1:1", "--app", "rides"], 2).await;
    assert!(run.stderr.contains("cannot reach"), "{}", run.stderr);

    // The platform failing: the run fails, each error naming its number and the platform's
    // result code; 1.
    d.sim
        .faults(json!({"app_key": "k-axb", "error_rate": 1.0}))
        .await;
    let run = xpool_reconcile(&["--server", &d.addr, "--app", "rides"], 1).await;
    assert_eq!(line_value(&run.stdout, "state"), "failed");
    assert_eq!(line_count(&run.stdout, "errors"), 4, "{}", run.stdout);
    for x in AXB_X {
        let line = run.stdout.lines().find(|l| l.contains(x));
        assert!(
            line.is_some_and(|l| l.contains("[rides ") && l.contains("1010001")),
            "no error line for {x}:\n{}",
            run.stdout
        );
    }
    assert_eq!(line_count(&run.stdout, "ghosts freed"), 0);
    // The failed run changed nothing; with the platform back, a run is clean again.
    d.sim.faults(json!({"app_key": "k-axb"})).await;
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    xpool_reconcile(&["--server", &d.addr, "--app", "rides"], 0).await;
    d.stop().await;
}
