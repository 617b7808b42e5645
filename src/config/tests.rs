use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

mod auth;
mod call_defaults;
mod callbacks;
mod cluster;
mod log;
mod rules;

/// The documented example, verbatim.
const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:50051"
[store]
path = "./xpool-data"
[[apps]]
name = "rides"
mode = "AXB"
base_url = "http://127.0.0.1:18080"
app_key = "k-axb"
app_secret = "s-axb"
rate_per_second = 100
numbers = [ { number = "+8617000000001", area_code = "010" } ]
"#;

/// A second app, appended to the example by tests that need two.
const FOOD: &str = r#"
[[apps]]
name = "food-delivery"
mode = "AX"
base_url = "https://rtcpns.example.com"
app_key = "k-ax"
app_secret = "s-ax"
numbers = [ { number = "+8617100000001", area_code = "021" } ]
"#;

const SECRET: &str = "Zq9-distinctive-SECRET-7731";

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml", Vec::new())
}

fn parse_env(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml", vars(pairs))
}

fn error_of(result: Result<Config, ConfigError>) -> String {
    result.expect_err("config should be rejected").to_string()
}

fn example_with(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "{from:?} not in the example");
    EXAMPLE.replace(from, to)
}

#[test]
fn the_example_parses_with_defaults() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(
        config.server.listen,
        "127.0.0.1:50051".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.server.shutdown_delay_seconds, 2);
    assert_eq!(config.server.shutdown_grace_seconds, 10);
    assert_eq!(config.server.max_request_wait_ms, 5000);
    assert_eq!(config.server.max_connections, 1000);
    assert_eq!(config.server.handshake_timeout_seconds, 10);
    assert_eq!(config.server.idle_timeout_seconds, 600);
    assert_eq!(config.server.http2_keepalive_interval_seconds, 30);
    assert_eq!(config.server.http2_keepalive_timeout_seconds, 10);
    assert_eq!(config.server.tcp_keepalive_seconds, 60);
    assert_eq!(config.server.max_message_bytes, 65536);
    assert_eq!(config.store.path, PathBuf::from("./xpool-data"));
    assert_eq!(config.store.cache_capacity_mb, 16);
    assert_eq!(config.store.released_retention_days, 7);
    assert_eq!(config.store.request_id_retention_hours, 24);
    assert_eq!(
        config.store.released_retention(),
        Duration::from_secs(7 * 24 * 3600)
    );
    assert_eq!(
        config.store.request_id_retention(),
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(config.expiry, ExpiryConfig::default());
    assert!(config.expiry.defensive_unbind);
    assert_eq!(config.reconcile.interval_seconds, 0);
    assert_eq!(config.reconcile.grace_seconds, 60);
    assert_eq!(config.reconcile.orphan_policy, OrphanPolicy::Adopt);

    let app = config.app("rides").unwrap();
    assert_eq!(app.mode, Mode::Axb);
    assert_eq!(app.base_url, "http://127.0.0.1:18080");
    assert_eq!(app.app_key, "k-axb");
    assert_eq!(app.app_secret.expose(), "s-axb");
    assert_eq!(app.auth_scheme, Scheme::Aksk);
    assert_eq!((app.rate_per_second, app.burst), (100, 10));
    assert_eq!(app.timeout_ms, 10_000);
    assert_eq!(app.pending_recheck_ms, 10_000, "defaults to timeout_ms");
    assert_eq!(app.max_request_wait_ms, 5000);
    assert_eq!(app.flow_control_backoff_ms, 5000);
    assert_eq!(app.auth_cool_off_seconds, 60);
    assert!(app.fallback_areas.is_empty());
    assert_eq!(app.cool_down_seconds, 300);
    assert_eq!(app.max_bindings_per_x, 5000);
    assert_eq!(app.extension_digits, 4);
    assert_eq!(app.max_extensions_per_x, None);
    assert_eq!(
        app.numbers,
        [NumberConfig {
            number: "+8617000000001".into(),
            area_code: "010".into()
        }]
    );
    assert!(
        app.check_numbers_on_add,
        "on by default for an app with a platform"
    );
    assert!(config.app("nope").is_none());
}

#[test]
fn an_empty_file_is_all_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert!(config.apps.is_empty());
}

