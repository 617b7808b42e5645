//! Unbind and GetBinding with bad or unknown ids.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

#[tokio::test]
async fn bad_unbind_and_get_binding_are_refused_and_change_nothing() {
    let (d, mut c) = Daemon::start_with_client().await;
    let live = c
        .bind(with(axb(), |r| r.request_id = "order-1".into()))
        .await
        .unwrap()
        .into_inner();
    let before = snapshot(&d).await;
    assert_eq!(before.local.len(), 1);
    assert_eq!(before.sim_bindings[0].len(), 1);

    let unknown_id = "0190a3c4-0000-7000-8000-000000000000";
    type Key = (&'static str, String, String, String, Code, &'static str);
    let cases: Vec<Key> = vec![
        (
            "neither id",
            "".into(),
            "".into(),
            "".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "neither id, app only",
            "".into(),
            "".into(),
            "rides".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "both ids",
            live.binding_id.clone(),
            "order-1".into(),
            "rides".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "malformed binding_id",
            "not-a-binding".into(),
            "".into(),
            "".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "binding_id with a trailing char",
            format!("{}x", live.binding_id),
            "".into(),
            "".into(),
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "request_id without app",
            "".into(),
            "order-1".into(),
            "".into(),
            Code::InvalidArgument,
            "app",
        ),
    ];
    for (case, binding_id, request_id, app, code, field) in cases {
        let unbind = c
            .unbind(pb::UnbindRequest {
                binding_id: binding_id.clone(),
                request_id: request_id.clone(),
                app: app.clone(),
            })
            .await;
        assert_rejected(unbind, code, field, &format!("Unbind, {case}"));
        assert_unchanged(&d, &before, &format!("Unbind, {case}")).await;
        let get = c
            .get_binding(pb::GetBindingRequest {
                binding_id,
                request_id,
                app,
            })
            .await;
        assert_rejected(get, code, field, &format!("GetBinding, {case}"));
    }

    // An unknown app: NOT_FOUND, naming it.
    let by_request = |app: &str| pb::GetBindingRequest {
        request_id: "order-1".into(),
        app: app.into(),
        ..Default::default()
    };
    let case = "request_id with an unknown app";
    assert_unknown_app(c.get_binding(by_request("nope")).await, "nope", case);
    let pb::GetBindingRequest {
        binding_id,
        request_id,
        app,
    } = by_request("nope");
    let unbind = pb::UnbindRequest {
        binding_id,
        request_id,
        app,
    };
    assert_unknown_app(c.unbind(unbind).await, "nope", case);
    assert_unchanged(&d, &before, case).await;

    // Well-formed but unknown: NOT_FOUND, naming what was looked up.
    let not_found: Vec<(&str, pb::UnbindRequest)> = vec![
        (
            "unknown binding_id",
            pb::UnbindRequest {
                binding_id: unknown_id.into(),
                ..Default::default()
            },
        ),
        (
            "unknown request_id",
            pb::UnbindRequest {
                request_id: "order-2".into(),
                app: "rides".into(),
                ..Default::default()
            },
        ),
        (
            "request_id of another app",
            pb::UnbindRequest {
                request_id: "order-1".into(),
                app: "drivers".into(),
                ..Default::default()
            },
        ),
    ];
    for (case, req) in not_found {
        let pb::UnbindRequest {
            binding_id,
            request_id,
            app,
        } = req.clone();
        let named: Vec<(&str, &str)> = if binding_id.is_empty() {
            vec![("app", app.as_str()), ("request_id", request_id.as_str())]
        } else {
            vec![("binding_id", binding_id.as_str())]
        };
        for (what, result) in [
            ("Unbind", c.unbind(req).await),
            (
                "GetBinding",
                c.get_binding(pb::GetBindingRequest {
                    binding_id: binding_id.clone(),
                    request_id: request_id.clone(),
                    app: app.clone(),
                })
                .await,
            ),
        ] {
            let err = result.expect_err(case);
            assert_eq!(err.code(), Code::NotFound, "{what}, {case}: {err:?}");
            assert_reason(&err, Code::NotFound, "BINDING_NOT_FOUND", &named);
            let named = if binding_id.is_empty() {
                "request_id"
            } else {
                unknown_id
            };
            assert!(
                err.message().contains(named),
                "{what}, {case}: {:?}",
                err.message()
            );
        }
        assert_unchanged(&d, &before, case).await;
    }

    // UpdateBinding: a malformed id, a lifetime past 90 days, an unknown id.
    let update = |binding_id: &str, ttl_seconds: u64| pb::UpdateBindingRequest {
        binding_id: binding_id.into(),
        ttl_seconds,
    };
    let cases = [
        ("UpdateBinding, no binding_id", update("", 60), "binding_id"),
        (
            "UpdateBinding, malformed binding_id",
            update("nope", 60),
            "binding_id",
        ),
        (
            "UpdateBinding, ttl over 90 days",
            update(&live.binding_id, 7_776_001),
            "ttl_seconds",
        ),
        (
            "UpdateBinding, ttl u64::MAX",
            update(&live.binding_id, u64::MAX),
            "ttl_seconds",
        ),
    ];
    for (case, req, field) in cases {
        assert_invalid(c.update_binding(req).await, field, case);
        assert_unchanged(&d, &before, case).await;
    }
    let err = c.update_binding(update(unknown_id, 60)).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "UpdateBinding, unknown id: {err:?}"
    );
    assert_reason(
        &err,
        Code::NotFound,
        "BINDING_NOT_FOUND",
        &[("binding_id", unknown_id)],
    );
    assert!(err.message().contains(unknown_id), "{err:?}");
    assert_unchanged(&d, &before, "UpdateBinding, unknown id").await;

    // The live binding is untouched and still found both ways.
    assert_eq!(d.get_by_request("rides", "order-1").await, live);
    stop_in_step(d, "rides", "k-axb").await;
}
