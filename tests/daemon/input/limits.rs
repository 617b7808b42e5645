//! Huge values come back as a readable status.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

/// Huge values (past the 16 KiB header list a tonic/hyper client accepts, within the 64 KiB
/// message limit) must still come back as a readable status, not a protocol error that kills the
/// connection: the daemon's messages must not echo unbounded input into `grpc-message`.
#[tokio::test]
async fn huge_values_are_refused_with_a_readable_status() {
    let d = Daemon::start().await;
    let huge = "9".repeat(40_000);
    let before = snapshot(&d).await;
    let mut failures = Vec::new();
    // The error a case got, if any, which must be `code` with no transport error behind it.
    let mut note = |case: &str, error: Option<Status>, code: Code| match error {
        Some(s) if s.code() == code && std::error::Error::source(&s).is_none() => {
            // The details, with their bounded metadata, arrive whole too.
            refusal(&s);
        }
        other => failures.push(format!("{case}: {:.300}", format!("{other:?}"))),
    };
    let mut c = d.bindings().await;
    // Each string field of a Bind request, on a request of a mode that takes it.
    type Base = fn() -> pb::BindRequest;
    type Field = fn(&mut pb::BindRequest) -> &mut String;
    let fields: [(&str, Base, Field); 8] = [
        ("app", axb, |r| &mut r.app),
        ("party_a", axb, |r| &mut r.party_a),
        ("party_b", axb, |r| &mut r.party_b),
        ("area_code", axb, |r| &mut r.area_code),
        ("x_number", axb, |r| &mut r.x_number),
        ("request_id", axb, |r| &mut r.request_id),
        ("user_data", axb, |r| &mut r.user_data),
        ("extension", axe, |r| &mut r.extension),
    ];
    for (field, base, value) in fields {
        let mut req = base();
        *value(&mut req) = huge.clone();
        // A fresh connection each time: a GOAWAY on one must not hide the next case.
        let mut c = d.bindings().await;
        let case = format!("Bind, huge {field}");
        // A huge app is a well-formed name no app has.
        let code = if field == "app" {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        note(&case, c.bind(req).await.err(), code);
    }
    for (case, by_request, a, b, code) in [
        (
            "GetBinding, huge binding_id",
            false,
            "",
            huge.as_str(),
            Code::InvalidArgument,
        ),
        (
            "GetBinding, huge app",
            true,
            huge.as_str(),
            "r-1",
            Code::NotFound,
        ),
        (
            "GetBinding, huge request_id",
            true,
            "rides",
            huge.as_str(),
            Code::NotFound,
        ),
    ] {
        let (get, unbind) = if by_request {
            (
                pb::GetBindingRequest::by_request(a, b),
                pb::UnbindRequest::by_request(a, b),
            )
        } else {
            (pb::GetBindingRequest::by_id(b), pb::UnbindRequest::by_id(b))
        };
        let mut c = d.bindings().await;
        note(case, c.get_binding(get).await.err(), code);
        let mut c = d.bindings().await;
        note(
            &case.replace("GetBinding", "Unbind"),
            c.unbind(unbind).await.err(),
            code,
        );
    }
    let list = pb::ListBindingsRequest {
        app: huge.clone(),
        ..Default::default()
    };
    let stats = pb::GetPoolStatsRequest { app: huge.clone() };
    let add = pb::AddNumbersRequest {
        app: "rides".into(),
        numbers: vec![pb::NumberSpec {
            number: huge.clone(),
            area_code: "010".into(),
        }],
    };
    // The pool calls each on a fresh connection too.
    for (case, error, code) in [
        (
            "ListBindings, huge app",
            c.list_bindings(list).await.err(),
            Code::NotFound,
        ),
        (
            "GetPoolStats, huge app",
            d.pool().await.get_pool_stats(stats).await.err(),
            Code::NotFound,
        ),
        (
            "AddNumbers, huge number",
            d.pool().await.add_numbers(add).await.err(),
            Code::InvalidArgument,
        ),
    ] {
        note(case, error, code);
    }
    assert_unchanged(&d, &before, "huge values").await;
    assert!(
        failures.is_empty(),
        "{} of the huge requests did not come back as a readable status:\n{}",
        failures.len(),
        failures.join("\n")
    );
    d.stop().await;
}
