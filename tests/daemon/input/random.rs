//! Random requests never crash the daemon.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

const X_NUMBERS: [&str; 6] = [
    "+8617000000001",
    "+8617100000001",
    "+8617200000001",
    "+8617300000001",
    "+8617400000001",
    "+8617999999999",
];

fn text() -> BoxedStrategy<String> {
    text_unboxed().boxed()
}

fn text_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => any::<String>(),
        2 => "\\PC{0,40}",
        1 => "[ -~]{0,300}",
        3 => "\\+86[0-9]{6,14}",
        1 => "[+0-9]{0,18}",
        // Long, but not so long that an echo of it overflows the client's 16 KiB header
        // limit: that is its own test (`huge_values_are_refused_with_a_readable_status`).
        1 => (1_000usize..4_000).prop_map(|n| "9".repeat(n)),
        1 => "[\u{4e00}-\u{9fff}{}]{1,300}",
    ]
}

fn app_name() -> BoxedStrategy<String> {
    app_name_unboxed().boxed()
}

fn app_name_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(APPS.to_vec()).prop_map(String::from),
        1 => text(),
    ]
}

fn party_text() -> BoxedStrategy<String> {
    party_text_unboxed().boxed()
}

fn party_text_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..6).prop_map(party),
        2 => text(),
    ]
}

fn bind_request() -> BoxedStrategy<pb::BindRequest> {
    bind_request_unboxed().boxed()
}

fn bind_request_unboxed() -> impl Strategy<Value = pb::BindRequest> {
    let numbers = (
        app_name(),
        party_text(),
        party_text(),
        prop_oneof![3 => Just(String::new()), 2 => prop::sample::select(vec!["010", "021", "0755", "999"]).prop_map(String::from), 1 => text()],
        any::<bool>(),
        ttl(),
        prop_oneof![3 => Just(String::new()), 1 => "[a-z0-9-]{1,8}", 1 => text()],
    );
    let rest = (
        prop_oneof![3 => Just(String::new()), 2 => prop::sample::select(X_NUMBERS.to_vec()).prop_map(String::from), 1 => text()],
        prop_oneof![3 => Just(String::new()), 2 => "[0-9]{0,5}", 1 => text()],
        prop_oneof![-2i32..6, any::<i32>()],
        prop::option::of(any::<bool>()),
        prop::option::of(prop_oneof![-2i32..1500, any::<i32>()]),
        prop_oneof![2 => Just(String::new()), 1 => text(), 1 => "[ -z|~]{1,260}"],
    );
    (numbers, rest).prop_map(
        |(
            (app, party_a, party_b, area_code, any_area, ttl, request_id),
            (x_number, extension, call_direction, record, max_call_minutes, user_data),
        )| pb::BindRequest {
            app,
            party_a,
            party_b,
            area_code,
            any_area,
            ttl,
            request_id,
            x_number,
            extension,
            user_data,
            call_options: Some(pb::CallOptions {
                call_direction,
                record,
                max_call_minutes,
                ..Default::default()
            }),
        },
    )
}

/// A Bind that is valid, or nearly: the app's own mode rules, a few parties, request ids that
/// repeat (idempotency), pins into the app's pool, and now and then one field from
/// [`bind_request`].
fn plausible_bind() -> BoxedStrategy<pb::BindRequest> {
    plausible_bind_unboxed().boxed()
}

