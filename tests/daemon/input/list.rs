//! ListBindings with bad filters and page tokens.

use xpool::grpc::pb;

use super::*;

#[tokio::test]
async fn bad_list_bindings_requests_are_refused() {
    let (d, mut c) = Daemon::start_with_client().await;
    c.bind(axb()).await.unwrap();
    let before = snapshot(&d).await;
    let list = pb::ListBindingsRequest::default;
    let cases = [
        (
            "page_size -1",
            with(list(), |r| r.page_size = -1),
            "page_size",
        ),
        (
            "page_size i32::MIN",
            with(list(), |r| r.page_size = i32::MIN),
            "page_size",
        ),
        (
            "garbage page_token",
            with(list(), |r| r.page_token = "garbage".into()),
            "page_token",
        ),
        (
            "page_token of 40,000 bytes",
            with(list(), |r| r.page_token = "t".repeat(40_000)),
            "page_token",
        ),
        ("state 99", with(list(), |r| r.state = 99), "state"),
        ("state -1", with(list(), |r| r.state = -1), "state"),
    ];
    for (case, req, field) in cases {
        assert_invalid(c.list_bindings(req).await, field, case);
    }
    let unknown = with(list(), |r| r.app = "nope".into());
    assert_unknown_app(c.list_bindings(unknown).await, "nope", "unknown app");
    // A page_size past the limit is read as the limit (AIP-158), not refused.
    for page_size in [1000, 1001, i32::MAX] {
        let page = c
            .list_bindings(with(list(), |r| r.page_size = page_size))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.bindings.len(), 1, "page_size {page_size}");
    }
    assert_unchanged(&d, &before, "ListBindings").await;
    d.stop().await;
}
