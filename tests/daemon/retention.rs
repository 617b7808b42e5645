//! Retention through the gRPC API (issue 15): released bindings, which hold real numbers, are
//! gone once `store.released_retention_days` have passed on the daemon's clock, request ids are
//! remembered for `store.request_id_retention_hours` after their binding left service, and both
//! stay so across a restart. The retention job's rounds are awaited, never timed.

use std::time::Duration;

use tonic::Code;
use xpool::grpc::pb;

use crate::support::*;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// An AXB bind of parties `a` and `b` under `request_id`.
fn ride(a: u32, b: u32, request_id: &str) -> pb::BindRequest {
    pb::BindRequest {
        request_id: request_id.into(),
        ..bind("rides", &party(a), Some(&party(b)))
    }
}

/// GetBinding by id or by (app, request id).
fn get_by_id(id: &str) -> pb::GetBindingRequest {
    pb::GetBindingRequest::by_id(id)
}

fn get_by_request(app: &str, request_id: &str) -> pb::GetBindingRequest {
    pb::GetBindingRequest::by_request(app, request_id)
}

/// GetBinding's answer: the binding, or NOT_FOUND as `None`.
async fn lookup(d: &Daemon, req: pb::GetBindingRequest) -> Option<pb::Binding> {
    match d.bindings().await.get_binding(req).await {
        Ok(b) => Some(b.into_inner()),
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => panic!("GetBinding: {s:?}"),
    }
}

/// Waits until the retention job has taken what `req` finds out of the store (its rounds run on
/// their own schedule once the clock has moved).
async fn wait_gone(d: &Daemon, req: pb::GetBindingRequest) {
    within("the retention job", async {
        while lookup(d, req.clone()).await.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn released_bindings_and_their_request_ids_go_after_their_retention() {
    let setup = Setup::standard().only(&["rides"]);
    let d = Daemon::start_with(setup).await;
    let first = d.bind_ok(ride(1, 2, "ride-1")).await;
    let active = d.bind_ok(ride(3, 4, "ride-2")).await;
    let released = d.unbind_ok(&first.binding_id).await;
    assert_eq!(released.state(), pb::BindingState::Released);

    // Within the retention the request id returns the released binding, as it is.
    d.clock.advance(23 * HOUR_MS);
    let again = d.bind_ok(ride(1, 2, "ride-1")).await;
    assert_eq!(again.binding_id, first.binding_id);
    assert_eq!(again.state(), pb::BindingState::Released);

    // After it, the request id is forgotten (the record stays) and starts a new binding.
    d.clock.advance(HOUR_MS);
    wait_gone(&d, get_by_request("rides", "ride-1")).await;
    let kept = d.get(&first.binding_id).await;
    assert_eq!(kept.state(), pb::BindingState::Released);
    assert_eq!(kept.request_id, "", "forgotten with its request id");
    let second = d.bind_ok(ride(1, 2, "ride-1")).await;
    assert_ne!(second.binding_id, first.binding_id);
    assert_eq!(second.state(), pb::BindingState::Active);

    // After the released retention, the record (and the real numbers in it) is gone.
    d.clock.advance(6 * DAY_MS);
    wait_gone(&d, get_by_id(&first.binding_id)).await;
    let listed = d.list("rides", pb::BindingState::Unspecified).await;
    let mut ids: Vec<&str> = listed.iter().map(|b| b.binding_id.as_str()).collect();
    ids.sort_unstable();
    let mut live = vec![active.binding_id.as_str(), second.binding_id.as_str()];
    live.sort_unstable();
    assert_eq!(ids, live, "only the live bindings are left");

    // And stays gone across a restart.
    let d = d.restart().await;
    assert_eq!(lookup(&d, get_by_id(&first.binding_id)).await, None);
    assert_eq!(d.get(&active.binding_id).await, active);
    assert_eq!(d.get_by_request("rides", "ride-1").await, second);
    stop_in_step(d, "rides", "k-axb").await;
}

#[tokio::test]
async fn with_no_retention_a_released_binding_is_gone_at_once_and_its_request_id_stays_taken() {
    let setup = Setup::standard()
        .only(&["rides"])
        .store("released_retention_days", 0)
        .store("request_id_retention_hours", 1);
    let d = Daemon::start_with(setup).await;
    let b = d.bind_ok(ride(1, 2, "ride-1")).await;
    let released = d.unbind_ok(&b.binding_id).await;
    assert_eq!(released.state(), pb::BindingState::Released);
    assert_eq!(released.party_a, party(1), "answered as it left");
    assert_eq!(lookup(&d, get_by_id(&b.binding_id)).await, None);
    assert_eq!(lookup(&d, get_by_request("rides", "ride-1")).await, None);

    // The request id is still remembered: a retry of that Bind must not bind again.
    let refused = d
        .bind_refused(ride(1, 2, "ride-1"), Code::FailedPrecondition)
        .await;
    assert!(refused.message().contains("ride-1"), "{refused:?}");
    let d = d.restart().await;
    assert_eq!(lookup(&d, get_by_id(&b.binding_id)).await, None);
    d.bind_refused(ride(1, 2, "ride-1"), Code::FailedPrecondition)
        .await;

    // Once its hour is up, it starts a new binding.
    d.clock.advance(HOUR_MS);
    let new = within("the retention job", async {
        loop {
            match d.bindings().await.bind(ride(1, 2, "ride-1")).await {
                Ok(b) => break b.into_inner(),
                Err(s) if s.code() == Code::FailedPrecondition => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => panic!("Bind: {s:?}"),
            }
        }
    })
    .await;
    assert_ne!(new.binding_id, b.binding_id);
    assert_eq!(new.state(), pb::BindingState::Active);
    stop_in_step(d, "rides", "k-axb").await;
}
