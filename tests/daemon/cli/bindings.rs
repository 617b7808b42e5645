//! `xpool bindings`: a binding made over gRPC listed, shown and unbound.

use serde_json::Value;
use xpool::grpc::pb;

use super::xpool;
use crate::support::*;

#[tokio::test]
async fn bindings_made_over_grpc_are_listed_shown_and_unbound() {
    let d = Daemon::start_with(Setup::standard().only(&["rides"])).await;
    let made = d
        .bind_ok(pb::BindRequest {
            request_id: "ride-1".into(),
            ttl: xpool::grpc::ttl(3600),
            ..in_area("rides", &party(1), Some(&party(2)), "010")
        })
        .await;
    let other = d.bind_ok(bind("rides", &party(3), Some(&party(4)))).await;

    let listed = xpool(&d.addr, None, &["bindings", "list", "--app", "rides"]).await;
    let rows = listed.exits(0).rows();
    assert_eq!(rows.len(), 2, "{listed:?}");
    let row = rows.iter().find(|r| r[0] == made.binding_id).unwrap();
    let (a, b) = (party(1), party(2));
    assert_eq!(
        row[..8],
        [
            &made.binding_id,
            "rides",
            "active",
            &made.x_number,
            "-",
            &a,
            &b,
            "010"
        ]
    );
    let (expires, want) = (row[8], made.expire_time.unwrap().seconds);
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339);
    assert_eq!(expires.unwrap().unix_timestamp(), want, "{row:?}");

    // Filters reach the daemon: by party, by state, and --limit.
    let by_party = xpool(&d.addr, None, &["bindings", "list", "--party", &party(4)]).await;
    let rows = by_party.exits(0).rows();
    assert_eq!(rows.len(), 1, "{by_party:?}");
    assert_eq!(rows[0][0], other.binding_id);
    let released = ["bindings", "list", "--app", "rides", "--state", "released"];
    assert_eq!(
        xpool(&d.addr, None, &released).await.exits(0).rows().len(),
        0
    );
    let limited = [
        "bindings", "list", "--app", "rides", "--limit", "1", "--output", "json",
    ];
    let limited = xpool(&d.addr, None, &limited).await.exits(0).json();
    assert_eq!(
        limited["bindings"].as_array().unwrap().len(),
        1,
        "{limited}"
    );

    // get, by id and by request id; --output json is the Binding as the API has it.
    let shown = xpool(&d.addr, None, &["bindings", "get", &made.binding_id]).await;
    let shown = &shown.exits(0).stdout;
    for line in [
        format!("binding       {}", made.binding_id),
        "state         active".to_owned(),
        format!("x number      {}", made.x_number),
        "request id    ride-1".to_owned(),
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} in\n{shown}");
    }
    let by_request = [
        "bindings",
        "get",
        "--app",
        "rides",
        "--request-id",
        "ride-1",
    ];
    let json = xpool(
        &d.addr,
        None,
        &[&by_request[..], &["--output", "json"]].concat(),
    )
    .await
    .exits(0)
    .json();
    assert_eq!(json["bindingId"], made.binding_id.as_str(), "{json}");
    assert_eq!(json["state"], "BINDING_STATE_ACTIVE");
    assert_eq!(json["mode"], "MODE_AXB");
    assert_eq!(
        (json["partyA"].as_str(), json["partyB"].as_str()),
        (Some(&*a), Some(&*b))
    );
    assert_eq!(json["xNumber"], made.x_number.as_str());
    assert_eq!(json["requestId"], "ride-1");
    assert_eq!(json["releaseTime"], Value::Null);
    assert_eq!(
        json["callOptions"]["callDirection"], "CALL_DIRECTION_BOTH",
        "{json}"
    );
    let created = made.create_time.unwrap();
    let created = time::OffsetDateTime::from_unix_timestamp(created.seconds).unwrap();
    let shown_created = json["createTime"].as_str().unwrap();
    assert!(shown_created.ends_with('Z'), "{json}");
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let shown_created = time::OffsetDateTime::parse(shown_created, rfc3339).unwrap();
    assert_eq!(shown_created.unix_timestamp(), created.unix_timestamp());

    // unbind: released through the API, and shown so.
    let unbound = xpool(&d.addr, None, &["bindings", "unbind", &made.binding_id]).await;
    assert!(
        unbound.exits(0).stdout.contains("state         released"),
        "{unbound:?}"
    );
    assert_eq!(d.state(&made.binding_id).await, pb::BindingState::Released);
    assert_eq!(d.state(&other.binding_id).await, pb::BindingState::Active);
    let released = xpool(&d.addr, None, &released).await;
    assert_eq!(released.exits(0).rows()[0][0], made.binding_id);

    // An unknown binding is the daemon's refusal (1); no binding named, the command line's (2).
    let unknown = xpool(
        &d.addr,
        None,
        &["bindings", "get", "01900000-0000-7000-8000-000000000000"],
    )
    .await;
    assert!(
        unknown.exits(1).stderr.contains("NOT_FOUND: "),
        "{unknown:?}"
    );
    assert!(
        unknown.stderr.contains("reason: BINDING_NOT_FOUND"),
        "{unknown:?}"
    );
    xpool(&d.addr, None, &["bindings", "get"]).await.exits(2);
    d.stop().await;
}
