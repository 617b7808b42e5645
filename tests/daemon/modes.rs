//! Each mode through the gRPC API, with the allocation rules of DESIGN.md.

use tonic::Code;
use xpool::grpc::pb;

use crate::support::*;

#[tokio::test]
async fn axb_bind_get_list_unbind_round_trip() {
    let (d, mut c) = Daemon::start_with_client().await;
    let mut req = in_area("rides", &party(1), Some(&party(2)), "010");
    req.ttl = xpool::grpc::ttl(3600);
    req.user_data = "ride-42".into();
    req.call_options = Some(pb::CallOptions {
        max_call_minutes: Some(30),
        call_direction: pb::CallDirection::AToBOnly.into(),
        ..Default::default()
    });
    let b = d.bind_ok(req).await;
    assert_eq!(b.state(), pb::BindingState::Active);
    assert_eq!(b.mode(), pb::Mode::Axb);
    assert_eq!(b.area_code, "010");
    assert!(b.x_number.starts_with("+861700000000"));
    assert!(!b.subscription_id.is_empty());
    assert!(
        b.selection_reason.contains("requested area 010"),
        "{}",
        b.selection_reason
    );
    let created = b.create_time.unwrap().seconds;
    assert_eq!(b.expire_time.unwrap().seconds - created, 3600);
    assert_local_equals_sim(&d, "rides", "k-axb").await;

    let got = d.get(&b.binding_id).await;
    assert_eq!(got, b);
    let by_party = c
        .list_bindings(pb::ListBindingsRequest {
            party: party(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_party.bindings, std::slice::from_ref(&b));

    let released = d.unbind_ok(&b.binding_id).await;
    assert_eq!(released.state(), pb::BindingState::Released);
    assert!(d.sim.bindings("k-axb").await.is_empty());
    // Unbinding again returns the released binding, changing nothing.
    let again = d.unbind_ok(&b.binding_id).await;
    assert_eq!(again.state(), pb::BindingState::Released);
    d.stop().await;
}

#[tokio::test]
async fn axb_spreads_load_and_keeps_parties_unique_per_x() {
    let d = Daemon::start().await;
    let in_010 = |a: u32, b: u32| in_area("rides", &party(a), Some(&party(b)), "010");
    // Two Xs in 010: the first two bindings land on different Xs (least-loaded first).
    let one = d.bind_ok(in_010(1, 2)).await;
    let two = d.bind_ok(in_010(3, 4)).await;
    assert_ne!(one.x_number, two.x_number);
    // The same pair again cannot go on the X that already holds it: the other 010 X takes it.
    let three = d.bind_ok(in_010(1, 2)).await;
    assert_ne!(three.x_number, one.x_number);
    assert_eq!(three.area_code, "010");
    // A third time: both 010 Xs hold the pair, so the configured fallback area 021 serves.
    let four = d.bind_ok(in_010(1, 2)).await;
    assert_eq!(four.area_code, "021");
    assert!(
        four.selection_reason.contains("fallback area 021"),
        "{}",
        four.selection_reason
    );
    // A fourth: 010 and 021 are used up for this pair; 0755 only with any_area.
    let err = d.bind_refused(in_010(1, 2), Code::ResourceExhausted).await;
    assert!(
        err.message().contains("010, 021") && err.message().contains("1 free in other areas"),
        "{}",
        err.message()
    );
    let mut anywhere = in_010(1, 2);
    anywhere.any_area = true;
    let five = d.bind_ok(anywhere).await;
    assert_eq!(five.area_code, "0755");
    assert!(
        five.selection_reason.contains("any area"),
        "{}",
        five.selection_reason
    );
    stop_in_step(d, "rides", "k-axb").await;
}

#[tokio::test]
async fn repeated_request_ids_return_the_same_binding() {
    let d = Daemon::start().await;
    let mut req = bind("rides", &party(1), Some(&party(2)));
    req.request_id = "order-7".into();
    // Twenty concurrent copies, then one more after they finished.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = d.bindings().await;
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            c.bind(req).await.map(|r| r.into_inner())
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().unwrap().binding_id);
    }
    let later = d.bind_ok(req.clone()).await;
    ids.insert(later.binding_id.clone());
    assert_eq!(ids.len(), 1, "one binding for one request_id: {ids:?}");
    assert_eq!(d.sim.bindings("k-axb").await.len(), 1);
    assert_eq!(
        d.sim.stats("k-axb").await["by_code"]["0"],
        1,
        "one platform bind"
    );
    // Found by request id too; another pair under the same id is refused.
    let got = d.get_by_request("rides", "order-7").await;
    assert_eq!(got.binding_id, later.binding_id);
    let mut other = bind("rides", &party(3), Some(&party(4)));
    other.request_id = "order-7".into();
    d.bind_refused(other, Code::FailedPrecondition).await;
    d.stop().await;
}

