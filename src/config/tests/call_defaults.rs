//! `[apps.call_defaults]`: read per app, each key checked against the app's mode, errors
//! naming the key; settable from the environment as an inline table.

use super::*;
use crate::platform::options::{CallDirection, CallOptions};

/// The example with `[apps.call_defaults]` for its AXB app.
fn with_defaults(table: &str) -> String {
    format!("{EXAMPLE}[apps.call_defaults]\n{table}\n")
}

#[test]
fn defaults_are_read_and_absent_ones_are_unset() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(
        config.app("rides").unwrap().call_defaults,
        CallOptions::default()
    );
    let text = with_defaults(
        r#"call_direction = "A_TO_B_ONLY"
record = true
max_call_minutes = 30
record_hint_tone = "rec.wav"
last_minute_tone = "last.wav"
caller_hint_tone = "caller.wav"
callee_hint_tone = "callee.wav"
private_sms = false"#,
    );
    let app = parse(&text).unwrap().app("rides").unwrap().clone();
    let expected = CallOptions {
        call_direction: Some(CallDirection::AToBOnly),
        record: Some(true),
        max_call_minutes: Some(30),
        record_hint_tone: Some("rec.wav".into()),
        last_minute_tone: Some("last.wav".into()),
        caller_hint_tone: Some("caller.wav".into()),
        callee_hint_tone: Some("callee.wav".into()),
        callback_tone: None,
        private_sms: Some(false),
    };
    assert_eq!(app.call_defaults, expected);
}

#[test]
fn a_default_the_mode_does_not_take_is_named() {
    // AXB has no callbackTone; AXE no SMS and no call limit; AX no b_to_a_only.
    let message = error_of(parse(&with_defaults(r#"callback_tone = "cb.wav""#)));
    assert!(
        message.contains("test.toml: apps[rides].call_defaults.callback_tone: "),
        "{message}"
    );
    let axe = format!(
        "{}[apps.call_defaults]\nprivate_sms = true\nmax_call_minutes = 5\ncallback_tone = \"cb.wav\"\n",
        EXAMPLE.replace("mode = \"AXB\"", "mode = \"AXE\"")
    );
    let message = error_of(parse(&axe));
    for key in ["private_sms", "max_call_minutes"] {
        assert!(
            message.contains(&format!("apps[rides].call_defaults.{key}: AXE bindings")),
            "{key}: {message}"
        );
    }
    assert!(!message.contains("callback_tone"), "{message}");
    let ax = format!("{EXAMPLE}{FOOD}[apps.call_defaults]\ncall_direction = \"b_to_a_only\"\n");
    let message = error_of(parse(&ax));
    assert!(
        message.contains("apps[food-delivery].call_defaults.call_direction: "),
        "{message}"
    );
}

#[test]
fn bad_values_and_unknown_keys_are_named() {
    for (table, key) in [
        ("max_call_minutes = 1441", "max_call_minutes"),
        ("max_call_minutes = -1", "max_call_minutes"),
        ("record_hint_tone = \"\"", "record_hint_tone"),
        ("caller_hint_tone = \" padded.wav\"", "caller_hint_tone"),
        ("call_direction = \"sideways\"", "call_direction"),
        ("record = \"yes\"", "record"),
        ("colour = \"red\"", "colour"),
    ] {
        let message = error_of(parse(&with_defaults(table)));
        assert!(
            message.contains(&format!("test.toml: apps[rides].call_defaults.{key}: ")),
            "{table}: {message}"
        );
    }
    let long = format!("last_minute_tone = \"{}\"", "t".repeat(129));
    let message = error_of(parse(&with_defaults(&long)));
    assert!(
        message.contains("call_defaults.last_minute_tone"),
        "{message}"
    );
}

#[test]
fn defaults_can_come_from_the_environment() {
    let config = parse_env(
        EXAMPLE,
        &[(
            "XPOOL__APPS__RIDES__CALL_DEFAULTS",
            "{ record = true, private_sms = false }",
        )],
    )
    .unwrap();
    let defaults = &config.app("rides").unwrap().call_defaults;
    assert_eq!(
        (defaults.record, defaults.private_sms),
        (Some(true), Some(false))
    );
    let message = error_of(parse_env(
        EXAMPLE,
        &[(
            "XPOOL__APPS__RIDES__CALL_DEFAULTS",
            "{ callback_tone = \"cb.wav\" }",
        )],
    ));
    assert!(
        message
            .contains("XPOOL__APPS__RIDES__CALL_DEFAULTS: apps[rides].call_defaults.callback_tone"),
        "{message}"
    );
}
