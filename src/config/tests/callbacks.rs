//! `[callbacks]`, `[watch]` and the per-app push keys.

use super::*;

/// An X-mode app with no platform, appended to the example.
const LOCAL_X: &str = r#"
[[apps]]
name = "local"
mode = "X"
numbers = [ { number = "+8617600000001", area_code = "010" } ]
"#;

#[test]
fn the_receiver_is_off_by_default_with_documented_limits() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.callbacks, CallbacksConfig::default());
    assert_eq!(config.callbacks.listen, None);
    assert!(config.callbacks.allow_from.is_empty());
    assert_eq!(config.callbacks.max_push_bytes, 1024 * 1024);
    assert_eq!(config.callbacks.retention_days, 31);
    assert!(!config.callbacks.answer_connect_info_as_array);
    assert_eq!(config.callbacks.max_clock_skew_seconds, 300);
    assert_eq!(config.watch.retention_hours, 24);
    let app = config.app("rides").unwrap();
    assert!(!app.verify_push_signature);
    assert_eq!(app.close_hint_tone, None);
}

#[test]
fn every_callbacks_key_can_be_set_in_the_file_or_the_environment() {
    let text = format!(
        "{EXAMPLE}{}\n[callbacks]\nlisten = \"0.0.0.0:8090\"\n\
         allow_from = [\"10.0.0.0/8\", \"192.0.2.7\"]\nmax_push_bytes = 4096\n\
         retention_days = 7\nanswer_connect_info_as_array = true\nmax_clock_skew_seconds = 60\n\
         [watch]\nretention_hours = 48\n",
        LOCAL_X.replace(
            "mode = \"X\"\n",
            "mode = \"X\"\nclose_hint_tone = \"bye.wav\"\n"
        )
    )
    .replace(
        "rate_per_second = 100\n",
        "rate_per_second = 100\nverify_push_signature = true\n",
    );
    let config = parse(&text).unwrap();
    let callbacks = &config.callbacks;
    assert_eq!(callbacks.listen, Some("0.0.0.0:8090".parse().unwrap()));
    assert_eq!(
        callbacks.allow_from,
        [
            "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
            "192.0.2.7/32".parse().unwrap()
        ]
    );
    assert_eq!(
        (callbacks.max_push_bytes, callbacks.retention_days),
        (4096, 7)
    );
    assert!(callbacks.answer_connect_info_as_array);
    assert_eq!(callbacks.max_clock_skew_seconds, 60);
    assert_eq!(config.watch.retention_hours, 48);
    assert!(config.app("rides").unwrap().verify_push_signature);
    let local = config.app("local").unwrap();
    assert_eq!(local.close_hint_tone.as_deref(), Some("bye.wav"));

    let env = parse_env(
        &format!("{EXAMPLE}{LOCAL_X}"),
        &[
            ("XPOOL__CALLBACKS__LISTEN", "127.0.0.1:8091"),
            ("XPOOL__CALLBACKS__ALLOW_FROM", r#"["127.0.0.1"]"#),
            ("XPOOL__CALLBACKS__MAX_PUSH_BYTES", "2048"),
            ("XPOOL__WATCH__RETENTION_HOURS", "2"),
            ("XPOOL__APPS__RIDES__VERIFY_PUSH_SIGNATURE", "true"),
            ("XPOOL__APPS__LOCAL__CLOSE_HINT_TONE", "closed.wav"),
        ],
    )
    .unwrap();
    assert_eq!(
        env.callbacks.listen,
        Some("127.0.0.1:8091".parse().unwrap())
    );
    assert_eq!(env.callbacks.allow_from.len(), 1);
    assert_eq!(env.callbacks.max_push_bytes, 2048);
    assert_eq!(env.watch.retention_hours, 2);
    assert!(env.app("rides").unwrap().verify_push_signature);
    let tone = env.app("local").unwrap().close_hint_tone.clone();
    assert_eq!(tone.as_deref(), Some("closed.wav"));
}

/// `text` is rejected with a problem at `key` whose message contains `says`.
#[track_caller]
fn assert_problem(text: &str, key: &str, says: &str) {
    let message = error_of(parse(text));
    let line = message
        .lines()
        .find(|l| l.starts_with(&format!("test.toml: {key}: ")))
        .unwrap_or_else(|| panic!("no problem at {key}:\n{message}"));
    assert!(line.contains(says), "{line}");
}

#[test]
fn each_callbacks_rule_names_its_key() {
    let callbacks = |body: &str| format!("{EXAMPLE}\n[callbacks]\n{body}\n");
    let cases = [
        (
            callbacks("listen = \"localhost\""),
            "callbacks.listen",
            "not a socket address",
        ),
        (
            callbacks("allow_from = [\"10.0.0.0/8\", \"10.0.0/8\"]"),
            "callbacks.allow_from",
            "entry 1: \"10.0.0/8\" is not an IP address or CIDR block",
        ),
        (
            callbacks("max_push_bytes = 10"),
            "callbacks.max_push_bytes",
            "not 1024 to",
        ),
        (
            callbacks("retention_days = 0"),
            "callbacks.retention_days",
            "not 1 to 3650",
        ),
        (
            callbacks("max_clock_skew_seconds = 0"),
            "callbacks.max_clock_skew_seconds",
            "not 1 to 86400",
        ),
        (
            callbacks("answer_connect_info_as_array = \"yes\""),
            "callbacks.answer_connect_info_as_array",
            "",
        ),
        (
            callbacks("listn = \"127.0.0.1:1\""),
            "callbacks.listn",
            "unknown field",
        ),
        (
            format!("{EXAMPLE}\n[watch]\nretention_hours = 0\n"),
            "watch.retention_hours",
            "not 1 to 8760",
        ),
    ];
    for (text, key, says) in cases {
        assert_problem(&text, key, says);
    }
}

#[test]
fn each_push_rule_of_an_app_names_its_key() {
    let with_listen = "\n[callbacks]\nlisten = \"127.0.0.1:8090\"\n";
    let cases = [
        (
            example_with(
                "rate_per_second",
                "close_hint_tone = \"bye.wav\"\nrate_per_second",
            ),
            "apps[rides].close_hint_tone",
            "only X-mode apps answer callins, this one is AXB",
        ),
        (
            format!("{EXAMPLE}{LOCAL_X}").replace(
                "mode = \"X\"\n",
                "mode = \"X\"\nclose_hint_tone = \" bye.wav\"\n",
            ),
            "apps[local].close_hint_tone",
            "not a tone file name",
        ),
        (
            format!("{EXAMPLE}{LOCAL_X}").replace(
                "mode = \"X\"\n",
                "mode = \"X\"\nverify_push_signature = true\n",
            ),
            "apps[local].app_key",
            "required with verify_push_signature",
        ),
        (
            format!("{EXAMPLE}{LOCAL_X}").replace(
                "mode = \"X\"\n",
                "mode = \"X\"\nverify_push_signature = true\napp_key = \"k-x\"\n",
            ),
            "apps[local].app_secret",
            "required with verify_push_signature",
        ),
        (
            example_with(
                "rate_per_second = 100\n",
                "rate_per_second = 100\nverify_push_signature = \"yes\"\n",
            ),
            "apps[rides].verify_push_signature",
            "",
        ),
        (
            format!("{EXAMPLE}{FOOD}{with_listen}").replace("\"k-ax\"", "\"k-axb\""),
            "apps[food-delivery].app_key",
            "the push receiver (callbacks.listen) tells apps apart by their key",
        ),
    ];
    for (text, key, says) in cases {
        assert_problem(&text, key, says);
    }
    // Without the receiver, one key on two platforms is fine.
    let two = format!("{EXAMPLE}{FOOD}").replace("\"k-ax\"", "\"k-axb\"");
    assert!(parse(&two).is_ok());
}
