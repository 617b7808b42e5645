//! Many concurrent Binds and Unbinds over small pools with heavily overlapping parties: every
//! acknowledged binding exists on the simulator, no allocation rule is broken, no slot is freed
//! twice, and the daemon's state (bindings, number loads, pool stats) equals the platform's.

use std::collections::HashMap;
use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::platform::codes;

use crate::support::*;

/// `max_bindings_per_x` of [`Setup::small_pools`].
const AXB_CAP: usize = 10;

/// Runs the binds concurrently; returns the acknowledged bindings and the error codes seen.
async fn bind_all(
    d: &Daemon,
    reqs: Vec<pb::BindRequest>,
) -> (Vec<pb::Binding>, HashMap<Code, usize>) {
    let conns = clients(d, 8).await;
    let mut tasks = Vec::new();
    for (i, req) in reqs.into_iter().enumerate() {
        let mut c = conns[i % conns.len()].clone();
        tasks.push(tokio::spawn(async move {
            c.bind(req).await.map(|r| r.into_inner())
        }));
    }
    let mut ok = Vec::new();
    let mut errors = HashMap::new();
    within("concurrent binds", async {
        for t in tasks {
            match t.await.unwrap() {
                Ok(b) => ok.push(b),
                Err(s) => {
                    assert!(
                        !matches!(s.code(), Code::Internal | Code::Unknown),
                        "a Bind failed with {s:?}"
                    );
                    *errors.entry(s.code()).or_default() += 1;
                }
            }
        }
    })
    .await;
    (ok, errors)
}

/// Unbinds concurrently (an id may be listed more than once); every Unbind must succeed.
/// The daemon and the platform agree on exactly `live`, and the platform answered every call
/// with success: nothing was bound or unbound twice upstream.
async fn assert_settled(d: &Daemon, app: &str, app_key: &str, live: &[pb::Binding]) {
    assert_in_step(d, app, app_key, live).await;
    assert_platform_never_refused(d, app_key).await;
}

/// `n` binds of `app` (no B, any area) by parties drawn from the first `parties`.
fn random_a_binds(app: &str, n: usize, parties: u32, rng: &mut Rng) -> Vec<pb::BindRequest> {
    (0..n)
        .map(|_| bind_any(app, &party(rng.below(parties)), None))
        .collect()
}

async fn unbind_all(d: &Daemon, ids: Vec<String>) {
    let conns = clients(d, 8).await;
    let mut tasks = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let mut c = conns[i % conns.len()].clone();
        tasks.push(tokio::spawn(async move {
            let r = c.unbind(pb::UnbindRequest::by_id(id.clone())).await;
            (id, r.map(|r| r.into_inner()))
        }));
    }
    within("concurrent unbinds", async {
        for t in tasks {
            let (id, r) = t.await.unwrap();
            let b = r.unwrap_or_else(|s| panic!("Unbind {id} failed: {s:?}"));
            assert_eq!(b.state(), pb::BindingState::Released, "{b:?}");
        }
    })
    .await;
}

/// Every error code seen is one of `allowed`.
#[track_caller]
fn assert_only(errors: &HashMap<Code, usize>, allowed: &[Code]) {
    assert!(
        errors.keys().all(|c| allowed.contains(c)),
        "errors: {errors:?}"
    );
}

/// Unbinds every other binding of `acked` concurrently; returns the others.
async fn unbind_every_other(d: &Daemon, acked: &[pb::Binding]) -> Vec<pb::Binding> {
    let (gone, kept): (Vec<_>, Vec<_>) = acked.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    unbind_all(d, gone.iter().map(|(_, b)| b.binding_id.clone()).collect()).await;
    kept.into_iter().map(|(_, b)| b.clone()).collect()
}

