//! Expiry on schedule (DESIGN.md, "Lifecycle"): bindings leave ACTIVE at their deadline (plus the
//! skew grace for modes the platform expires itself), AX ones are unbound upstream by xpool,
//! slots come back after cool-down, and a restarted daemon releases overdue bindings at once.

use std::time::Duration;

use tonic::Code;
use xpool::grpc::pb;

use crate::support::*;

/// Polls the binding until it has left ACTIVE, for at most a few seconds of real time.
async fn wait_state(d: &Daemon, id: &str, want: pb::BindingState) -> pb::Binding {
    let mut c = d.bindings().await;
    let get = pb::GetBindingRequest::by_id(id);
    for _ in 0..100 {
        let b = c.get_binding(get.clone()).await.unwrap().into_inner();
        if b.state() == want {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("binding {id} never reached {want:?}");
}

/// An AXB bind of parties `a` and `b`.
fn rides(a: u32, b: u32) -> pb::BindRequest {
    bind("rides", &party(a), Some(&party(b)))
}

/// `req` with a lifetime of `seconds`.
fn lasting(seconds: u64, req: pb::BindRequest) -> pb::BindRequest {
    pb::BindRequest {
        ttl: xpool::grpc::ttl(seconds),
        ..req
    }
}

#[tokio::test]
async fn axb_bindings_expire_after_the_deadline_plus_grace() {
    let d = Daemon::start().await;
    let b = d.bind_ok(lasting(120, rides(1, 2))).await;
    let forever = d.bind_ok(rides(3, 4)).await;
    // An AX binding due at the same deadline (no skew grace: xpool unbinds it itself). Once it
    // has expired, a round has run past the AXB deadline, within the grace.
    let mut witness = bind("drivers", &party(5), None);
    witness.ttl = xpool::grpc::ttl(120);
    witness.any_area = true;
    let witness = d.bind_ok(witness).await;
    // The platform expires it at its own deadline.
    d.sim.advance_clock(120).await;
    d.clock.advance(120_000);
    wait_state(&d, &witness.binding_id, pb::BindingState::Expired).await;
    assert_eq!(
        d.state(&b.binding_id).await,
        pb::BindingState::Active,
        "inside the skew grace"
    );
    d.clock.advance(5_000);
    wait_state(&d, &b.binding_id, pb::BindingState::Expired).await;
    assert_eq!(d.state(&forever.binding_id).await, pb::BindingState::Active);
    stop_in_step(d, "rides", "k-axb").await;
}

#[tokio::test]
async fn ax_bindings_are_unbound_upstream_at_the_deadline_and_cool_down() {
    let d = Daemon::start().await;
    let mut req = in_area("drivers", &party(1), None, "021");
    req.ttl = xpool::grpc::ttl(60);
    let b = d.bind_ok(req.clone()).await;
    d.clock.advance(60_000);
    wait_state(&d, &b.binding_id, pb::BindingState::Expired).await;
    assert!(
        d.sim.bindings("k-ax").await.is_empty(),
        "xpool unbound it on the platform"
    );
    // 021's X now cools down for 60 s.
    req.party_a = party(2);
    d.bind_refused(req.clone(), Code::ResourceExhausted).await;
    d.clock.advance(60_000);
    let again = d.bind_ok(req).await;
    assert_eq!(again.x_number, b.x_number);
    d.stop().await;
}

#[tokio::test]
async fn axe_extensions_come_back_after_expiry_and_cool_down() {
    let d = Daemon::start().await;
    let mut req = bind("stores", &party(1), None);
    req.x_number = "+8617200000001".into();
    req.extension = "07".into();
    req.ttl = xpool::grpc::ttl(60);
    let b = d.bind_ok(req.clone()).await;
    d.sim.advance_clock(60).await;
    d.clock.advance(65_000);
    wait_state(&d, &b.binding_id, pb::BindingState::Expired).await;
    req.party_a = party(2);
    let err = d.bindings().await.bind(req.clone()).await.unwrap_err();
    assert!(err.message().contains("cooling"), "{}", err.message());
    d.clock.advance(60_000);
    d.bindings().await.bind(req).await.unwrap();
    stop_in_step(d, "stores", "k-axe").await;
}

#[tokio::test]
async fn a_restarted_daemon_expires_overdue_bindings_at_start_up() {
    let d = Daemon::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut req = bind("rides", &party(2 * i), Some(&party(2 * i + 1)));
        req.ttl = xpool::grpc::ttl(60);
        ids.push(d.bind_ok(req).await.binding_id);
    }
    let d = {
        let sim = d.sim.clone();
        let clock = d.clock.clone();
        // Stop, let the deadlines pass while it is down, start again.
        let stopped = d.restart_after(|| {
            clock.advance(3_600_000);
        });
        let d = stopped.await;
        sim.advance_clock(3600).await;
        d
    };
    // Start-up expired them before serving: no waiting needed.
    for id in &ids {
        assert_eq!(d.state(id).await, pb::BindingState::Expired);
    }
    stop_in_step(d, "rides", "k-axb").await;
}

#[tokio::test]
async fn update_binding_moves_the_deadline_here_and_on_the_platform() {
    let d = Daemon::start().await;
    let b = d.bind_ok(lasting(60, rides(1, 2))).await;
    let update = pb::UpdateBindingRequest {
        binding_id: b.binding_id.clone(),
        ttl: xpool::grpc::ttl(600),
        ..Default::default()
    };
    let u = d
        .bindings()
        .await
        .update_binding(update)
        .await
        .unwrap()
        .into_inner();
    let new_life = u.expire_time.unwrap().seconds - u.update_time.unwrap().seconds;
    assert_eq!(new_life, 600);
    // A binding left at the old deadline, bound later: once it has expired, a round has run
    // past the old deadline (and its grace).
    let mut witness = rides(3, 4);
    witness.ttl = xpool::grpc::ttl(60);
    let witness = d.bind_ok(witness).await;
    // The platform's timer restarted too: past the old deadline it still has the binding.
    d.sim.advance_clock(120).await;
    d.clock.advance(125_000);
    wait_state(&d, &witness.binding_id, pb::BindingState::Expired).await;
    assert_eq!(d.state(&b.binding_id).await, pb::BindingState::Active);
    assert_local_equals_sim(&d, "rides", "k-axb").await;
    // No ttl, with "ttl" in the mask, removes the deadline.
    let forever = pb::UpdateBindingRequest {
        binding_id: b.binding_id.clone(),
        ttl: None,
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["ttl".into()],
        }),
        ..Default::default()
    };
    assert!(
        d.bindings()
            .await
            .update_binding(forever)
            .await
            .unwrap()
            .into_inner()
            .expire_time
            .is_none()
    );
    // AXYB bindings have no modify API.
    let axyb = in_area("chat", &party(5), Some(&party(6)), "010");
    let y = d.bind_ok(axyb).await;
    let err = d
        .bindings()
        .await
        .update_binding(pb::UpdateBindingRequest {
            binding_id: y.binding_id,
            ttl: xpool::grpc::ttl(60),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    d.stop().await;
}

#[tokio::test]
async fn axyb_and_x_mode_bindings_expire_too() {
    let d = Daemon::start().await;
    let mut chat = in_area("chat", &party(1), Some(&party(2)), "010");
    chat.ttl = xpool::grpc::ttl(120);
    let axyb = d.bind_ok(chat).await;
    let mut local = bind("local", &party(3), Some(&party(4)));
    local.ttl = xpool::grpc::ttl(120);
    let x = d.bind_ok(local.clone()).await;
    d.sim.advance_clock(120).await;
    d.clock.advance(125_000);
    wait_state(&d, &axyb.binding_id, pb::BindingState::Expired).await;
    wait_state(&d, &x.binding_id, pb::BindingState::Expired).await;
    assert_local_equals_sim(&d, "chat", "k-axyb").await;
    // The X-mode slot is free again at once (no cool-down for shared numbers).
    local.x_number = x.x_number.clone();
    d.bindings().await.bind(local).await.unwrap();
    d.stop().await;
}

#[tokio::test]
async fn every_expired_binding_gets_its_defensive_unbind_in_the_background() {
    let d = Daemon::start().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut req = bind("rides", &party(100 + 2 * i), Some(&party(101 + 2 * i)));
        req.ttl = xpool::grpc::ttl(60);
        ids.push(d.bind_ok(req).await.binding_id);
    }
    let not_found = async |d: &Daemon| {
        d.sim.stats("k-axb").await["by_code"]["1012007"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = not_found(&d).await;
    // The platform expires them at the deadline; xpool marks them EXPIRED after the grace and
    // then unbinds each one anyway, which the platform answers with "not found".
    d.sim.advance_clock(60).await;
    d.clock.advance(65_000);
    for id in &ids {
        wait_state(&d, id, pb::BindingState::Expired).await;
    }
    let mut unbound = 0;
    for _ in 0..100 {
        unbound = not_found(&d).await - before;
        if unbound >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unbound, 40, "one defensive unbind per expired binding");
    d.stop().await;
}
