//! The platform's UsernameToken authentication (binding-api.md §1).
//!
//! Two schemes exist: the current `AKSK` (`X-AKSK` header, HMAC-SHA256 keyed with the app
//! secret) and the legacy `WSSE` (`X-WSSE` header, SHA-256 over nonce, created and secret).
//! Both put the app key, a fresh nonce, the creation time and the digest in one header.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which UsernameToken scheme signs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scheme {
    /// `Authorization: AKSK …` + `X-AKSK`, digest = Base64(HMAC-SHA256(secret, nonce + created)).
    #[default]
    Aksk,
    /// `Authorization: WSSE …` + `X-WSSE`, digest = Base64(SHA-256(nonce + created + secret)).
    Wsse,
}

impl Scheme {
    /// The scheme word that opens the `Authorization` header.
    pub fn word(self) -> &'static str {
        match self {
            Scheme::Aksk => "AKSK",
            Scheme::Wsse => "WSSE",
        }
    }

    /// The header that carries the UsernameToken.
    pub fn token_header(self) -> &'static str {
        match self {
            Scheme::Aksk => "X-AKSK",
            Scheme::Wsse => "X-WSSE",
        }
    }

    /// The value of the `Authorization` header.
    pub fn authorization(self) -> String {
        format!(
            r#"{} realm="SDP",profile="UsernameToken",type="Appkey""#,
            self.word()
        )
    }
}

/// Computes the PasswordDigest of `scheme` for one nonce and creation time.
pub fn digest(scheme: Scheme, secret: &str, nonce: &str, created: &str) -> String {
    match scheme {
        Scheme::Aksk => {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC-SHA256 takes keys of any length");
            mac.update(nonce.as_bytes());
            mac.update(created.as_bytes());
            BASE64.encode(mac.finalize().into_bytes())
        }
        Scheme::Wsse => {
            let mut sha = Sha256::new();
            sha.update(nonce.as_bytes());
            sha.update(created.as_bytes());
            sha.update(secret.as_bytes());
            BASE64.encode(sha.finalize())
        }
    }
}

/// The UsernameToken header value for one request.
pub fn token(scheme: Scheme, app_key: &str, secret: &str, nonce: &str, created: &str) -> String {
    let digest = digest(scheme, secret, nonce, created);
    format!(
        r#"UsernameToken Username="{app_key}",PasswordDigest="{digest}",Nonce="{nonce}",Created="{created}""#
    )
}

/// A fresh nonce: 32 random ASCII letters and digits (the platform allows 1–128).
pub fn new_nonce() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Checks a nonce against the platform's rule: 1–128 ASCII letters and digits.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (1..=128).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of binding-api.md §1.3.
    const NONCE: &str = "66C92B11FF8A425FB8D4CCFE0ED9ED1F";
    const CREATED: &str = "2018-02-12T15:30:20Z";
    const SECRET: &str = "test-app-secret";

    #[test]
    fn aksk_digest_matches_the_documented_vector() {
        assert_eq!(
            digest(Scheme::Aksk, SECRET, NONCE, CREATED),
            "I/LkzEN1+c3kcvfF+WnkPsEN6h9RrUChk7DWV/ItfZU="
        );
    }

    #[test]
    fn wsse_digest_matches_the_documented_vector() {
        assert_eq!(
            digest(Scheme::Wsse, SECRET, NONCE, CREATED),
            "VUVjlBS4wuNTrzm/BfKLMXdZfbwWIsJfod0BhEctYZE="
        );
    }

    #[test]
    fn headers_have_the_documented_shape() {
        assert_eq!(
            Scheme::Aksk.authorization(),
            r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#
        );
        assert_eq!(
            token(Scheme::Wsse, "key1", SECRET, NONCE, CREATED),
            r#"UsernameToken Username="key1",PasswordDigest="VUVjlBS4wuNTrzm/BfKLMXdZfbwWIsJfod0BhEctYZE=",Nonce="66C92B11FF8A425FB8D4CCFE0ED9ED1F",Created="2018-02-12T15:30:20Z""#
        );
    }

    #[test]
    fn nonces_are_fresh_alphanumerics() {
        let (a, b) = (new_nonce(), new_nonce());
        assert!(is_valid_nonce(&a) && is_valid_nonce(&b));
        assert_ne!(a, b);
        assert!(!is_valid_nonce("has-dash"));
        assert!(!is_valid_nonce(""));
    }
}