#[tokio::test]
async fn ax_numbers_cool_down_before_reuse() {
    let (d, mut c) = Daemon::start_with_client().await;
    let in_021 = |a: u32| pb::BindRequest {
        area_code: "021".into(),
        ..bind("drivers", &party(a), None)
    };
    let b = d.bind_ok(in_021(1)).await;
    assert_eq!(b.x_number, "+8617100000003");
    assert!(
        b.selection_reason.contains("longest-free"),
        "{}",
        b.selection_reason
    );
    // 021's only X is taken; strictly in 021 there is nothing.
    d.bind_refused(in_021(2), Code::ResourceExhausted).await;
    c.unbind(pb::UnbindRequest::by_id(b.binding_id))
        .await
        .unwrap();
    // Released, but cooling down for 60 s.
    let err = c.bind(in_021(2)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let stats = d.pool_stats("drivers").await;
    let a021 = stats.areas.iter().find(|a| a.area_code == "021").unwrap();
    assert_eq!((a021.total, a021.free, a021.cooling_down), (1, 0, 1));
    d.clock.advance(60_000);
    let again = d.bind_ok(in_021(2)).await;
    assert_eq!(again.x_number, "+8617100000003");
    stop_in_step(d, "drivers", "k-ax").await;
}

#[tokio::test]
async fn ax_one_a_holds_at_most_five_numbers() {
    let d = Daemon::start().await;
    // Three more numbers, on the platform and in the pool: six in all.
    let extra: Vec<String> = (4..=6).map(|i| format!("+861710000000{i}")).collect();
    let add: Vec<_> = extra
        .iter()
        .map(|n| serde_json::json!({"number": n, "area_code": "0755"}))
        .collect();
    d.sim
        .control_post(
            "/sim/numbers",
            serde_json::json!({"app_key": "k-ax", "add": add}),
        )
        .await;
    let numbers = extra
        .iter()
        .map(|n| pb::NumberSpec {
            number: n.clone(),
            area_code: "0755".into(),
        })
        .collect();
    d.pool()
        .await
        .add_numbers(pb::AddNumbersRequest {
            app: "drivers".into(),
            numbers,
        })
        .await
        .unwrap();

    let mut c = d.bindings().await;
    let mut any = bind("drivers", &party(1), None);
    any.any_area = true;
    for _ in 0..5 {
        c.bind(any.clone()).await.unwrap();
    }
    let err = c.bind(any).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("already holds 5"),
        "{}",
        err.message()
    );
    // Another A still gets the sixth number.
    let mut other = bind("drivers", &party(2), None);
    other.any_area = true;
    c.bind(other).await.unwrap();
    stop_in_step(d, "drivers", "k-ax").await;
}

#[tokio::test]
async fn axe_extensions_and_pins() {
    let (d, mut c) = Daemon::start_with_client().await;
    let b = d.bind_ok(bind("stores", &party(1), None)).await;
    assert_eq!(b.extension, "01");
    assert!(
        b.selection_reason.contains("never-used extension"),
        "{}",
        b.selection_reason
    );
    // The same A goes to the other X; a pinned extension is honoured.
    let other = d.bind_ok(bind("stores", &party(1), None)).await;
    assert_ne!(other.x_number, b.x_number);
    let mut pinned = bind("stores", &party(2), None);
    pinned.x_number = b.x_number.clone();
    pinned.extension = "42".into();
    let p = d.bind_ok(pinned.clone()).await;
    assert_eq!(
        (p.x_number.as_str(), p.extension.as_str()),
        (b.x_number.as_str(), "42")
    );
    pinned.party_a = party(3);
    assert_eq!(
        c.bind(pinned.clone()).await.unwrap_err().code(),
        Code::FailedPrecondition,
        "42 is taken"
    );
    // A released extension cools down before the same X+E is handed out again.
    c.unbind(pb::UnbindRequest::by_id(p.binding_id))
        .await
        .unwrap();
    let err = c.bind(pinned.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("cooling"), "{}", err.message());
    d.clock.advance(60_000);
    c.bind(pinned).await.unwrap();
    stop_in_step(d, "stores", "k-axe").await;
}

