//! Signatures (notifications.md §0.3) for an app with `verify_push_signature`: AKSK and the
//! legacy WSSE taken when right; a push with none, a wrong one, a stale one, or one made with
//! another app's key refused 401; and the receiver unharmed after each.

use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::support::platform::auth::Scheme;

#[tokio::test]
async fn pushes_for_an_app_that_verifies_need_its_own_signature() {
    let d = Daemon::start_with(setup()).await;
    let p = Pusher::new(&d);
    let call = || p.post("/", &callin(&party(1), X1));
    let now = OffsetDateTime::now_utc();
    let status = json!({"eventType": "numStatus",
        "numInfo": [{"number": X2, "status": "9"}]});
    let cases = [
        ("an unsigned push", call(), "it is not signed"),
        (
            "a digest made with another secret",
            sign(call(), Scheme::Aksk, "k-x", "s-other", now),
            "the PasswordDigest does not match",
        ),
        (
            "a WSSE digest made with another secret",
            sign(call(), Scheme::Wsse, "k-x", "s-other", now),
            "the PasswordDigest does not match",
        ),
        (
            "a token created 10 minutes ago",
            sign(
                call(),
                Scheme::Aksk,
                "k-x",
                "s-x",
                now - time::Duration::minutes(10),
            ),
            "Created is too far from this host's clock",
        ),
        (
            "a token of a key no app has",
            sign(call(), Scheme::Aksk, "k-unknown", "s-unknown", now),
            "signed with a key no app has",
        ),
        (
            "a token without a digest",
            call().header("X-AKSK", r#"UsernameToken Username="k-x",Nonce="n1""#),
            "the token lacks one of",
        ),
        (
            "the app's number status signed by another app",
            sign(
                p.post("/numstatus", &status),
                Scheme::Aksk,
                "k-axb",
                "s-axb",
                now,
            ),
            "signed with another app's key",
        ),
    ];
    for (what, request, says) in cases {
        let (got, text) = send(request).await;
        assert_eq!(got, 401, "{what}: {text}");
        assert!(
            text.contains(says),
            "{what}: {text:?} does not say {says:?}"
        );
        assert!(!text.contains("s-x"), "{what}: no secret in {text:?}");
        assert_good_push_taken(&p, what).await;
    }

    for scheme in [Scheme::Aksk, Scheme::Wsse] {
        let (got, text) = send(sign(call(), scheme, "k-x", "s-x", now)).await;
        assert_eq!(got, 200, "{scheme:?}: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["operation"], "close", "{scheme:?}");
    }
    d.stop().await;
}
