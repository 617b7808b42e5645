//! `[auth]` and the rule that a non-loopback listener needs it; `[log]`.

use super::*;
use crate::auth::{Apps, Scope};

const HASH: &str = "6db79876798f2c5bca1ecd5e7570b51b6ec8dbeadcfb021d827e2e7d09e73556";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn with_auth(auth: &str) -> String {
    format!("{EXAMPLE}{FOOD}\n{auth}")
}

#[test]
fn tokens_resolve_with_their_scopes_hash_and_rate() {
    let file = secret_file("xpool_token-from-a-mounted-secret\n");
    let text = with_auth(&format!(
        r#"
[auth]
open_reflection = false
[[auth.tokens]]
name = "rides-api"
token_sha256 = "{HASH}"
scopes = ["bind:rides", "read:food-delivery"]
rate_per_second = 50
[[auth.tokens]]
name = "ops"
token_file = "{}"
scopes = ["admin"]
"#,
        file.path().display()
    ));
    let config = parse(&text).unwrap();
    let auth = config.auth.unwrap();
    assert!(auth.open_health, "health stays open by default");
    assert!(!auth.open_reflection);
    let rides = &auth.tokens[0];
    assert_eq!(rides.name, "rides-api");
    assert_eq!(
        crate::auth::sha256_hex(b"xpool_hjSq2U0xciPIBlJL0YT7TQ_eEjnqPfiLeLXkF34riLE"),
        HASH
    );
    assert_eq!(
        rides
            .sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        HASH
    );
    assert_eq!(
        rides.scopes,
        [
            Scope::Bind(Apps::One("rides".into())),
            Scope::Read(Apps::One("food-delivery".into()))
        ]
    );
    assert_eq!(rides.rate_per_second.map(|r| r.get()), Some(50));
    let ops = &auth.tokens[1];
    assert_eq!(
        hex(&ops.sha256),
        crate::auth::sha256_hex(b"xpool_token-from-a-mounted-secret"),
        "the file's token, line end trimmed"
    );
    assert_eq!(ops.scopes, [Scope::Admin]);
    assert_eq!(ops.rate_per_second, None);
    assert!(
        !format!("{:?}", auth.tokens).contains(&HASH[..16]),
        "Debug shows no hash"
    );
}

#[test]
fn without_auth_the_config_has_none() {
    assert_eq!(parse(EXAMPLE).unwrap().auth, None);
}

#[test]
fn bad_tokens_are_refused_naming_each_key() {
    let text = with_auth(&format!(
        r#"
[auth]
[[auth.tokens]]
name = "a"
token_sha256 = "not-hex"
scopes = ["bind:nope", "write:rides"]
[[auth.tokens]]
name = "b"
scopes = []
rate_per_second = 0
[[auth.tokens]]
name = "c"
token_sha256 = "{HASH}"
token_file = "/nonexistent"
scopes = ["admin"]
[[auth.tokens]]
name = "d"
token_file = "/nonexistent/xpool-token"
scopes = ["read:*"]
[[auth.tokens]]
name = "e"
token_sha256 = "{HASH}"
scopes = ["admin"]
colour = "blue"
"#
    ));
    let error = error_of(parse(&text));
    for expected in [
        "test.toml: auth.tokens[a].token_sha256: must be 64 hex digits",
        "test.toml: auth.tokens[a].scopes[0]: \"bind:nope\" names no configured app",
        "test.toml: auth.tokens[a].scopes[1]: \"write:rides\" is not a scope",
        "test.toml: auth.tokens[b]: needs token_sha256",
        "test.toml: auth.tokens[b].scopes: at least one of",
        "test.toml: auth.tokens[b].rate_per_second: must be at least 1",
        "test.toml: auth.tokens[c]: set token_sha256 or token_file, not both",
        "test.toml: auth.tokens[d].token_file: cannot read /nonexistent/xpool-token",
        "test.toml: auth.tokens[e].colour: unknown field",
    ] {
        assert!(error.contains(expected), "{expected:?} in:\n{error}");
    }
    assert!(
        !error.contains("not-hex"),
        "a hash value is not quoted: {error}"
    );
}

#[test]
fn two_tokens_may_not_share_a_name_or_a_token() {
    let text = with_auth(&format!(
        r#"
[auth]
[[auth.tokens]]
name = "a"
token_sha256 = "{HASH}"
scopes = ["admin"]
[[auth.tokens]]
name = "a"
token_sha256 = "{}"
scopes = ["admin"]
[[auth.tokens]]
name = "b"
token_sha256 = "{HASH}"
scopes = ["read:*"]
"#,
        HASH.replace('6', "7")
    ));
    let error = error_of(parse(&text));
    assert!(
        error.contains("auth.tokens[a].name: another token has this name"),
        "{error}"
    );
    assert!(
        error.contains("auth.tokens[b]: the same token as auth.tokens[a]"),
        "{error}"
    );
}

#[test]
fn auth_without_tokens_is_refused() {
    let error = error_of(parse(&with_auth("[auth]\n")));
    assert!(
        error.contains("test.toml: auth.tokens: [auth] without any [[auth.tokens]]"),
        "{error}"
    );
}

#[test]
fn a_listener_beyond_loopback_needs_auth_or_an_explicit_insecure() {
    let open = example_with("listen = \"127.0.0.1:50051\"", "listen = \"0.0.0.0:50051\"");
    let error = error_of(parse(&open));
    assert!(
        error.contains("test.toml: server.listen: 0.0.0.0:50051 is not a loopback address and there is no [auth]"),
        "{error}"
    );
    assert!(error.contains("server.insecure = true"), "{error}");
    let error = error_of(parse_env(
        EXAMPLE,
        &[("XPOOL__SERVER__LISTEN", "10.1.2.3:50051")],
    ));
    assert!(
        error.contains("server.listen: 10.1.2.3:50051 is not a loopback"),
        "{error}"
    );

    let insecure = open.replace("[server]\n", "[server]\ninsecure = true\n");
    assert!(parse(&insecure).unwrap().server.insecure);
    let with_tokens = format!(
        "{open}\n[auth]\n[[auth.tokens]]\nname = \"ops\"\ntoken_sha256 = \"{HASH}\"\nscopes = [\"admin\"]\n"
    );
    assert!(parse(&with_tokens).unwrap().auth.is_some());
    let v6 = example_with("listen = \"127.0.0.1:50051\"", "listen = \"[::1]:50051\"");
    assert!(parse(&v6).is_ok(), "::1 is loopback too");
}

#[test]
fn log_format_and_level_are_checked() {
    assert_eq!(parse(EXAMPLE).unwrap().log, LogConfig::default());
    let json = parse(&format!(
        "{EXAMPLE}\n[log]\nformat = \"json\"\nlevel = \"xpool=debug,warn\"\n"
    ))
    .unwrap();
    assert_eq!(json.log.format, LogFormat::Json);
    assert_eq!(json.log.level, "xpool=debug,warn");
    let error = error_of(parse(&format!(
        "{EXAMPLE}\n[log]\nformat = \"xml\"\nlevel = \"loud=\"\n"
    )));
    assert!(
        error.contains("test.toml: log.format: unknown variant `xml`"),
        "{error}"
    );
    let error = error_of(parse(&format!(
        "{EXAMPLE}\n[log]\nlevel = \"xpool=loudest\"\n"
    )));
    assert!(
        error.contains("test.toml: log.level: \"xpool=loudest\" is not a log filter"),
        "{error}"
    );
}
