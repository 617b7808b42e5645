//! Checking the UsernameToken headers of a request (binding-api.md §1).
//!
//! Parsing is split from verification so each missing or wrong attribute maps to its own
//! 1023xxx code; verification then finds the app, checks the clock skew against real UTC time and
//! compares digests in constant time.

use axum::http::HeaderMap;
use time::OffsetDateTime;

use super::reply::Fail;
use xpool_platform::auth::{Scheme, digest, is_valid_nonce};
use xpool_platform::codes;
use xpool_platform::time::parse_created;

/// The UsernameToken attributes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub scheme: Scheme,
    pub username: String,
    pub digest: String,
    pub nonce: String,
    pub created: String,
}

/// Reads both auth headers; the failure carries the code of the first problem found.
pub(crate) fn parse_headers(headers: &HeaderMap) -> Result<Token, Fail> {
    let authorization = header(headers, "authorization")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Fail::new(codes::AUTH_MISSING_AUTHORIZATION))?;
    let scheme = parse_authorization(authorization)?;
    let missing = missing_codes(scheme);
    let value = header(headers, scheme.token_header()).ok_or_else(|| Fail::new(missing[0]))?;
    parse_token(scheme, value)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// Codes for: missing token header, Username, Nonce, Created, PasswordDigest.
fn missing_codes(scheme: Scheme) -> [&'static str; 5] {
    match scheme {
        Scheme::Aksk => [
            codes::AKSK_MISSING_HEADER,
            codes::AKSK_MISSING_USERNAME,
            codes::AKSK_MISSING_NONCE,
            codes::AKSK_MISSING_CREATED,
            codes::AKSK_MISSING_DIGEST,
        ],
        Scheme::Wsse => [
            codes::WSSE_MISSING_HEADER,
            codes::WSSE_MISSING_USERNAME,
            codes::WSSE_MISSING_NONCE,
            codes::WSSE_MISSING_CREATED,
            codes::WSSE_MISSING_DIGEST,
        ],
    }
}