fn plausible_bind_unboxed() -> impl Strategy<Value = pb::BindRequest> {
    let base = (
        0usize..APPS.len(),
        0u32..6,
        0u32..6,
        prop_oneof![Just(""), Just("010"), Just("021"), Just("0755")],
        any::<bool>(),
        prop_oneof![
            Just(0u64),
            (1u64..120).prop_map(|m| m * 60),
            Just(7_776_000u64)
        ],
        prop_oneof![2 => Just(String::new()), 1 => (0u8..4).prop_map(|i| format!("r{i}"))],
        prop::option::weighted(0.2, 0usize..4),
    );
    let extra = (
        prop::option::weighted(0.2, 1u8..100),
        0i32..4,
        prop_oneof![3 => Just(None), 1 => (0i32..=1440).prop_map(Some)],
        prop_oneof![3 => Just(String::new()), 1 => "[a-z0-9-]{1,16}"],
        prop::option::weighted(0.25, (0usize..13, bind_request())),
    );
    (base, extra).prop_map(
        |(
            (app, a, b, area, any_area, ttl_seconds, request_id, pin),
            (ext, call_direction, max_call_minutes, user_data, swap),
        )| {
            let app = APPS[app];
            let pool: &[&str] = match app {
                "rides" => &[
                    "+8617000000001",
                    "+8617000000002",
                    "+8617000000003",
                    "+8617000000004",
                ],
                "drivers" => &["+8617100000001", "+8617100000002", "+8617100000003"],
                "stores" => &["+8617200000001", "+8617200000002"],
                _ => &["+8617400000001", "+8617400000002"],
            };
            let needs_b = matches!(app, "rides" | "chat" | "local");
            let mut r = pb::BindRequest {
                app: app.into(),
                party_a: party(a),
                party_b: if needs_b && a != b {
                    party(b)
                } else if needs_b {
                    party(b + 6)
                } else {
                    String::new()
                },
                area_code: area.into(),
                any_area,
                ttl: xpool::grpc::ttl(ttl_seconds),
                request_id,
                x_number: match pin {
                    Some(i) if app != "chat" => pool[i % pool.len()].into(),
                    _ => String::new(),
                },
                extension: String::new(),
                user_data,
                call_options: Some(pb::CallOptions {
                    call_direction,
                    max_call_minutes,
                    ..Default::default()
                }),
            };
            if app == "stores" && !r.x_number.is_empty() {
                r.extension = ext.map(|e| format!("{e:02}")).unwrap_or_default();
            }
            if let Some((field, random)) = swap {
                match field {
                    0 => r.app = random.app,
                    1 => r.party_a = random.party_a,
                    2 => r.party_b = random.party_b,
                    3 => r.area_code = random.area_code,
                    4 => r.ttl = random.ttl,
                    5 => r.request_id = random.request_id,
                    6 => r.x_number = random.x_number,
                    7 => r.extension = random.extension,
                    8..=10 => r.call_options = random.call_options,
                    11 => r.user_data = random.user_data,
                    _ => r.any_area = random.any_area,
                }
            }
            r
        },
    )
}

fn ttl() -> BoxedStrategy<Option<prost_types::Duration>> {
    ttl_unboxed().boxed()
}

fn ttl_unboxed() -> impl Strategy<Value = Option<prost_types::Duration>> {
    let seconds = prop_oneof![
        any::<i64>(),
        -2i64..8_000_000,
        (0i64..3).prop_map(|m| m * 60),
        Just(7_776_000i64)
    ];
    let nanos = prop_oneof![4 => Just(0i32), 1 => any::<i32>()];
    prop_oneof![
        1 => Just(None),
        4 => (seconds, nanos).prop_map(|(seconds, nanos)| Some(prost_types::Duration { seconds, nanos })),
    ]
}

/// Which way a random Unbind or Get names its binding (neither, when both are empty).
enum Key {
    Id(String),
    Request(String),
}

fn key(binding_id: String, request_id: String) -> Option<Key> {
    match (binding_id.is_empty(), request_id.is_empty()) {
        (true, true) => None,
        (false, _) => Some(Key::Id(binding_id)),
        (true, false) => Some(Key::Request(request_id)),
    }
}

fn binding_id() -> BoxedStrategy<String> {
    binding_id_unboxed().boxed()
}

fn binding_id_unboxed() -> impl Strategy<Value = String> {
    prop_oneof![any::<u128>().prop_map(uuid_text), text(),]
}

fn uuid_text(n: u128) -> String {
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[derive(Debug, Clone)]
enum Call {
    Bind(pb::BindRequest),
    Unbind(pb::UnbindRequest),
    Get(pb::GetBindingRequest),
    List(pb::ListBindingsRequest),
    Update(pb::UpdateBindingRequest),
    /// A new lifetime for the k-th binding made so far.
    KnownUpdate {
        k: usize,
        ttl: Option<prost_types::Duration>,
    },
    /// Unbind or look up the k-th binding made so far (by id or by request id).
    Known {
        k: usize,
        unbind: bool,
        by_request: bool,
    },
}

fn call() -> BoxedStrategy<Call> {
    call_unboxed().boxed()
}

fn call_unboxed() -> impl Strategy<Value = Call> {
    prop_oneof![
        3 => bind_request().prop_map(Call::Bind),
        5 => plausible_bind().prop_map(Call::Bind),
        2 => (binding_id(), text(), app_name()).prop_map(|(binding_id, request_id, app)| Call::Unbind(pb::UnbindRequest { binding: key(binding_id, request_id).map(|k| match k { Key::Id(id) => pb::unbind_request::Binding::BindingId(id), Key::Request(r) => pb::unbind_request::Binding::RequestId(r) }), app })),
        2 => (binding_id(), text(), app_name()).prop_map(|(binding_id, request_id, app)| Call::Get(pb::GetBindingRequest { binding: key(binding_id, request_id).map(|k| match k { Key::Id(id) => pb::get_binding_request::Binding::BindingId(id), Key::Request(r) => pb::get_binding_request::Binding::RequestId(r) }), app })),
        2 => (app_name(), party_text(), text(), prop_oneof![-1i32..7, any::<i32>()], prop_oneof![-1i32..5, any::<i32>()], prop_oneof![3 => Just(String::new()), 1 => binding_id(), 1 => text()])
            .prop_map(|(app, party, x_number, state, page_size, page_token)| Call::List(pb::ListBindingsRequest { app, party, x_number, state, page_size, page_token })),
        2 => (0usize..8, any::<bool>(), any::<bool>()).prop_map(|(k, unbind, by_request)| Call::Known { k, unbind, by_request }),
        1 => (binding_id(), ttl()).prop_map(|(binding_id, ttl)| Call::Update(pb::UpdateBindingRequest { binding_id, ttl, ..Default::default() })),
        2 => (0usize..8, ttl()).prop_map(|(k, ttl)| Call::KnownUpdate { k, ttl }),
    ]
}

/// A status the daemon may answer: not a crash (transport error), not an internal error.
fn check_status(what: &str, status: &Status) {
    let transport = std::error::Error::source(status)
        .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some());
    assert!(
        !transport,
        "{what}: transport error (did the daemon panic?): {status:?}"
    );
    assert!(
        !matches!(
            status.code(),
            Code::Internal | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
        ),
        "{what}: {status:?}"
    );
    if status.code() == Code::Unavailable {
        assert!(
            status.message().contains("retry after"),
            "{what}: not the daemon's UNAVAILABLE: {status:?}"
        );
    }
    if status.code() == Code::InvalidArgument {
        let field = status.message().split(':').next().unwrap_or_default();
        assert!(
            !field.is_empty()
                && field
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.[]".contains(&b)),
            "{what}: INVALID_ARGUMENT without a field: {status:?}"
        );
    }
}