#[test]
fn every_key_can_be_set_in_the_file() {
    let text = r#"
[server]
listen = "[::1]:7000"
shutdown_delay_seconds = 0
shutdown_grace_seconds = 3
max_request_wait_ms = 250
max_connections = 20
handshake_timeout_seconds = 2
idle_timeout_seconds = 0
http2_keepalive_interval_seconds = 0
http2_keepalive_timeout_seconds = 0
tcp_keepalive_seconds = 0
max_message_bytes = 1024
[store]
path = "/var/lib/xpool"
cache_capacity_mb = 8
released_retention_days = 0
request_id_retention_hours = 48
[expiry]
skew_grace_seconds = 1
defensive_unbind = false
batch_size = 10
round_budget_ms = 50
[reconcile]
interval_seconds = 300
grace_seconds = 120
orphan_policy = "release"
[[apps]]
name = "parcels_2"
mode = "axe"
base_url = "https://rtcpns.example.com/"
app_key = "k"
app_secret = "s"
auth_scheme = "wsse"
rate_per_second = 20
burst = 40
timeout_ms = 3000
pending_recheck_ms = 0
max_request_wait_ms = 100
flow_control_backoff_ms = 7000
auth_cool_off_seconds = 90
fallback_areas = ["021", "0755"]
cool_down_seconds = 600
max_bindings_per_x = 10
extension_digits = 2
max_extensions_per_x = 99
check_numbers_on_add = false
"#;
    let config = parse(text).unwrap();
    assert_eq!(config.server.listen.port(), 7000);
    assert_eq!(config.server.shutdown_delay_seconds, 0);
    let server = &config.server;
    assert_eq!(
        (server.max_connections, server.handshake_timeout_seconds),
        (20, 2)
    );
    assert_eq!(
        (server.idle_timeout_seconds, server.tcp_keepalive_seconds),
        (0, 0)
    );
    assert_eq!(server.http2_keepalive_interval_seconds, 0);
    assert_eq!(
        server.http2_keepalive_timeout_seconds, 0,
        "unused without pings"
    );
    assert_eq!(server.max_message_bytes, 1024);
    assert_eq!(config.reconcile.orphan_policy, OrphanPolicy::Release);
    assert!(!config.expiry.defensive_unbind);
    assert_eq!(config.store.released_retention(), Duration::ZERO);
    assert_eq!(
        config.store.request_id_retention(),
        Duration::from_secs(48 * 3600)
    );
    let app = config.app("parcels_2").unwrap();
    assert_eq!((app.mode, app.auth_scheme), (Mode::Axe, Scheme::Wsse));
    assert_eq!(app.base_url, "https://rtcpns.example.com");
    assert_eq!(app.max_extensions_per_x, Some(99));
    assert_eq!(app.pending_recheck_ms, 0);
    assert!(!app.check_numbers_on_add);

    let settings = app.upstream_settings();
    assert_eq!(settings.base_url, "https://rtcpns.example.com");
    assert_eq!(settings.scheme, Scheme::Wsse);
    assert_eq!(settings.timeout, Duration::from_secs(3));
    assert_eq!(
        (settings.rate_per_second.get(), settings.burst.get()),
        (20, 40)
    );
    assert_eq!(settings.max_wait, Duration::from_millis(100));
    assert_eq!(settings.flow_control_backoff, Duration::from_secs(7));
    assert_eq!(settings.auth_cool_off, Duration::from_secs(90));
    assert_eq!(settings.app_secret.expose(), "s");
}