/// `AKSK realm="SDP",profile="UsernameToken",type="Appkey"` (or `WSSE …`).
pub(crate) fn parse_authorization(value: &str) -> Result<Scheme, Fail> {
    let value = value.trim();
    let (word, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let scheme = match word {
        "AKSK" => Scheme::Aksk,
        "WSSE" => Scheme::Wsse,
        _ => return Err(Fail::new(codes::AUTH_MISSING_WSSE)),
    };
    let checks = [
        (
            "realm",
            "SDP",
            codes::AUTH_MISSING_REALM,
            codes::AUTH_BAD_REALM,
        ),
        (
            "profile",
            "UsernameToken",
            codes::AUTH_MISSING_PROFILE,
            codes::AUTH_BAD_PROFILE,
        ),
        (
            "type",
            "Appkey",
            codes::AUTH_MISSING_TYPE,
            codes::AUTH_BAD_TYPE,
        ),
    ];
    for (name, want, missing, wrong) in checks {
        match attribute(rest, name) {
            None => return Err(Fail::new(missing)),
            Some(got) if got != want => return Err(Fail::new(wrong)),
            Some(_) => {}
        }
    }
    Ok(scheme)
}

/// `UsernameToken Username="…",PasswordDigest="…",Nonce="…",Created="…"`.
pub(crate) fn parse_token(scheme: Scheme, value: &str) -> Result<Token, Fail> {
    let value = value.trim();
    let rest = value.strip_prefix("UsernameToken").unwrap_or(value);
    let missing = missing_codes(scheme);
    let get = |name: &str, code: &'static str| {
        attribute(rest, name)
            .map(str::to_owned)
            .ok_or_else(|| Fail::new(code))
    };
    let username = get("Username", missing[1])?;
    let nonce = get("Nonce", missing[2])?;
    let created = get("Created", missing[3])?;
    let digest = get("PasswordDigest", missing[4])?;
    Ok(Token {
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

/// Verifies a parsed token against the app's secret at real time `now`; its creation time.
pub(crate) fn verify(
    token: &Token,
    secret: &str,
    now: OffsetDateTime,
    max_skew_seconds: u64,
) -> Result<OffsetDateTime, Fail> {
    let created = parse_created(&token.created).ok_or_else(|| Fail::new(codes::TIME_OUT_LIMIT))?;
    let skew = (now - created).whole_seconds().unsigned_abs();
    if skew > max_skew_seconds {
        return Err(Fail::new(codes::TIME_OUT_LIMIT));
    }
    let expected = digest(token.scheme, secret, &token.nonce, &token.created);
    if !is_valid_nonce(&token.nonce) || !constant_time_eq(&expected, &token.digest) {
        return Err(Fail::new(codes::INVALID_DIGEST_OR_FLOW_CONTROL));
    }
    Ok(created)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use xpool_platform::auth::token;
    use xpool_platform::time::format_created;

    fn code_of(result: Result<Scheme, Fail>) -> &'static str {
        result.map(|_| "ok").unwrap_or_else(|f| f.code)
    }

    #[test]
    fn authorization_attributes_map_to_their_codes() {
        let ok = r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#;
        assert_eq!(parse_authorization(ok).unwrap(), Scheme::Aksk);
        let spaced = r#"WSSE realm="SDP", profile="UsernameToken",  type=Appkey"#;
        assert_eq!(parse_authorization(spaced).unwrap(), Scheme::Wsse);
        let cases = [
            (r#"Basic realm="SDP""#, "1023013"),
            (r#"AKSK profile="UsernameToken",type="Appkey""#, "1023007"),
            (r#"AKSK realm="SDP",type="Appkey""#, "1023008"),
            (r#"AKSK realm="SDP",profile="UsernameToken""#, "1023012"),
            (
                r#"AKSK realm="X",profile="UsernameToken",type="Appkey""#,
                "1023009",
            ),
            (
                r#"AKSK realm="SDP",profile="Token",type="Appkey""#,
                "1023010",
            ),
            (
                r#"AKSK realm="SDP",profile="UsernameToken",type="Key""#,
                "1023011",
            ),
        ];
        for (value, code) in cases {
            assert_eq!(code_of(parse_authorization(value)), code, "{value}");
        }
    }

    #[test]
    fn token_attributes_map_to_their_codes_per_scheme() {
        let full = r#"UsernameToken Username="k", PasswordDigest="d",Nonce="n", Created=c"#;
        let t = parse_token(Scheme::Aksk, full).unwrap();
        assert_eq!((t.username.as_str(), t.digest.as_str()), ("k", "d"));
        assert_eq!((t.nonce.as_str(), t.created.as_str()), ("n", "c"));
        let drop = |attr: &str| {
            full.split(',')
                .filter(|p| !p.contains(attr))
                .collect::<Vec<_>>()
                .join(",")
        };
        // The code for a missing Username, Nonce, Created and PasswordDigest, per scheme.
        let cases = [
            (Scheme::Aksk, ["1023034", "1023035", "1023036", "1023037"]),
            (Scheme::Wsse, ["1023027", "1023028", "1023029", "1023030"]),
        ];
        for (scheme, codes) in cases {
            for (attr, code) in ["Username", "Nonce", "Created", "Digest"]
                .into_iter()
                .zip(codes)
            {
                let got = parse_token(scheme, &drop(attr)).unwrap_err().code;
                assert_eq!(got, code, "{scheme:?} without {attr}");
            }
        }
    }

    #[test]
    fn missing_headers_map_to_their_codes() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_headers(&headers).unwrap_err().code, "1023006");
        headers.insert(
            "authorization",
            HeaderValue::from_static(r#"WSSE realm="SDP",profile="UsernameToken",type="Appkey""#),
        );
        assert_eq!(parse_headers(&headers).unwrap_err().code, "1023026");
        headers.insert(
            "authorization",
            HeaderValue::from_static(r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#),
        );
        assert_eq!(parse_headers(&headers).unwrap_err().code, "1023033");
    }

    #[test]
    fn verification_checks_skew_and_digest() {
        let now = OffsetDateTime::now_utc();
        let created = format_created(now);
        for scheme in [Scheme::Aksk, Scheme::Wsse] {
            let value = token(scheme, "k", "secret", "abc123", &created);
            let t = parse_token(scheme, &value).unwrap();
            assert!(verify(&t, "secret", now, 600).is_ok());
            let wrong = verify(&t, "other", now, 600).unwrap_err();
            assert_eq!((wrong.code, wrong.status.as_u16()), ("1010010", 401));
            let late = verify(&t, "secret", now + time::Duration::minutes(11), 600).unwrap_err();
            assert_eq!((late.code, late.status.as_u16()), ("1010013", 401));
        }
        let bad_nonce = token(Scheme::Aksk, "k", "secret", "no-dash", &created);
        let t = parse_token(Scheme::Aksk, &bad_nonce).unwrap();
        assert_eq!(verify(&t, "secret", now, 600).unwrap_err().code, "1010010");
    }
}