async fn random_calls(d: &Daemon, calls: &[Call]) {
    let mut c = d.bindings().await;
    let mut made: Vec<pb::Binding> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let what = format!("call {i}");
        let result = match call.clone() {
            Call::Bind(req) => {
                let before = sim_requests(d).await;
                let r = c.bind(req.clone()).await;
                match &r {
                    Ok(b) => made.push(b.get_ref().clone()),
                    Err(e) if e.code() == Code::InvalidArgument => {
                        // Refused input never reaches the platform.
                        assert_eq!(
                            sim_requests(d).await,
                            before,
                            "{what}: a Bind refused with {e:?} reached the platform: {req:?}"
                        );
                    }
                    Err(_) => {}
                }
                r.map(|_| ())
            }
            Call::Unbind(req) => c.unbind(req).await.map(|_| ()),
            Call::Get(req) => c.get_binding(req).await.map(|_| ()),
            Call::List(req) => c.list_bindings(req).await.map(|_| ()),
            Call::Update(req) => c.update_binding(req).await.map(|_| ()),
            Call::KnownUpdate { k, ttl } => {
                let Some(b) = (!made.is_empty()).then(|| made[k % made.len()].clone()) else {
                    continue;
                };
                c.update_binding(pb::UpdateBindingRequest {
                    binding_id: b.binding_id,
                    ttl,
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
            Call::Known {
                k,
                unbind,
                by_request,
            } => {
                let Some(b) = (!made.is_empty()).then(|| made[k % made.len()].clone()) else {
                    continue;
                };
                let by_request = by_request && !b.request_id.is_empty();
                if unbind {
                    let req = if by_request {
                        pb::UnbindRequest::by_request(&b.app, &b.request_id)
                    } else {
                        pb::UnbindRequest::by_id(&b.binding_id)
                    };
                    c.unbind(req).await.map(|_| ())
                } else {
                    let req = if by_request {
                        pb::GetBindingRequest::by_request(&b.app, &b.request_id)
                    } else {
                        pb::GetBindingRequest::by_id(&b.binding_id)
                    };
                    let got = c.get_binding(req).await;
                    if let Ok(g) = &got {
                        assert_eq!(g.get_ref().binding_id, b.binding_id, "{what}");
                    }
                    got.map(|_| ())
                }
            }
        };
        if let Err(status) = result {
            check_status(&format!("{what} {call:?}"), &status);
        }
    }
    // Still serving: a valid Bind on a fresh connection, with parties no random call used.
    let mut fresh = d.bindings().await;
    let mut ok = bind("rides", "+8615000000001", Some("+8615000000002"));
    ok.any_area = true;
    let b = fresh
        .bind(ok)
        .await
        .expect("a valid Bind after random calls");
    assert_eq!(b.get_ref().state(), pb::BindingState::Active);
    // Nothing was left half-written.
    let pending = d.list("", pb::BindingState::Pending).await;
    assert!(
        pending.is_empty(),
        "PENDING bindings after random calls: {pending:?}"
    );
}

proptest! {
    #![proptest_config(server_proptest_config())]

    #[test]
    fn random_requests_never_crash_the_daemon(calls in prop::collection::vec(call(), 1..24)) {
        block_on(Daemon::run(async |d| Box::pin(random_calls(d, &calls)).await));
    }
}