#[test]
fn env_overrides_a_section_key() {
    let config = parse_env(
        EXAMPLE,
        &[
            ("XPOOL__SERVER__LISTEN", "0.0.0.0:50051"),
            ("XPOOL__SERVER__INSECURE", "true"),
            ("XPOOL__STORE__PATH", "/var/lib/xpool"),
            ("XPOOL__RECONCILE__INTERVAL_SECONDS", "300"),
            ("xpool__reconcile__grace_seconds", "1"),
            ("XPOOL__Expiry__Defensive_Unbind", "false"),
            ("HOME", "/root"),
            ("XPOOL_SERVER_LISTEN", "ignored: one underscore"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.server.listen,
        "0.0.0.0:50051".parse::<SocketAddr>().unwrap()
    );
    assert!(config.server.insecure);
    assert_eq!(config.store.path, PathBuf::from("/var/lib/xpool"));
    assert_eq!(config.reconcile.interval_seconds, 300);
    assert_eq!(
        config.reconcile.grace_seconds, 60,
        "lower-case prefix is ignored"
    );
    assert!(!config.expiry.defensive_unbind);
}

#[test]
fn env_overrides_an_app_key_by_name() {
    let text = format!("{EXAMPLE}{FOOD}");
    let config = parse_env(
        &text,
        &[
            ("XPOOL__APPS__RIDES__RATE_PER_SECOND", "200"),
            ("XPOOL__APPS__FOOD_DELIVERY__APP_SECRET", "0x1F"),
            ("XPOOL__APPS__Food-Delivery__APP_KEY", "12345"),
            ("XPOOL__SERVER__MAX_REQUEST_WAIT_MS", "50"),
        ],
    )
    .unwrap();
    let rides = config.app("rides").unwrap();
    assert_eq!((rides.rate_per_second, rides.burst), (200, 20));
    assert_eq!(rides.max_request_wait_ms, 50);
    let food = config.app("food-delivery").unwrap();
    // Strings that look like TOML numbers stay strings where the key wants a string.
    assert_eq!(food.app_secret.expose(), "0x1F");
    assert_eq!(food.app_key, "12345");
}

#[test]
fn env_overrides_a_list() {
    let config = parse_env(
        EXAMPLE,
        &[
            ("XPOOL__APPS__RIDES__FALLBACK_AREAS", r#"["021","0755"]"#),
            (
                "XPOOL__APPS__RIDES__NUMBERS",
                r#"[{ number = "+8617000000009", area_code = "021" }]"#,
            ),
        ],
    )
    .unwrap();
    let app = config.app("rides").unwrap();
    assert_eq!(app.fallback_areas, ["021", "0755"]);
    assert_eq!(app.numbers[0].number, "+8617000000009");
}

#[test]
fn unknown_variables_are_errors_naming_them() {
    let cases = [
        ("XPOOL__SERVR__LISTEN", "unknown section"),
        ("XPOOL__APPS__TAXI__RATE_PER_SECOND", "no app is named"),
        ("XPOOL__SERVER", "expected XPOOL__<SECTION>__<KEY>"),
        (
            "XPOOL__SERVER__LISTEN__PORT",
            "expected XPOOL__<SECTION>__<KEY>",
        ),
    ];
    for (name, expected) in cases {
        let message = error_of(parse_env(EXAMPLE, &[(name, "1")]));
        assert!(
            message.contains(&format!("environment: {name}: {expected}")),
            "{message}"
        );
    }
    // A typo in the key is caught by `deny_unknown_fields` and blamed on the variable.
    let message = error_of(parse_env(EXAMPLE, &[("XPOOL__STORE__PAHT", "/x")]));
    assert!(
        message.contains("XPOOL__STORE__PAHT: store.paht: unknown field"),
        "{message}"
    );
    let message = error_of(parse_env(
        EXAMPLE,
        &[("XPOOL__STORE__REQUEST_ID_RETENTION_HOURS", "9000")],
    ));
    assert!(
        message.contains(
            "XPOOL__STORE__REQUEST_ID_RETENTION_HOURS: store.request_id_retention_hours: 9000 is more than 8760"
        ),
        "{message}"
    );
    let message = error_of(parse_env(EXAMPLE, &[("XPOOL__APPS__RIDES__BURST", "lots")]));
    assert!(
        message.contains("XPOOL__APPS__RIDES__BURST: apps[rides].burst: "),
        "{message}"
    );
}

fn secret_file(content: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file
}

fn with_secret_file(path: &std::path::Path) -> String {
    let line = format!("app_secret_file = {:?}", path.display().to_string());
    example_with("app_secret = \"s-axb\"", &line)
}

#[test]
fn a_secret_can_come_from_a_file() {
    let file = secret_file(&format!("{SECRET}\r\n"));
    let config = parse(&with_secret_file(file.path())).unwrap();
    assert_eq!(config.apps[0].app_secret.expose(), SECRET);
}

#[test]
fn x_mode_needs_no_upstream() {
    let text = r#"
[[apps]]
name = "calls"
mode = "X"
numbers = [ { number = "+8617200000001", area_code = "010" } ]
"#;
    let config = parse(text).unwrap();
    let app = config.app("calls").unwrap();
    assert!(!app.has_upstream());
    assert!(app.base_url.is_empty() && app.app_key.is_empty() && app.app_secret.is_empty());
    assert!(!app.check_numbers_on_add, "no platform to ask");
}

#[test]
fn load_reads_a_file_and_names_it() {
    let file = secret_file(EXAMPLE);
    let config = Config::load(file.path(), Vec::new()).unwrap();
    assert_eq!(config.apps.len(), 1);
    let bad = secret_file(&example_with("\"010\"", "\"x\""));
    let message = error_of(Config::load(bad.path(), Vec::new()));
    assert!(
        message.starts_with(&bad.path().display().to_string()),
        "{message}"
    );
    let missing = Config::load(std::path::Path::new("/nonexistent/xpool.toml"), Vec::new());
    assert!(error_of(missing).contains("/nonexistent/xpool.toml"));
}

#[test]
fn the_embedded_default_has_one_demo_app_per_mode() {
    let mut config = Config::embedded_default(Vec::new()).unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.store.path, PathBuf::from("./xpool-data"));
    assert_eq!(config.apps.len(), Mode::ALL.len());
    for mode in Mode::ALL {
        let name = format!("demo-{}", mode.as_str().to_ascii_lowercase());
        let app = config.app(&name).unwrap();
        assert_eq!(app.mode, mode);
        assert_eq!(app.base_url, EMBEDDED_SIM_URL);
        let areas: std::collections::HashSet<_> =
            app.numbers.iter().map(|n| n.area_code.as_str()).collect();
        assert_eq!(areas, ["010", "021"].into());
    }
    config.point_at_embedded_sim("http://127.0.0.1:40123/");
    assert!(
        config
            .apps
            .iter()
            .all(|a| a.base_url == "http://127.0.0.1:40123")
    );
}

#[test]
fn env_overrides_apply_to_the_embedded_default() {
    let config = Config::embedded_default(vars(&[
        ("XPOOL__SERVER__LISTEN", "0.0.0.0:6000"),
        ("XPOOL__SERVER__INSECURE", "true"),
        ("XPOOL__APPS__DEMO_AXE__EXTENSION_DIGITS", "2"),
    ]))
    .unwrap();
    assert_eq!(config.server.listen.port(), 6000);
    let axe = config.app("demo-axe").unwrap();
    assert_eq!(axe.extension_digits, 2);
    let message = error_of(Config::embedded_default(vars(&[(
        "XPOOL__APPS__RIDES__BURST",
        "1",
    )])));
    assert!(message.contains("XPOOL__APPS__RIDES__BURST"), "{message}");
}

#[test]
fn secrets_never_print() {
    let text = example_with("s-axb", SECRET);
    let config = parse(&text).unwrap();
    let debug = format!("{config:?} {:?}", config.apps[0].upstream_settings());
    assert!(!debug.contains(SECRET), "{debug}");
    let embedded = format!("{:?}", Config::embedded_default(Vec::new()).unwrap());
    assert!(!embedded.contains("demo-ax-secret"), "{embedded}");

    let failures = [
        // Other problems in a config that holds the secret.
        parse(&text.replace("\"010\"", "\"x\"")),
        // A secret that is not a string.
        parse(&example_with("\"s-axb\"", "98765432123")),
        parse(&example_with("\"s-axb\"", &format!("[\"{SECRET}\"]"))),
        // A syntax error on the secret's own line.
        parse(&example_with("\"s-axb\"", &format!("\"{SECRET}"))),
        parse(&example_with("\"s-axb\"", SECRET)),
        // Secrets in variables for an unknown app, a typo'd key, or both sources.
        parse_env(EXAMPLE, &[("XPOOL__APPS__TAXI__APP_SECRET", SECRET)]),
        parse_env(EXAMPLE, &[("XPOOL__APPS__RIDES__APP_SECRT", SECRET)]),
        parse_env(
            &with_secret_file(std::path::Path::new("/x")),
            &[("XPOOL__APPS__RIDES__APP_SECRET", SECRET)],
        ),
    ];
    for result in failures {
        let error = result.expect_err("should be rejected");
        let text = format!("{error} {error:?}");
        assert!(
            !text.contains(SECRET) && !text.contains("98765432123"),
            "{text}"
        );
    }
}

/// The shipped example loads, and the `[server]` values it documents are the defaults.
#[test]
fn the_deploy_example_is_valid_and_documents_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/xpool.toml");
    let config = Config::load(&path, Vec::new()).unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert!(config.apps.iter().all(|app| app.check_numbers_on_add));
    assert!(config.callbacks.listen.is_some(), "the receiver is on");
    let callbacks = CallbacksConfig {
        listen: None,
        ..config.callbacks.clone()
    };
    assert_eq!(callbacks, CallbacksConfig::default());
    assert_eq!(config.watch, WatchConfig::default());

    // Its commented X-mode app is valid too.
    let text = std::fs::read_to_string(&path).unwrap();
    let (before, x_mode) = text.split_at(text.find("\n# X mode:").unwrap());
    let uncommented: String = x_mode
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(key) if key.starts_with('[') || key.split_once(" = ").is_some() => key,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let config = parse(&format!("{before}{uncommented}")).unwrap();
    let x = config.app("xchat").unwrap();
    assert_eq!(x.mode, Mode::X);
    assert!(x.verify_push_signature && x.close_hint_tone.is_some());
}