/// The platform answered every call with success: the daemon never offered it a slot that the
/// platform's rules refuse.
async fn assert_platform_never_refused(d: &Daemon, app_key: &str) {
    let stats = d.sim.stats(app_key).await;
    let codes: Vec<&String> = stats["by_code"].as_object().unwrap().keys().collect();
    assert_eq!(codes, ["0"], "platform answers: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axb_thousand_concurrent_binds_keep_the_rules_and_match_the_platform() {
    let d = Daemon::start_with(Setup::small_pools()).await;
    let mut rng = Rng(0x5eed_0001);
    let reqs: Vec<pb::BindRequest> = (0..1000)
        .map(|_| {
            let (a, b) = rng.pair(30);
            let mut r = bind("rides", &party(a), Some(&party(b)));
            r.area_code = if rng.below(2) == 0 { "010" } else { "021" }.into();
            r.any_area = true;
            r
        })
        .collect();
    let (acked, errors) = bind_all(&d, reqs).await;
    assert_only(&errors, &[Code::ResourceExhausted]);
    // 6 Xs × 10: the pool fills up; the rest are told it is exhausted.
    assert!(acked.len() >= 40, "only {} bindings", acked.len());
    assert!(acked.len() <= 6 * AXB_CAP);
    for b in &acked {
        assert_eq!(b.state(), pb::BindingState::Active);
    }
    assert_eq!(d.sim.bindings("k-axb").await.len(), acked.len());
    assert_axb_rules(&d, "rides", "k-axb", AXB_CAP).await;
    assert_settled(&d, "rides", "k-axb", &acked).await;

    // Unbind every other binding concurrently; then bind again into the freed room.
    let kept = unbind_every_other(&d, &acked).await;
    assert_eq!(d.sim.bindings("k-axb").await.len(), kept.len());
    assert_in_step(&d, "rides", "k-axb", &kept).await;

    let reqs: Vec<pb::BindRequest> = (0..300)
        .map(|_| {
            let (a, b) = rng.pair(30);
            bind_any("rides", &party(a), Some(&party(b)))
        })
        .collect();
    let (again, errors) = bind_all(&d, reqs).await;
    assert_only(&errors, &[Code::ResourceExhausted]);
    assert!(!again.is_empty());
    let all: Vec<pb::Binding> = kept.into_iter().chain(again).collect();
    assert_axb_rules(&d, "rides", "k-axb", AXB_CAP).await;
    // Unbinds answered "0" too: nothing was unbound twice upstream.
    assert_settled(&d, "rides", "k-axb", &all).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ax_concurrent_binds_keep_one_a_per_x_and_five_xs_per_a() {
    let d = Daemon::start_with(Setup::small_pools()).await;
    let mut rng = Rng(0x5eed_0002);
    // 4 As competing for 8 Xs: each A may hold at most 5.
    let reqs = random_a_binds("drivers", 200, 4, &mut rng);
    let (acked, errors) = bind_all(&d, reqs).await;
    assert_only(
        &errors,
        &[Code::ResourceExhausted, Code::FailedPrecondition],
    );
    assert_eq!(acked.len(), 8, "every X is handed out once");
    assert_ax_rules(&d, "drivers", "k-ax").await;
    assert_settled(&d, "drivers", "k-ax", &acked).await;

    let kept = unbind_every_other(&d, &acked).await;
    assert_in_step(&d, "drivers", "k-ax", &kept).await;
    // The released Xs cool down: nothing is handed out now, then all four after 60 s.
    let reqs: Vec<pb::BindRequest> = (0..40)
        .map(|i| bind_any("drivers", &party(10 + i % 8), None))
        .collect();
    let (none, _) = bind_all(&d, reqs.clone()).await;
    assert!(none.is_empty(), "cooling Xs handed out: {none:?}");
    d.clock.advance(60_000);
    let (again, _) = bind_all(&d, reqs).await;
    assert_eq!(again.len(), 4);
    assert_ax_rules(&d, "drivers", "k-ax").await;
    assert_settled(&d, "drivers", "k-ax", &again).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_concurrent_binds_keep_extensions_and_parties_unique_per_x() {
    let d = Daemon::start_with(Setup::small_pools()).await;
    let mut rng = Rng(0x5eed_0003);
    let reqs = random_a_binds("stores", 200, 12, &mut rng);
    let (acked, errors) = bind_all(&d, reqs).await;
    assert_only(&errors, &[Code::ResourceExhausted]);
    assert!(acked.len() >= 20, "only {} bindings", acked.len());
    assert_axe_rules(&d, "stores", "k-axe").await;
    assert_settled(&d, "stores", "k-axe", &acked).await;

    let kept = unbind_every_other(&d, &acked).await;
    assert_acknowledged_live(&d, "k-axe", &kept).await;
    d.clock.advance(60_000);
    let reqs = random_a_binds("stores", 100, 12, &mut rng);
    let (again, errors) = bind_all(&d, reqs).await;
    assert_only(&errors, &[Code::ResourceExhausted]);
    let all: Vec<pb::Binding> = kept.into_iter().chain(again).collect();
    assert_axe_rules(&d, "stores", "k-axe").await;
    assert_settled(&d, "stores", "k-axe", &all).await;
    d.stop().await;
}

/// Workers bind and at once unbind the same binding twice in parallel, while a sweeper
/// unbinds whatever it sees ACTIVE: no slot may be given back twice.
async fn bind_unbind_mix(d: &Daemon, app: &'static str, app_key: &str, two_parties: bool) {
    let conns = clients(d, 4).await;
    let mut workers = Vec::new();
    for w in 0..12u64 {
        let c = conns[w as usize % conns.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x5eed_1000 + w);
            let mut bound = 0;
            for _ in 0..25 {
                let (a, b) = rng.pair(16);
                let mut req = bind(app, &party(a), two_parties.then(|| party(b)).as_deref());
                req.any_area = true;
                let b = match c.clone().bind(req).await {
                    Ok(b) => b.into_inner(),
                    Err(s) => {
                        assert!(
                            matches!(s.code(), Code::ResourceExhausted | Code::FailedPrecondition),
                            "Bind: {s:?}"
                        );
                        continue;
                    }
                };
                bound += 1;
                if rng.below(3) == 0 {
                    continue; // left for the sweeper
                }
                let unbind = |mut c: BindingServiceClient<Channel>, id: String| async move {
                    c.unbind(pb::UnbindRequest::by_id(id)).await
                };
                let (one, two) = tokio::join!(
                    unbind(c.clone(), b.binding_id.clone()),
                    unbind(c.clone(), b.binding_id.clone())
                );
                for r in [one, two] {
                    let r = r.unwrap_or_else(|s| panic!("Unbind: {s:?}")).into_inner();
                    assert_eq!(r.state(), pb::BindingState::Released);
                }
            }
            bound
        }));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeper = {
        let stop = stop.clone();
        let mut c = conns[0].clone();
        tokio::spawn(async move {
            let mut swept = 0;
            while !stop.is_cancelled() {
                let page = c
                    .list_bindings(pb::ListBindingsRequest {
                        app: app.into(),
                        state: pb::BindingState::Active.into(),
                        page_size: 1000,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut tasks = Vec::new();
                for b in page.bindings.into_iter().step_by(2) {
                    let mut c = c.clone();
                    tasks.push(tokio::spawn(async move {
                        c.unbind(pb::UnbindRequest::by_id(b.binding_id)).await
                    }));
                }
                for t in tasks {
                    let r = t.await.unwrap().unwrap_or_else(|s| panic!("Unbind: {s:?}"));
                    assert_eq!(r.into_inner().state(), pb::BindingState::Released);
                    swept += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            swept
        })
    };
    let mut bound = 0;
    within("bind/unbind workers", async {
        for w in workers {
            bound += w.await.unwrap();
        }
    })
    .await;
    stop.cancel();
    let swept = within("sweeper", sweeper).await.unwrap();
    assert!(bound > 50, "only {bound} binds succeeded");
    assert!(swept > 0, "the sweeper never raced the workers");
    assert_local_equals_sim(d, app, app_key).await;
    assert_counts_match(d, app, app_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_binds_and_unbinds_never_free_a_slot_twice() {
    // No cool-down, so freed AX numbers go straight back into rotation.
    let setup = Setup::small_pools()
        .app("drivers", |a| a.daemon("cool_down_seconds", 0))
        .app("stores", |a| a.daemon("cool_down_seconds", 0));
    let d = Daemon::start_with(setup).await;
    tokio::join!(
        bind_unbind_mix(&d, "drivers", "k-ax", false),
        bind_unbind_mix(&d, "rides", "k-axb", true),
    );
    assert_axb_rules(&d, "rides", "k-axb", AXB_CAP).await;
    assert_ax_rules(&d, "drivers", "k-ax").await;
    // Every AX number is either bound or free again: none leaked, none counted free twice.
    let stats = d.pool_stats("drivers").await;
    for a in &stats.areas {
        assert_eq!(a.bound + a.free, a.total, "{a:?}");
    }
    // The whole pool is usable again once everything is unbound.
    let ids: Vec<String> = d
        .list("drivers", pb::BindingState::Active)
        .await
        .into_iter()
        .chain(d.list("rides", pb::BindingState::Active).await)
        .map(|b| b.binding_id)
        .collect();
    unbind_all(&d, ids).await;
    assert!(d.sim.bindings("k-ax").await.is_empty());
    assert!(d.sim.bindings("k-axb").await.is_empty());
    assert_counts_match(&d, "drivers", "k-ax").await;
    assert_counts_match(&d, "rides", "k-axb").await;
    let reqs: Vec<pb::BindRequest> = (0..8)
        .map(|i| bind_any("drivers", &party(100 + i), None))
        .collect();
    let (all, errors) = bind_all(&d, reqs).await;
    assert_eq!(all.len(), 8, "errors: {errors:?}");
    assert_counts_match(&d, "drivers", "k-ax").await;
    d.stop().await;
}

/// The simulator refuses a nonce reused within its validity window (401 / 1010013, as a replayed
/// header would be), so a burst of concurrent Binds and Unbinds that all succeed shows the client
/// signs every call with a nonce of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_never_reuses_a_nonce() {
    let setup = Setup::standard()
        .only(&["rides"])
        .sim_section("[auth]\nreject_replayed_nonces = true\nmax_failures = 1000\n");
    let d = Daemon::start_with(setup).await;
    let reqs: Vec<pb::BindRequest> = (0..400)
        .map(|i| bind_any("rides", &party(2 * i), Some(&party(2 * i + 1))))
        .collect();
    let (acked, errors) = bind_all(&d, reqs).await;
    assert!(errors.is_empty(), "errors: {errors:?}");
    assert_eq!(acked.len(), 400);
    unbind_all(&d, acked.iter().map(|b| b.binding_id.clone()).collect()).await;
    let stats = d.sim.stats("k-axb").await;
    let by_code = stats["by_code"].as_object().unwrap();
    // Every Bind and Unbind succeeded once. On a loaded machine a Bind may also outlast the
    // upstream timeout and be looked up (a success, or 1012007 while the platform has no
    // record of it yet); a reused nonce would be 1010013, and nothing else is allowed.
    assert!(by_code["0"].as_u64().unwrap() >= 800, "{stats}");
    for code in by_code.keys() {
        assert!(
            [codes::SUCCESS, codes::RECORD_NOT_EXIST].contains(&code.as_str()),
            "platform answers: {stats}"
        );
    }
    d.stop().await;
}
