//! Huge values come back as a readable status.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

/// Huge values (past the 16 KiB header list a tonic/hyper client accepts) must still come back
/// as a readable status, not a protocol error that kills the connection: the daemon's messages
/// must not echo unbounded input into `grpc-message`.
#[tokio::test]
async fn huge_values_are_refused_with_a_readable_status() {
    let d = Daemon::start().await;
    let huge = "9".repeat(70_000);
    let before = snapshot(&d).await;
    let mut failures = Vec::new();
    let mut note = |case: &str, result: Result<(), Status>, code: Code| match result {
        Err(s) if s.code() == code && std::error::Error::source(&s).is_none() => {}
        other => failures.push(format!("{case}: {:.300}", format!("{other:?}"))),
    };
    let mut c = d.bindings().await;
    let cases: Vec<(&str, pb::BindRequest)> = vec![
        ("Bind, huge app", with(axb(), |r| r.app = huge.clone())),
        (
            "Bind, huge party_a",
            with(axb(), |r| r.party_a = huge.clone()),
        ),
        (
            "Bind, huge party_b",
            with(axb(), |r| r.party_b = huge.clone()),
        ),
        (
            "Bind, huge area_code",
            with(axb(), |r| r.area_code = huge.clone()),
        ),
        (
            "Bind, huge x_number",
            with(axb(), |r| r.x_number = huge.clone()),
        ),
        (
            "Bind, huge request_id",
            with(axb(), |r| r.request_id = huge.clone()),
        ),
        (
            "Bind, huge user_data",
            with(axb(), |r| r.user_data = huge.clone()),
        ),
        (
            "Bind, huge extension",
            with(axe(), |r| r.extension = huge.clone()),
        ),
    ];
    for (case, req) in cases {
        // A fresh connection each time: a GOAWAY on one must not hide the next case.
        let mut c = d.bindings().await;
        note(case, c.bind(req).await.map(|_| ()), Code::InvalidArgument);
    }
    let get = |binding_id: &str, request_id: &str, app: &str| pb::GetBindingRequest {
        binding_id: binding_id.into(),
        request_id: request_id.into(),
        app: app.into(),
    };
    for (case, req, code) in [
        (
            "GetBinding, huge binding_id",
            get(&huge, "", ""),
            Code::InvalidArgument,
        ),
        (
            "GetBinding, huge app",
            get("", "r-1", &huge),
            Code::InvalidArgument,
        ),
        (
            "GetBinding, huge request_id",
            get("", &huge, "rides"),
            Code::NotFound,
        ),
    ] {
        let mut c = d.bindings().await;
        note(case, c.get_binding(req.clone()).await.map(|_| ()), code);
        let mut c = d.bindings().await;
        let pb::GetBindingRequest {
            binding_id,
            request_id,
            app,
        } = req;
        note(
            &case.replace("GetBinding", "Unbind"),
            c.unbind(pb::UnbindRequest {
                binding_id,
                request_id,
                app,
            })
            .await
            .map(|_| ()),
            code,
        );
    }
    note(
        "ListBindings, huge app",
        c.list_bindings(pb::ListBindingsRequest {
            app: huge.clone(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        Code::InvalidArgument,
    );
    let mut p = d.pool().await;
    note(
        "GetPoolStats, huge app",
        p.get_pool_stats(pb::GetPoolStatsRequest { app: huge.clone() })
            .await
            .map(|_| ()),
        Code::InvalidArgument,
    );
    let mut p = d.pool().await;
    note(
        "AddNumbers, huge number",
        p.add_numbers(pb::AddNumbersRequest {
            app: "rides".into(),
            numbers: vec![pb::NumberSpec {
                number: huge.clone(),
                area_code: "010".into(),
            }],
        })
        .await
        .map(|_| ()),
        Code::InvalidArgument,
    );
    assert_unchanged(&d, &before, "huge values").await;
    assert!(
        failures.is_empty(),
        "{} of the huge requests did not come back as a readable status:\n{}",
        failures.len(),
        failures.join("\n")
    );
    d.stop().await;
}
