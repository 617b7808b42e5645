//! `[log]`: the OTLP keys, refused by a build without the `otlp` feature, and checked in one
//! with it.

use super::*;
use crate::config::log::check;
use crate::config::source::Problems;

/// The problems `[log]` as `toml` has, in a build with (`built_in`) or without the feature.
fn problems_of(toml: &str, built_in: bool) -> String {
    let log: LogConfig = toml::from_str(toml).expect("a [log] table");
    let mut problems = Problems::new("test.toml");
    check(&log, built_in, &mut problems);
    match problems.into_result(()) {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn otlp_is_off_by_default_and_its_defaults_are_documented() {
    let log = parse(EXAMPLE).unwrap().log;
    assert_eq!(log.otlp_endpoint, None);
    assert_eq!(log.otlp_service_name, "xpool");
    assert_eq!(log.otlp_sample_ratio, 1.0);
}

#[test]
fn an_otlp_endpoint_is_refused_by_a_build_without_the_feature() {
    let error = problems_of("otlp_endpoint = \"http://collector:4317\"", false);
    assert!(
        error.contains("test.toml: log.otlp_endpoint: is set, but this xpool was built without")
            && error.contains("--features otlp"),
        "{error}"
    );
    // The same config, as a whole, in this build.
    let text = format!("{EXAMPLE}\n[log]\notlp_endpoint = \"http://collector:4317\"\n");
    match (parse(&text), OTLP_BUILT_IN) {
        (Ok(config), true) => assert_eq!(
            config.log.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        ),
        (Err(e), false) => assert!(e.to_string().contains("--features otlp"), "{e}"),
        (result, built_in) => panic!("built with otlp: {built_in}, got {result:?}"),
    }
}

#[test]
fn the_otlp_keys_are_checked() {
    for good in [
        "http://collector:4317",
        "http://127.0.0.1:4317/",
        "http://otel",
    ] {
        let toml = format!("otlp_endpoint = {good:?}");
        assert_eq!(problems_of(&toml, true), "", "{good}");
    }
    for (bad, expected) in [
        ("collector:4317", "is not an http://host URL"),
        ("not a url", "is not a URL"),
        ("https://collector:4317", "https is not supported yet"),
        ("http://collector:4318/v1/traces", "OTLP/gRPC takes none"),
        ("grpc://collector:4317", "is not an http://host URL"),
    ] {
        let error = problems_of(&format!("otlp_endpoint = {bad:?}"), true);
        assert!(
            error.starts_with("test.toml: log.otlp_endpoint: ") && error.contains(expected),
            "{bad}: {error}"
        );
    }
    let error = problems_of("otlp_service_name = \" \"\notlp_sample_ratio = 1.5", true);
    assert!(
        error.contains("log.otlp_service_name: must not be empty")
            && error.contains("log.otlp_sample_ratio: 1.5 is not 0.0 to 1.0"),
        "{error}"
    );
}

#[test]
fn the_otlp_keys_come_from_the_environment_too() {
    let config = parse_env(
        EXAMPLE,
        &[
            ("XPOOL__LOG__OTLP_SERVICE_NAME", "xpool-eu"),
            ("XPOOL__LOG__OTLP_SAMPLE_RATIO", "0.25"),
        ],
    )
    .unwrap();
    assert_eq!(config.log.otlp_service_name, "xpool-eu");
    assert_eq!(config.log.otlp_sample_ratio, 0.25);
    let endpoint = [("XPOOL__LOG__OTLP_ENDPOINT", "http://collector:4317")];
    match (parse_env(EXAMPLE, &endpoint), OTLP_BUILT_IN) {
        (Ok(config), true) => assert_eq!(
            config.log.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        ),
        (Err(e), false) => {
            let e = e.to_string();
            assert!(
                e.contains("XPOOL__LOG__OTLP_ENDPOINT: log.otlp_endpoint: is set, but"),
                "{e}"
            );
        }
        (result, built_in) => panic!("built with otlp: {built_in}, got {result:?}"),
    }
}