#[tokio::test]
async fn axyb_binds_both_steps_and_records_the_platforms_choice() {
    let (d, mut c) = Daemon::start_with_client().await;
    let mut req = in_area("chat", &party(1), Some(&party(2)), "021");
    req.ttl = xpool::grpc::ttl(7200);
    let b = d.bind_ok(req).await;
    assert_eq!(b.area_code, "021");
    assert!(["+8617300000003", "+8617300000004"].contains(&b.x_number.as_str()));
    assert!(!b.y_number.is_empty() && b.y_number != b.x_number);
    assert_local_equals_sim(&d, "chat", "k-axyb").await;
    c.unbind(pb::UnbindRequest::by_id(b.binding_id))
        .await
        .unwrap();
    assert!(d.sim.bindings("k-axyb").await.is_empty());
    d.stop().await;
}

#[tokio::test]
async fn x_mode_is_local_and_keeps_parties_unique() {
    let (d, mut c) = Daemon::start_with_client().await;
    let req = in_area("local", &party(1), Some(&party(2)), "010");
    let b = d.bind_ok(req.clone()).await;
    assert_eq!(b.mode(), pb::Mode::X);
    assert!(b.subscription_id.is_empty());
    // The same pair cannot sit twice on 010's single X; there is no fallback for this app.
    d.bind_refused(req, Code::ResourceExhausted).await;
    // Two bindings fill an X (max_bindings_per_x = 2).
    let mut second = in_area("local", &party(3), Some(&party(4)), "010");
    c.bind(second.clone()).await.unwrap();
    second.party_a = party(5);
    second.party_b = party(6);
    d.bind_refused(second, Code::ResourceExhausted).await;
    d.stop().await;
}

#[tokio::test]
async fn bindings_survive_a_restart_and_slots_stay_taken() {
    let d = Daemon::start().await;
    let req = in_area("drivers", &party(1), None, "021");
    let b = d.bind_ok(req).await;
    let d = d.restart().await;
    let mut c = d.bindings().await;
    let got = d.get(&b.binding_id).await;
    assert_eq!(got, b);
    let again = in_area("drivers", &party(2), None, "021");
    assert_eq!(
        c.bind(again).await.unwrap_err().code(),
        Code::ResourceExhausted,
        "021's X is still bound"
    );
    d.stop().await;
}

#[tokio::test]
async fn pool_admin_adds_drains_and_removes_numbers() {
    let d = Daemon::start().await;
    let mut p = d.pool().await;
    let added = p
        .add_numbers(pb::AddNumbersRequest {
            app: "local".into(),
            numbers: vec![pb::NumberSpec {
                number: "+8617400000009".into(),
                area_code: "0571".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added.len(), 1);
    let mut c = d.bindings().await;
    let mut req = in_area("local", &party(1), Some(&party(2)), "0571");
    let b = d.bind_ok(req.clone()).await;
    assert_eq!(b.x_number, "+8617400000009");
    // Draining keeps the binding but stops new ones; removal waits for the last binding.
    p.drain_numbers(pb::DrainNumbersRequest {
        app: "local".into(),
        numbers: vec!["+8617400000009".into()],
    })
    .await
    .unwrap();
    req.party_a = party(3);
    req.party_b = party(4);
    d.bind_refused(req, Code::ResourceExhausted).await;
    let remove = pb::RemoveNumbersRequest {
        app: "local".into(),
        numbers: vec!["+8617400000009".into()],
    };
    assert_eq!(
        p.remove_numbers(remove.clone()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    c.unbind(pb::UnbindRequest::by_id(b.binding_id))
        .await
        .unwrap();
    assert_eq!(
        p.remove_numbers(remove).await.unwrap().into_inner().removed,
        1
    );
    let listed = p
        .list_numbers(pb::ListNumbersRequest {
            app: "local".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.numbers.len(), 2, "{listed:?}");
    // Added numbers persist across a restart.
    let d = d.restart().await;
    let stats = d.pool_stats("local").await;
    assert_eq!(stats.areas.iter().map(|a| a.total).sum::<i32>(), 2);
    d.stop().await;
}
