//! The headers that sign a push (notifications.md §0.3): the app's UsernameToken, made with its
//! own key and secret, so a receiver can verify the push came from the platform.
//!
//! `Created` is real UTC time, not the simulator's clock: a receiver checks it against its own
//! clock, as the platform's API checks a client's (binding-api.md §1.3).

use time::OffsetDateTime;

use super::super::config::PushSigning;
use xpool_platform::auth::{self, Scheme};
use xpool_platform::time::format_created;

/// The `Authorization` and `X-AKSK` / `X-WSSE` headers of one push; none for
/// [`PushSigning::None`].
pub(crate) fn headers(
    signing: PushSigning,
    app_key: &str,
    secret: &str,
    now: OffsetDateTime,
) -> Vec<(&'static str, String)> {
    let scheme = match signing {
        PushSigning::Aksk => Scheme::Aksk,
        PushSigning::Wsse => Scheme::Wsse,
        PushSigning::None => return Vec::new(),
    };
    let nonce = auth::new_nonce();
    let created = format_created(now);
    vec![
        ("Authorization", scheme.authorization()),
        (
            scheme.token_header(),
            auth::token(scheme, app_key, secret, &nonce, &created),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// The attribute `name` of a UsernameToken header.
    fn attribute<'a>(token: &'a str, name: &str) -> &'a str {
        let start = token.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let len = token[start..].find('"').unwrap();
        &token[start..start + len]
    }

    #[test]
    fn each_scheme_signs_with_the_apps_secret() {
        let now = datetime!(2024-03-01 02:15:07 UTC);
        for (signing, scheme) in [
            (PushSigning::Aksk, Scheme::Aksk),
            (PushSigning::Wsse, Scheme::Wsse),
        ] {
            let headers = headers(signing, "k-1", "s-1", now);
            assert_eq!(headers[0], ("Authorization", scheme.authorization()));
            assert_eq!(headers[1].0, scheme.token_header());
            let token = &headers[1].1;
            assert_eq!(attribute(token, "Username"), "k-1");
            assert_eq!(attribute(token, "Created"), "2024-03-01T02:15:07Z");
            let nonce = attribute(token, "Nonce");
            assert!(auth::is_valid_nonce(nonce));
            let digest = auth::digest(scheme, "s-1", nonce, "2024-03-01T02:15:07Z");
            assert_eq!(attribute(token, "PasswordDigest"), digest);
        }
        assert!(headers(PushSigning::None, "k-1", "s-1", now).is_empty());
    }
}
