//! Every validation rule has a failing case whose message names the key.

use super::*;

/// `text` is rejected with a problem at `key`.
#[track_caller]
fn assert_rejects(text: &str, key: &str) -> String {
    let Err(error) = parse(text) else {
        panic!("a config bad at {key} was accepted:\n{text}");
    };
    let message = error.to_string();
    assert!(
        message.contains(&format!("test.toml: {key}: ")),
        "expected a problem at {key}, got:\n{message}"
    );
    message
}

#[test]
fn secret_file_errors_name_the_file_not_the_content() {
    let file = secret_file(SECRET);
    let both = example_with(
        "app_key =",
        &format!("app_secret_file = {:?}\napp_key =", file.path()),
    );
    let message = assert_rejects(&both, "apps[rides].app_secret_file");
    assert!(message.contains("both given"), "{message}");
    assert!(!message.contains(SECRET), "{message}");

    let missing = with_secret_file(std::path::Path::new("/nonexistent/xpool-secret"));
    let message = assert_rejects(&missing, "apps[rides].app_secret_file");
    assert!(message.contains("/nonexistent/xpool-secret"), "{message}");

    let empty = secret_file("\n");
    let message = assert_rejects(
        &with_secret_file(empty.path()),
        "apps[rides].app_secret_file",
    );
    assert!(message.contains("is empty"), "{message}");
}

