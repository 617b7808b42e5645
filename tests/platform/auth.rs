//! Authentication (binding-api.md §1, §4.1.1), the client's circuit breaker, and secrets.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::platform::auth::{self, Scheme};
use crate::support::platform::wire::*;
use crate::support::platform::{codes, paths};
use reqwest::Method;
use xpool::upstream::{ErrorClass, Secret, UpstreamError};

use crate::common::*;

fn axb_bind(a: &str, b: &str) -> AxbBindRequest {
    AxbBindRequest {
        caller_num: a.into(),
        callee_num: b.into(),
        relation_num: Some("+8617000000001".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn both_schemes_authenticate() {
    let sim = Sim::start().await;
    for (scheme, (a, b)) in [(Scheme::Aksk, (A1, A2)), (Scheme::Wsse, (A3, A4))] {
        let mut s = sim.settings("k-axb");
        s.scheme = scheme;
        sim.client_with(s).axb_bind(&axb_bind(a, b)).await.unwrap();
    }
    assert_eq!(sim.bindings("k-axb").await.len(), 2);
}

/// Sends a query with hand-made auth headers; returns (HTTP status, resultcode).
async fn send(sim: &Sim, headers: &[(&str, String)]) -> (u16, String) {
    let mut req = sim.unsigned(Method::GET, &format!("{}?subscriptionId=x", paths::AXB));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let (status, code, _) = raw_result(req.send().await.unwrap()).await;
    (status, code)
}

fn token_without(scheme: Scheme, skip: &str) -> String {
    let nonce = auth::new_nonce();
    let created = crate::support::platform::time::format_created(time::OffsetDateTime::now_utc());
    let digest = auth::digest(scheme, "s-axb", &nonce, &created);
    let attrs = [
        ("Username", "k-axb".to_owned()),
        ("PasswordDigest", digest),
        ("Nonce", nonce),
        ("Created", created),
    ];
    let kept: Vec<_> = attrs
        .iter()
        .filter(|(k, _)| *k != skip)
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    // Whitespace after commas is tolerated.
    format!("UsernameToken {}", kept.join(", "))
}

#[tokio::test]
async fn malformed_headers_get_their_documented_codes() {
    let sim =
        Sim::start_with(&Setup::platform().sim_section("[auth]\nmax_failures = 1000\n")).await;
    let good_auth = Scheme::Aksk.authorization();
    let good_token = token_without(Scheme::Aksk, "");
    let authz = |v: &str| ("Authorization", v.to_owned());
    // A good X-AKSK under an Authorization header with one thing wrong.
    #[rustfmt::skip]
    let bad_authorization = [
        (r#"AKSK profile="UsernameToken",type="Appkey""#, codes::AUTH_MISSING_REALM),
        (r#"AKSK realm="SDP",type="Appkey""#, codes::AUTH_MISSING_PROFILE),
        (r#"AKSK realm="XYZ",profile="UsernameToken",type="Appkey""#, codes::AUTH_BAD_REALM),
        (r#"AKSK realm="SDP",profile="Other",type="Appkey""#, codes::AUTH_BAD_PROFILE),
        (r#"AKSK realm="SDP",profile="UsernameToken",type="User""#, codes::AUTH_BAD_TYPE),
        (r#"AKSK realm="SDP",profile="UsernameToken""#, codes::AUTH_MISSING_TYPE),
        (r#"Basic realm="SDP",profile="UsernameToken",type="Appkey""#, codes::AUTH_MISSING_WSSE),
    ];
    // A good Authorization header with a token missing one part: (part, AKSK code, WSSE code).
    #[rustfmt::skip]
    let missing_part = [
        ("Username", codes::AKSK_MISSING_USERNAME, codes::WSSE_MISSING_USERNAME),
        ("Nonce", codes::AKSK_MISSING_NONCE, codes::WSSE_MISSING_NONCE),
        ("Created", codes::AKSK_MISSING_CREATED, codes::WSSE_MISSING_CREATED),
        ("PasswordDigest", codes::AKSK_MISSING_DIGEST, codes::WSSE_MISSING_DIGEST),
    ];
    let wsse_auth = Scheme::Wsse.authorization();
    let mut cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("X-AKSK", good_token.clone())],
            codes::AUTH_MISSING_AUTHORIZATION,
        ),
        (vec![authz(&good_auth)], codes::AKSK_MISSING_HEADER),
        (vec![authz(&wsse_auth)], codes::WSSE_MISSING_HEADER),
    ];
    for (authorization, code) in bad_authorization {
        cases.push((
            vec![authz(authorization), ("X-AKSK", good_token.clone())],
            code,
        ));
    }
    for (part, aksk, wsse) in missing_part {
        let aksk_token = token_without(Scheme::Aksk, part);
        cases.push((vec![authz(&good_auth), ("X-AKSK", aksk_token)], aksk));
        let wsse_token = token_without(Scheme::Wsse, part);
        cases.push((vec![authz(&wsse_auth), ("X-WSSE", wsse_token)], wsse));
    }
    for (headers, want) in cases {
        assert_eq!(
            send(&sim, &headers).await,
            (400, want.to_owned()),
            "{headers:?}"
        );
    }
    // The well-formed pair authenticates (and finds no such binding).
    let (status, code) = send(&sim, &[authz(&good_auth), ("X-AKSK", good_token)]).await;
    assert_eq!((status, code.as_str()), (403, codes::RECORD_NOT_EXIST));
}

#[tokio::test]
async fn bad_digest_skew_and_unknown_key() {
    let sim =
        Sim::start_with(&Setup::platform().sim_section("[auth]\nmax_failures = 1000\n")).await;
    let mut wrong = sim.settings("k-axb");
    wrong.app_secret = Secret::new("not-the-secret");
    let e = expect_refusal(
        sim.client_with(wrong).axb_bind(&axb_bind(A1, A2)).await,
        codes::INVALID_DIGEST_OR_FLOW_CONTROL,
        ErrorClass::Auth,
    );
    assert!(
        matches!(e, UpstreamError::Platform { status: 401, .. }),
        "{e:?}"
    );

    // Created eleven minutes ago (the simulator allows ten).
    let nonce = auth::new_nonce();
    let old = time::OffsetDateTime::now_utc() - time::Duration::minutes(11);
    let created = crate::support::platform::time::format_created(old);
    let headers = [
        ("Authorization", Scheme::Aksk.authorization()),
        (
            "X-AKSK",
            auth::token(Scheme::Aksk, "k-axb", "s-axb", &nonce, &created),
        ),
    ];
    assert_eq!(
        send(&sim, &headers).await,
        (401, codes::TIME_OUT_LIMIT.to_owned())
    );

    let mut unknown = sim.settings("k-nobody");
    unknown.app_secret = Secret::new("whatever");
    expect_refusal(
        sim.client_with(unknown).axb_bind(&axb_bind(A1, A2)).await,
        codes::INVALID_APP_KEY,
        ErrorClass::Config,
    );
    assert!(sim.bindings("k-axb").await.is_empty());
}

#[tokio::test]
async fn repeated_failures_blacklist_the_ip() {
    let sim = Sim::start().await; // max_failures = 5
    let bad = [
        ("Authorization", Scheme::Aksk.authorization()),
        (
            "X-AKSK",
            auth::token(
                Scheme::Aksk,
                "k-axb",
                "wrong",
                &auth::new_nonce(),
                "2020-01-01T00:00:00Z",
            ),
        ),
    ];
    for _ in 0..5 {
        assert_eq!(send(&sim, &bad).await.1, codes::TIME_OUT_LIMIT);
    }
    // Now even a correctly signed call from this IP is refused.
    expect_refusal(
        sim.client("k-axb").axb_bind(&axb_bind(A1, A2)).await,
        codes::IP_BLACKLISTED,
        ErrorClass::Auth,
    );
    assert!(sim.bindings("k-axb").await.is_empty());
}

#[tokio::test]
async fn an_auth_failure_opens_the_circuit_until_the_cool_off() {
    let sim = Sim::start().await;
    let mut s = sim.settings("k-axb");
    s.app_secret = Secret::new("rotated-away");
    s.auth_cool_off = Duration::from_millis(300);
    let client = sim.client_with(s);

    expect_code(
        client.axb_bind(&axb_bind(A1, A2)).await,
        codes::INVALID_DIGEST_OR_FLOW_CONTROL,
    );
    assert!(!client.circuit_closed());
    assert_eq!(sim.requests("k-axb").await, 1);
    // Calls now fail locally and never reach the platform.
    for _ in 0..10 {
        let e = client.axb_bind(&axb_bind(A1, A2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::CircuitOpen { .. }), "{e:?}");
        assert!(e.not_sent());
        assert!(e.to_string().contains("circuit is open"), "{e}");
    }
    assert_eq!(
        sim.requests("k-axb").await,
        1,
        "no call reached the platform while open"
    );

    // After the cool-off one probe goes out; it fails, and the circuit opens again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_code(
        client.axb_bind(&axb_bind(A1, A2)).await,
        codes::INVALID_DIGEST_OR_FLOW_CONTROL,
    );
    assert!(matches!(
        client.axb_bind(&axb_bind(A1, A2)).await,
        Err(UpstreamError::CircuitOpen { .. })
    ));
    assert_eq!(sim.requests("k-axb").await, 2);
}

/// A writer that keeps everything the subscriber prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_errors() {
    const SECRET: &str = "SUPER-SECRET-VALUE-4711";
    let config = Setup::platform().app("drivers", |a| a.sim("app_secret", SECRET));
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = Sim::start_with(&config).await;
    let mut texts = Vec::new();
    let mut right = sim.settings("k-ax");
    right.app_secret = Secret::new(SECRET);
    texts.push(format!("{right:?}"));
    let client = sim.client_with(right.clone());
    // A bind that succeeds, then one refused because the X is taken.
    for a in [A1, A2] {
        let req = AxBindRequest {
            orig_num: a.into(),
            private_num: Some("+8617100000001".into()),
            ..Default::default()
        };
        texts.push(format!("{:?}", client.ax_bind(&req).await));
    }

    // A wrong secret that contains the real one, a timeout and a refused connection.
    let mut wrong = right.clone();
    wrong.app_secret = Secret::new(format!("{SECRET}-old"));
    let failures = [
        sim.client_with(wrong)
            .ax_query(&AxSelector::OrigNum(A1.into()))
            .await
            .map(|_| ()),
        {
            sim.faults(serde_json::json!({"app_key": "k-ax", "latency_ms": 2000}))
                .await;
            let mut slow = right.clone();
            slow.timeout = Duration::from_millis(200);
            sim.client_with(slow)
                .ax_query(&AxSelector::OrigNum(A1.into()))
                .await
                .map(|_| ())
        },
        {
            let mut nowhere = right.clone();
            nowhere.base_url = "http://127.0.0.1:1".into();
            sim.client_with(nowhere)
                .ax_query(&AxSelector::OrigNum(A1.into()))
                .await
                .map(|_| ())
        },
    ];
    for f in failures {
        let e = f.expect_err("each of these calls fails");
        texts.push(format!("{e} / {e:?}"));
    }
    sim.stop().await;

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("platform"), "the capture works: {logged}");
    for text in texts.iter().chain(std::iter::once(&logged)) {
        assert!(!text.contains(SECRET), "secret leaked in: {text}");
    }
}
