//! What only the platform tests need on top of [`crate::support`]: result-code assertions and
//! party numbers.

use serde_json::Value;
use xpool::upstream::{ErrorClass, UpstreamError};

pub use crate::support::{Setup, Sim};

/// Asserts a platform error with this result code; returns it.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, UpstreamError>,
    code: &str,
) -> UpstreamError {
    match result {
        Err(e) if e.code() == Some(code) => e,
        other => panic!("expected result code {code}, got {other:?}"),
    }
}

/// Asserts a platform error with this result code and this class; returns it.
#[track_caller]
pub fn expect_refusal<T: std::fmt::Debug>(
    result: Result<T, UpstreamError>,
    code: &str,
    class: ErrorClass,
) -> UpstreamError {
    let e = expect_code(result, code);
    assert_eq!(e.class(), class, "{e}");
    e
}

#[track_caller]
pub fn expect_class<T: std::fmt::Debug>(
    result: Result<T, UpstreamError>,
    class: ErrorClass,
) -> UpstreamError {
    match result {
        Err(e) if e.class() == class => e,
        other => panic!("expected {class}, got {other:?}"),
    }
}

/// Reads `resultcode` and `resultdesc` of a raw answer.
pub async fn raw_result(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("a JSON body");
    let code = v["resultcode"]
        .as_str()
        .expect("resultcode is a JSON string")
        .to_owned();
    (
        status,
        code,
        v["resultdesc"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A raw signed GET of `path_and_query` as `app_key`: status, result code and description.
pub async fn raw_get(sim: &Sim, path_and_query: &str, app_key: &str) -> (u16, String, String) {
    raw_send(sim.raw(reqwest::Method::GET, path_and_query, app_key)).await
}

/// Sends a raw request: status, result code and description.
pub async fn raw_send(req: reqwest::RequestBuilder) -> (u16, String, String) {
    raw_result(req.send().await.unwrap()).await
}

pub const A1: &str = "+8613800000001";
pub const A2: &str = "+8613800000002";
pub const A3: &str = "+8613800000003";
pub const A4: &str = "+8613800000004";
pub const A5: &str = "+8613800000005";
pub const A6: &str = "+8613800000006";
pub const A7: &str = "+8613800000007";