#[test]
fn each_rule_names_its_key() {
    let two = format!("{EXAMPLE}{FOOD}");
    let cases: Vec<(String, &str)> = vec![
        (two.replace("food-delivery", "rides"), "apps[rides].name"),
        (example_with("\"rides\"", "\"Rides!\""), "apps[0].name"),
        (example_with("name = \"rides\"\n", ""), "apps[0].name"),
        (example_with("\"AXB\"", "\"AXZ\""), "apps[rides].mode"),
        (example_with("mode = \"AXB\"\n", ""), "apps[rides].mode"),
        (
            example_with("base_url = \"http://127.0.0.1:18080\"\n", ""),
            "apps[rides].base_url",
        ),
        (
            example_with("http://127.0.0.1:18080", "ftp://host"),
            "apps[rides].base_url",
        ),
        (
            example_with("http://127.0.0.1:18080", "127.0.0.1:18080"),
            "apps[rides].base_url",
        ),
        (
            example_with("app_key = \"k-axb\"\n", ""),
            "apps[rides].app_key",
        ),
        (example_with("\"s-axb\"", "\"\""), "apps[rides].app_secret"),
        (
            example_with("app_secret = \"s-axb\"\n", ""),
            "apps[rides].app_secret",
        ),
        (
            two.replace("\"k-ax\"", "\"k-axb\"")
                .replace("https://rtcpns.example.com", "http://127.0.0.1:18080"),
            "apps[food-delivery].app_key",
        ),
        (
            example_with("\"+8617000000001\"", "\"8617000000001\""),
            "apps[rides].numbers[0].number",
        ),
        (
            example_with(
                "\"010\" }",
                "\"010\" }, { number = \"+8617000000001\", area_code = \"021\" }",
            ),
            "apps[rides].numbers[1].number",
        ),
        (
            two.replace("+8617100000001", "+8617000000001"),
            "apps[food-delivery].numbers[0].number",
        ),
        (
            example_with("\"010\"", "\"10a\""),
            "apps[rides].numbers[0].area_code",
        ),
        (
            example_with(", area_code = \"010\"", ""),
            "apps[rides].numbers[0].area_code",
        ),
        (
            example_with("area_code = \"010\"", "area_code = \"010\", extra = 1"),
            "apps[rides].numbers[0].extra",
        ),
        (
            example_with(
                "rate_per_second = 100",
                "fallback_areas = [\"021\", \"2x\"]",
            ),
            "apps[rides].fallback_areas[1]",
        ),
        (
            example_with("rate_per_second = 100", "rate_per_second = 0"),
            "apps[rides].rate_per_second",
        ),
        (
            example_with("rate_per_second = 100", "burst = 0"),
            "apps[rides].burst",
        ),
        (
            example_with("rate_per_second = 100", "rate_per_second = -1"),
            "apps[rides].rate_per_second",
        ),
        (
            example_with("rate_per_second = 100", "timeout_ms = 0"),
            "apps[rides].timeout_ms",
        ),
        (
            example_with("rate_per_second = 100", "max_bindings_per_x = 0"),
            "apps[rides].max_bindings_per_x",
        ),
        (
            example_with("rate_per_second = 100", "extension_digits = 5"),
            "apps[rides].extension_digits",
        ),
        (
            example_with(
                "rate_per_second = 100",
                "extension_digits = 2\nmax_extensions_per_x = 100",
            ),
            "apps[rides].max_extensions_per_x",
        ),
        (
            example_with("rate_per_second = 100", "rate_per_sec = 1"),
            "apps[rides].rate_per_sec",
        ),
        (
            example_with("\"127.0.0.1:50051\"", "\"localhost:50051\""),
            "server.listen",
        ),
        (example_with("\"./xpool-data\"", "\"\""), "store.path"),
        (
            example_with("path =", "cache_capacity_mb = 0\npath ="),
            "store.cache_capacity_mb",
        ),
        (
            example_with("path =", "released_retention_days = -1\npath ="),
            "store.released_retention_days",
        ),
        (
            example_with("path =", "released_retention_days = 3651\npath ="),
            "store.released_retention_days",
        ),
        (
            example_with("path =", "released_retention_days = \"7d\"\npath ="),
            "store.released_retention_days",
        ),
        (
            example_with("path =", "request_id_retention_hours = -24\npath ="),
            "store.request_id_retention_hours",
        ),
        (
            example_with("path =", "request_id_retention_hours = 8761\npath ="),
            "store.request_id_retention_hours",
        ),
        (
            format!("{EXAMPLE}[expiry]\nbatch_size = 0\n"),
            "expiry.batch_size",
        ),
        (
            format!("{EXAMPLE}[reconcile]\norphan_policy = \"delete\"\n"),
            "reconcile.orphan_policy",
        ),
        (format!("{EXAMPLE}[sevrer]\n"), "sevrer"),
        (
            example_with("[store]", "max_connections = 0\n[store]"),
            "server.max_connections",
        ),
        (
            example_with("[store]", "handshake_timeout_seconds = 0\n[store]"),
            "server.handshake_timeout_seconds",
        ),
        (
            example_with("[store]", "http2_keepalive_timeout_seconds = 0\n[store]"),
            "server.http2_keepalive_timeout_seconds",
        ),
        (
            example_with("[store]", "max_message_bytes = 1023\n[store]"),
            "server.max_message_bytes",
        ),
        (
            example_with("[store]", "max_message_bytes = 67108865\n[store]"),
            "server.max_message_bytes",
        ),
        (
            example_with("[store]", "max_connections = -1\n[store]"),
            "server.max_connections",
        ),
        (
            format!(
                "{EXAMPLE}[[apps]]\nname = \"calls\"\nmode = \"X\"\ncheck_numbers_on_add = true\n"
            ),
            "apps[calls].check_numbers_on_add",
        ),
        (
            example_with("rate_per_second = 100", "check_numbers_on_add = \"yes\""),
            "apps[rides].check_numbers_on_add",
        ),
    ];
    for (text, key) in cases {
        assert_rejects(&text, key);
    }
}

#[test]
fn a_bad_number_is_reported_as_documented() {
    let numbers = r#"numbers = [
  { number = "+8617000000001", area_code = "010" },
  { number = "+8617000000002", area_code = "010" },
  { number = "+86 170", area_code = "010" },
]"#;
    let text = example_with(
        r#"numbers = [ { number = "+8617000000001", area_code = "010" } ]"#,
        numbers,
    );
    let message = error_of(Config::from_toml_str(
        &text,
        "deploy/xpool.toml",
        Vec::new(),
    ));
    assert_eq!(
        message,
        r#"deploy/xpool.toml: apps[rides].numbers[2].number: "+86 170" is not a number in global format (+<country><digits>)"#
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = example_with("\"127.0.0.1:50051\"", "\"nowhere\"").replace("\"010\"", "\"x\"");
    let message = error_of(parse(&text));
    assert!(
        message.contains("server.listen") && message.contains("area_code"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 2, "{message}");
}

#[test]
fn syntax_errors_give_a_position() {
    let text = example_with("rate_per_second = 100", "rate_per_second = = 100");
    let message = error_of(parse(&text));
    assert!(message.starts_with("test.toml:12:"), "{message}");
    assert!(message.contains("invalid TOML"), "{message}");
}
