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
    // (case, binding id or request id, app, code, field)
    type Case = (&'static str, Option<Key>, &'static str, Code, &'static str);
    let cases: Vec<Case> = vec![
        ("neither id", None, "", Code::InvalidArgument, "binding_id"),
        (
            "neither id, app only",
            None,
            "rides",
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "empty request_id",
            Some(Key::Request(String::new())),
            "rides",
            Code::InvalidArgument,
            "request_id",
        ),
        (
            "malformed binding_id",
            Some(Key::Id("not-a-binding".into())),
            "",
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "binding_id with a trailing char",
            Some(Key::Id(format!("{}x", live.binding_id))),
            "",
            Code::InvalidArgument,
            "binding_id",
        ),
        (
            "request_id without app",
            Some(Key::Request("order-1".into())),
            "",
            Code::InvalidArgument,
            "app",
        ),
    ];
    for (case, key, app, code, field) in cases {
        let (unbind, get) = requests(key, app);
        let unbind = c.unbind(unbind).await;
        assert_rejected(unbind, code, field, &format!("Unbind, {case}"));
        assert_unchanged(&d, &before, &format!("Unbind, {case}")).await;
        let get = c.get_binding(get).await;
        assert_rejected(get, code, field, &format!("GetBinding, {case}"));
    }

    // An unknown app: NOT_FOUND, naming it.
    let case = "request_id with an unknown app";
    let (unbind, get) = requests(Some(Key::Request("order-1".into())), "nope");
    assert_unknown_app(c.get_binding(get).await, "nope", case);
    assert_unknown_app(c.unbind(unbind).await, "nope", case);
    assert_unchanged(&d, &before, case).await;

    // Well-formed but unknown: NOT_FOUND, naming what was looked up.
    let not_found = [
        ("unknown binding_id", Key::Id(unknown_id.into()), ""),
        (
            "unknown request_id",
            Key::Request("order-2".into()),
            "rides",
        ),
        (
            "request_id of another app",
            Key::Request("order-1".into()),
            "drivers",
        ),
    ];
    for (case, key, app) in not_found {
        let (details, named) = match &key {
            Key::Id(id) => (vec![("binding_id", id.clone())], unknown_id),
            Key::Request(r) => (
                vec![("app", app.to_owned()), ("request_id", r.clone())],
                "request_id",
            ),
        };
        let details: Vec<(&str, &str)> = details.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (unbind, get) = requests(Some(key), app);
        for (what, result) in [
            ("Unbind", c.unbind(unbind).await),
            ("GetBinding", c.get_binding(get).await),
        ] {
            let err = result.expect_err(case);
            assert_eq!(err.code(), Code::NotFound, "{what}, {case}: {err:?}");
            assert_reason(&err, Code::NotFound, "BINDING_NOT_FOUND", &details);
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
        ttl: xpool::grpc::ttl(ttl_seconds),
        ..Default::default()
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
            "ttl",
        ),
        (
            "UpdateBinding, ttl i64::MAX seconds",
            update(&live.binding_id, i64::MAX as u64),
            "ttl",
        ),
        (
            "UpdateBinding, nothing to update",
            update(&live.binding_id, 0),
            "update_mask",
        ),
        (
            "UpdateBinding, unknown path in update_mask",
            pb::UpdateBindingRequest {
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["party_a".into()],
                }),
                ..update(&live.binding_id, 60)
            },
            "update_mask",
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

/// How an Unbind or GetBinding names its binding.
enum Key {
    Id(String),
    Request(String),
}

/// An Unbind and a GetBinding naming the binding by `key` (nothing when `None`) and `app`.
fn requests(key: Option<Key>, app: &str) -> (pb::UnbindRequest, pb::GetBindingRequest) {
    use pb::{get_binding_request as get, unbind_request as unbind};
    let (u, g) = match key {
        None => (None, None),
        Some(Key::Id(id)) => (
            Some(unbind::Binding::BindingId(id.clone())),
            Some(get::Binding::BindingId(id)),
        ),
        Some(Key::Request(r)) => (
            Some(unbind::Binding::RequestId(r.clone())),
            Some(get::Binding::RequestId(r)),
        ),
    };
    (
        pb::UnbindRequest {
            binding: u,
            app: app.into(),
        },
        pb::GetBindingRequest {
            binding: g,
            app: app.into(),
        },
    )
}
