//! ListBindings with bad filters and page tokens.

use tonic::Code;
use xpool::grpc::pb;

use super::*;

#[tokio::test]
async fn bad_list_bindings_requests_are_refused() {
    let d = Daemon::start().await;
    let mut c = d.bindings().await;
    c.bind(axb()).await.unwrap();
    let before = snapshot(&d).await;
    let cases: Vec<(&str, pb::ListBindingsRequest, &str)> = vec![
        (
            "page_size 1001",
            pb::ListBindingsRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            "page_size u32::MAX",
            pb::ListBindingsRequest {
                page_size: u32::MAX,
                ..Default::default()
            },
            "page_size",
        ),
        (
            "garbage page_token",
            pb::ListBindingsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            "page_token of 70,000 bytes",
            pb::ListBindingsRequest {
                page_token: "t".repeat(70_000),
                ..Default::default()
            },
            "page_token",
        ),
        (
            "state 99",
            pb::ListBindingsRequest {
                state: 99,
                ..Default::default()
            },
            "state",
        ),
        (
            "state -1",
            pb::ListBindingsRequest {
                state: -1,
                ..Default::default()
            },
            "state",
        ),
        (
            "unknown app",
            pb::ListBindingsRequest {
                app: "nope".into(),
                ..Default::default()
            },
            "app",
        ),
    ];
    for (case, req, field) in cases {
        assert_rejected(
            c.list_bindings(req).await,
            Code::InvalidArgument,
            field,
            case,
        );
    }
    // page_size 1000 is the limit, not past it.
    let page = c
        .list_bindings(pb::ListBindingsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.bindings.len(), 1);
    assert_unchanged(&d, &before, "ListBindings").await;
    d.stop().await;
}
