use std::num::NonZeroU32;

use super::*;
use crate::config::TokenConfig;

fn token(name: &str, secret: &str, scopes: &[&str], rate: Option<u32>) -> TokenConfig {
    TokenConfig {
        name: name.to_owned(),
        sha256: Sha256::digest(secret.as_bytes()).into(),
        scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
        rate_per_second: rate.and_then(NonZeroU32::new),
    }
}

fn authenticator(tokens: Vec<TokenConfig>) -> Authenticator {
    Authenticator::new(&AuthConfig {
        tokens,
        clients: Vec::new(),
        open_health: true,
        open_reflection: false,
    })
}

#[test]
fn a_known_token_is_its_caller_with_its_scopes() {
    let auth = authenticator(vec![
        token("rides-api", "secret-one-0123456789", &["bind:rides"], None),
        token("ops", "secret-two-0123456789", &["admin"], None),
    ]);
    let rides = auth
        .authenticate(Some(b"Bearer secret-one-0123456789"), None)
        .unwrap();
    assert_eq!(rides.name(), "rides-api");
    assert!(rides.may(&Access::Bind("rides")));
    assert!(!rides.may(&Access::Admin));
    let ops = auth
        .authenticate(Some(b"bearer  secret-two-0123456789 "), None)
        .unwrap();
    assert_eq!(ops.name(), "ops", "the scheme in any case, spaces trimmed");
    assert!(ops.may(&Access::Admin));
}

#[test]
fn calls_without_a_known_token_are_refused_and_say_why() {
    let auth = authenticator(vec![token(
        "rides-api",
        "secret-one-0123456789",
        &["bind:rides"],
        None,
    )]);
    assert_eq!(auth.authenticate(None, None).unwrap_err(), Refusal::NoToken);
    for malformed in [&b"secret-one-0123456789"[..], b"Basic abc", b"Bearer ", b""] {
        assert_eq!(
            auth.authenticate(Some(malformed), None).unwrap_err(),
            Refusal::Malformed,
            "{malformed:?}"
        );
    }
    assert_eq!(
        auth.authenticate(Some(b"Bearer secret-one-012345678"), None)
            .unwrap_err(),
        Refusal::UnknownToken
    );
    let status = tonic::Status::from(PoolError::from(Refusal::UnknownToken));
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(!status.message().contains("secret"), "{status:?}");
}

#[test]
fn a_token_over_its_rate_is_refused_with_a_retry_hint() {
    let auth = authenticator(vec![token(
        "batch",
        "secret-three-0123456789",
        &["read:*"],
        Some(2),
    )]);
    let header = Some(&b"Bearer secret-three-0123456789"[..]);
    assert!(auth.authenticate(header, None).is_ok());
    assert!(auth.authenticate(header, None).is_ok());
    let Err(Refusal::RateLimited {
        caller,
        retry_after,
    }) = auth.authenticate(header, None)
    else {
        panic!("the third call in a second is over a rate of 2");
    };
    assert_eq!(caller, "batch");
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500));
    let status = tonic::Status::from(PoolError::from(Refusal::RateLimited {
        caller,
        retry_after,
    }));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.metadata().get("retry-after-ms").is_some());
}

#[test]
fn a_missing_scope_is_refused_naming_it() {
    let auth = authenticator(vec![token(
        "rides-api",
        "secret-one-0123456789",
        &["bind:rides"],
        None,
    )]);
    let caller = auth
        .authenticate(Some(b"Bearer secret-one-0123456789"), None)
        .unwrap();
    let status = tonic::Status::from(caller.require(Access::Bind("food")).unwrap_err());
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("bind:food"), "{status:?}");
    assert!(caller.require(Access::Read("rides")).is_ok());
}

#[test]
fn only_the_configured_services_are_open() {
    let auth = authenticator(Vec::new());
    assert!(auth.is_open("/grpc.health.v1.Health/Check"));
    assert!(!auth.is_open("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
    assert!(!auth.is_open("/xpool.v1.BindingService/Bind"));
    assert!(!auth.is_open("/grpc.health.v1.HealthX/Check"));
}

#[test]
fn a_new_token_matches_its_printed_hash() {
    let (token, hash) = new_token();
    assert!(token.starts_with("xpool_") && token.len() > 40, "{token}");
    assert_eq!(hash, sha256_hex(token.as_bytes()));
    assert_eq!(hash.len(), 64);
    let (other, _) = new_token();
    assert_ne!(token, other);
}

#[test]
fn a_client_certificate_names_its_caller_when_no_token_is_sent() {
    let auth = Authenticator::new(&AuthConfig {
        tokens: vec![token(
            "rides-api",
            "secret-one-0123456789",
            &["bind:rides"],
            None,
        )],
        clients: vec![crate::config::ClientConfig {
            name: "ops-cert".into(),
            subject: "ops.example.internal".into(),
            scopes: vec![Scope::Admin],
        }],
        open_health: true,
        open_reflection: true,
    });
    let names = ["xpool-client".to_owned(), "ops.example.internal".to_owned()];
    let caller = auth.authenticate(None, Some(&names)).unwrap();
    assert_eq!(caller.name(), "ops-cert");
    assert!(caller.may(&Access::Admin));
    let other = ["someone.else".to_owned()];
    assert_eq!(
        auth.authenticate(None, Some(&other)).unwrap_err(),
        Refusal::NoToken
    );
    let by_token = auth
        .authenticate(Some(b"Bearer secret-one-0123456789"), Some(&names))
        .unwrap();
    assert_eq!(by_token.name(), "rides-api", "a token, when sent, decides");
}
