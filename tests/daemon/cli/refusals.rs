//! Exit codes and tokens: a refusal exits 1 with its reason, no daemon or a wrong command line
//! 2; with `[auth]` the token is sent (`--token`, `XPOOL_TOKEN`) and never printed.

use super::{Ran, xpool};
use crate::support::*;

#[tokio::test]
async fn refusals_exit_1_with_the_reason_and_no_daemon_exits_2() {
    let d = Daemon::start_with(Setup::standard().only(&["rides"])).await;
    let unknown = xpool(&d.addr, None, &["stats", "--app", "nope"]).await;
    unknown.exits(1);
    assert!(
        unknown.stderr.starts_with("xpool stats: NOT_FOUND: "),
        "{unknown:?}"
    );
    assert!(
        unknown.stderr.contains("reason: UNKNOWN_APP (app=nope)"),
        "{unknown:?}"
    );
    assert_eq!(unknown.stdout, "");

    let not_ours = ["numbers", "drain", "--app", "rides", "+8619999999999"];
    let not_ours = xpool(&d.addr, None, &not_ours).await;
    assert!(
        not_ours
            .exits(1)
            .stderr
            .contains("reason: NUMBER_NOT_IN_POOL"),
        "{not_ours:?}"
    );
    let bad = ["numbers", "add", "--app", "rides", "--number", "12:010"];
    let bad = xpool(&d.addr, None, &bad).await;
    assert!(
        bad.exits(1).stderr.contains("INVALID_ARGUMENT: numbers[0]"),
        "{bad:?}"
    );

    // Nothing listening: 2, for every command.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["stats"][..],
        &["numbers", "list", "--app", "rides"],
        &["bindings", "list"],
        &["watch"],
    ] {
        let ran = xpool(&nobody, None, args).await;
        assert!(
            ran.exits(2).stderr.contains("cannot reach"),
            "{args:?}: {ran:?}"
        );
    }
    // A wrong command line: 2, from clap.
    xpool(&d.addr, None, &["numbers", "list"]).await.exits(2);
    xpool(&d.addr, None, &["stats", "--output", "yaml"])
        .await
        .exits(2);
    d.stop().await;
}

const OPS: &str = "xpool_cli-ops-token-0123456789abcdef";
const READER: &str = "xpool_cli-reader-token-0123456789abcdef";

#[tokio::test]
async fn with_auth_the_token_is_sent_and_never_printed() {
    let token = |name: &str, token: &str, scopes: &str| {
        let hash = xpool::auth::sha256_hex(token.as_bytes());
        format!(
            "[[auth.tokens]]\nname = \"{name}\"\ntoken_sha256 = \"{hash}\"\nscopes = {scopes}\n"
        )
    };
    let auth = format!(
        "[auth]\n{}{}",
        token("ops", OPS, r#"["admin"]"#),
        token("reader", READER, r#"["read:rides"]"#)
    );
    let d = Daemon::start_with(Setup::standard().only(&["rides"]).daemon_section(&auth)).await;
    let tokens = [OPS, READER, "xpool_wrong-token"];
    let printed_no_token = |ran: &Ran| {
        for t in tokens {
            assert!(
                !ran.stdout.contains(t) && !ran.stderr.contains(t),
                "{ran:?}"
            );
        }
    };

    let none = xpool(&d.addr, None, &["stats"]).await;
    assert!(
        none.exits(1).stderr.contains("UNAUTHENTICATED: "),
        "{none:?}"
    );
    assert!(none.stderr.contains("reason: UNAUTHENTICATED"), "{none:?}");
    let wrong = xpool(&d.addr, None, &["stats", "--token", "xpool_wrong-token"]).await;
    assert!(
        wrong.exits(1).stderr.contains("UNAUTHENTICATED: "),
        "{wrong:?}"
    );
    printed_no_token(&wrong);

    // XPOOL_TOKEN and --token both reach the daemon.
    let stats = xpool(&d.addr, Some(OPS), &["stats"]).await;
    assert_eq!(
        stats.exits(0).rows().len(),
        3,
        "rides has three areas: {stats:?}"
    );
    let n = "+8617000000009";
    let add = [
        "numbers", "add", "--app", "rides", "--number", n, "--area", "010",
    ];
    let added = xpool(&d.addr, None, &[&add[..], &["--token", OPS]].concat()).await;
    assert_eq!(added.exits(0).rows()[0][7], "added");
    printed_no_token(&added);

    // A reader may list but not drain: PERMISSION_DENIED naming the scope.
    let listed = xpool(
        &d.addr,
        Some(READER),
        &["numbers", "list", "--app", "rides"],
    )
    .await;
    assert_eq!(listed.exits(0).rows().len(), 5);
    let refused = xpool(
        &d.addr,
        Some(READER),
        &["numbers", "drain", "--app", "rides", n],
    )
    .await;
    refused.exits(1);
    assert!(
        refused.stderr.contains("PERMISSION_DENIED: "),
        "{refused:?}"
    );
    assert!(
        refused
            .stderr
            .contains("reason: SCOPE_REQUIRED (caller=reader, scope=admin)")
    );
    printed_no_token(&refused);
    d.stop().await;
}
