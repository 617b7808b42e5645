//! The UsernameToken a push is signed with (notifications.md §0.3): `X-AKSK` (digest
//! Base64(HMAC-SHA256(secret, nonce + created))) or the legacy `X-WSSE` (Base64(SHA-256(nonce +
//! created + secret))). The token header decides the scheme; `Authorization` only repeats it.
//!
//! Reading names the app (`Username`, its app key); verifying checks `Created` against this
//! host's clock and compares digests in constant time. Failures are short static reasons, safe
//! to log and to answer: they never hold the secret, the digest or the nonce.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;

use crate::platform::auth::{Scheme, digest, is_valid_nonce};
use crate::platform::time::parse_created;

/// The token of a signed push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub scheme: Scheme,
    /// The app key the push claims to be signed with.
    pub username: String,
    digest: String,
    nonce: String,
    created: String,
}

/// The signature headers of a push, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signature {
    /// Neither `X-AKSK` nor `X-WSSE`.
    Absent,
    /// A token header that cannot be used: why.
    Malformed(&'static str),
    Token(Token),
}

/// Reads the token header (`X-AKSK` first, then `X-WSSE`).
pub(super) fn read(headers: &HeaderMap) -> Signature {
    let found = [Scheme::Aksk, Scheme::Wsse]
        .into_iter()
        .find_map(|scheme| headers.get(scheme.token_header()).map(|v| (scheme, v)));
    let Some((scheme, value)) = found else {
        return Signature::Absent;
    };
    let Ok(value) = value.to_str() else {
        return Signature::Malformed("the token header is not ASCII text");
    };
    let rest = value.trim();
    let rest = rest.strip_prefix("UsernameToken").unwrap_or(rest);
    let get = |name: &str| attribute(rest, name).map(str::to_owned);
    let (Some(username), Some(digest), Some(nonce), Some(created)) = (
        get("Username"),
        get("PasswordDigest"),
        get("Nonce"),
        get("Created"),
    ) else {
        return Signature::Malformed(
            "the token lacks one of Username, PasswordDigest, Nonce and Created",
        );
    };
    Signature::Token(Token {
        scheme,
        username,
        digest,
        nonce,
        created,
    })
}

/// The non-empty value of `name` in `a="1", b=2,c="3"`; names compare case-insensitively.
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    list.split(',').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then_some(value)
    })
}

/// Checks `token` against the app's `secret` at `now`, allowing `max_skew_seconds` between
/// `Created` and `now` either way.
pub(super) fn verify(
    token: &Token,
    secret: &str,
    now: OffsetDateTime,
    max_skew_seconds: u64,
) -> Result<(), &'static str> {
    let created = parse_created(&token.created).ok_or("Created is not YYYY-MM-DDTHH:MM:SSZ")?;
    if (now - created).whole_seconds().unsigned_abs() > max_skew_seconds {
        return Err("Created is too far from this host's clock (callbacks.max_clock_skew_seconds)");
    }
    if !is_valid_nonce(&token.nonce) {
        return Err("the Nonce is not 1 to 128 letters and digits");
    }
    let expected = digest(token.scheme, secret, &token.nonce, &token.created);
    if bool::from(expected.as_bytes().ct_eq(token.digest.as_bytes())) {
        Ok(())
    } else {
        Err("the PasswordDigest does not match the app's secret")
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::platform::auth::token;
    use crate::platform::time::format_created;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn signed(scheme: Scheme, secret: &str, at: OffsetDateTime) -> Token {
        let value = token(scheme, "k-x", secret, "abc123", &format_created(at));
        match read(&headers(scheme.token_header(), &value)) {
            Signature::Token(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn both_schemes_verify_with_the_right_secret_only() {
        let now = OffsetDateTime::now_utc();
        for scheme in [Scheme::Aksk, Scheme::Wsse] {
            let t = signed(scheme, "s-x", now);
            assert_eq!((t.scheme, t.username.as_str()), (scheme, "k-x"));
            assert_eq!(verify(&t, "s-x", now, 300), Ok(()));
            let wrong = verify(&t, "s-other", now, 300).unwrap_err();
            assert!(wrong.contains("PasswordDigest"), "{wrong}");
        }
    }

    #[test]
    fn created_must_be_within_the_skew_either_way() {
        // Whole seconds, as `Created` has them.
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let t = signed(Scheme::Aksk, "s-x", now - time::Duration::seconds(301));
        assert!(verify(&t, "s-x", now, 300).unwrap_err().contains("clock"));
        let t = signed(Scheme::Aksk, "s-x", now + time::Duration::seconds(301));
        assert!(verify(&t, "s-x", now, 300).is_err());
        assert!(verify(&t, "s-x", now, 302).is_ok());
    }

    #[test]
    fn unreadable_tokens_say_why_without_quoting_them() {
        assert_eq!(read(&HeaderMap::new()), Signature::Absent);
        let partial = r#"UsernameToken Username="k-x",Nonce="n1",Created="2024-03-01T02:15:07Z""#;
        let Signature::Malformed(why) = read(&headers("X-AKSK", partial)) else {
            panic!("a token without a digest was read");
        };
        assert!(why.contains("PasswordDigest"));
        let spaced = r#"UsernameToken Username = "k-x", PasswordDigest="d", Nonce=n1,Created="c""#;
        let Signature::Token(t) = read(&headers("X-WSSE", spaced)) else {
            panic!("a spaced token was not read");
        };
        assert_eq!((t.scheme, t.username.as_str()), (Scheme::Wsse, "k-x"));
        assert!(verify(&t, "s", OffsetDateTime::now_utc(), 300).is_err());
        let now = OffsetDateTime::now_utc();
        let mut bad_nonce = signed(Scheme::Aksk, "s-x", now);
        bad_nonce.nonce = "has-dash".into();
        assert!(
            verify(&bad_nonce, "s-x", now, 300)
                .unwrap_err()
                .contains("Nonce")
        );
    }
}
