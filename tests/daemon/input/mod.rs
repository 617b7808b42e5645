//! Bad input: every validation rule of the API answers INVALID_ARGUMENT naming the field (or
//! NOT_FOUND for an unknown but well-formed binding), and changes nothing, neither locally nor on
//! the platform; random requests never crash the daemon. Also health checking, server reflection
//! (v1 and v1alpha) and a clean shutdown.
//!
//! Split by what it tests: `bind` (Bind), `lookup` (Unbind and GetBinding), `list`
//! (ListBindings), `pool` (the pool service), `limits` (huge values), `decode` (messages that do
//! not decode or are too large), `random` (random requests) and `service` (health, reflection,
//! shutdown); the helpers below are shared.

mod bind;
mod decode;
mod limits;
mod list;
mod lookup;
mod pool;
mod random;
mod service;

use std::time::Duration;

use proptest::prelude::*;
use tonic::transport::Channel;
use tonic::{Code, Status};
use xpool::grpc::pb;

use crate::support::*;

/// The simulator apps behind the daemon's upstream apps.
const KEYS: [&str; 4] = ["k-axb", "k-ax", "k-axe", "k-axyb"];
/// Every configured app.
const APPS: [&str; 5] = ["rides", "drivers", "stores", "chat", "local"];

// Helpers -------------------------------------------------------------------------------------

/// Requests the simulator has counted, per app key.
async fn sim_requests(d: &Daemon) -> Vec<u64> {
    let mut out = Vec::new();
    for key in KEYS {
        out.push(d.sim.requests(key).await);
    }
    out
}

/// Every number of every app, as the daemon reports it.
async fn all_numbers(d: &Daemon) -> Vec<pb::NumberInfo> {
    let mut c = d.pool().await;
    let mut out = Vec::new();
    for app in APPS {
        out.extend(list_numbers(&mut c, app).await);
    }
    out
}

/// What a rejected request must leave alone.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) requests: Vec<u64>,
    pub(crate) sim_bindings: Vec<Vec<serde_json::Value>>,
    pub(crate) local: Vec<pb::Binding>,
    pub(crate) numbers: Vec<pb::NumberInfo>,
}

pub(crate) async fn snapshot(d: &Daemon) -> Snapshot {
    let mut sim_bindings = Vec::new();
    for key in KEYS {
        sim_bindings.push(d.sim.bindings(key).await);
    }
    Snapshot {
        requests: sim_requests(d).await,
        sim_bindings,
        local: d.list("", pb::BindingState::Unspecified).await,
        numbers: all_numbers(d).await,
    }
}

pub(crate) async fn assert_unchanged(d: &Daemon, before: &Snapshot, case: &str) {
    let after = snapshot(d).await;
    assert_eq!(
        after.requests, before.requests,
        "{case}: the platform was called"
    );
    assert_eq!(
        after.sim_bindings, before.sim_bindings,
        "{case}: the platform's bindings changed"
    );
    assert_eq!(after.local, before.local, "{case}: local bindings changed");
    assert_eq!(after.numbers, before.numbers, "{case}: the pool changed");
}

/// The call failed with `code` and a message that starts with `field:`; an INVALID_ARGUMENT
/// also names `field` in its `BadRequest` (see [`assert_bad_field`]).
fn assert_rejected<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
    field: &str,
    case: &str,
) {
    let err = match result {
        Ok(r) => panic!("{case}: accepted: {:?}", r.into_inner()),
        Err(e) => e,
    };
    assert_eq!(err.code(), code, "{case}: {err:?}");
    assert!(
        err.message().starts_with(&format!("{field}:")),
        "{case}: the message does not name {field}: {:?}",
        err.message()
    );
    if code == Code::InvalidArgument {
        assert_bad_field(&err, field);
    }
}

/// The call failed with NOT_FOUND, reason `UNKNOWN_APP`, naming `app`.
fn assert_unknown_app<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    app: &str,
    case: &str,
) {
    let err = match result {
        Ok(r) => panic!("{case}: accepted: {:?}", r.into_inner()),
        Err(e) => e,
    };
    let r = assert_reason(&err, Code::NotFound, "UNKNOWN_APP", &[]);
    assert_eq!(r.meta("app"), app, "{case}");
}

/// [`assert_rejected`] with INVALID_ARGUMENT, the answer to a malformed request.
pub(crate) fn assert_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    field: &str,
    case: &str,
) {
    assert_rejected(result, Code::InvalidArgument, field, case);
}

/// `r` changed by `f`.
fn with<R>(mut r: R, f: impl FnOnce(&mut R)) -> R {
    f(&mut r);
    r
}

fn axb() -> pb::BindRequest {
    bind("rides", &party(1), Some(&party(2)))
}
fn ax() -> pb::BindRequest {
    bind("drivers", &party(1), None)
}
fn axe() -> pb::BindRequest {
    bind("stores", &party(1), None)
}
fn axyb() -> pb::BindRequest {
    bind("chat", &party(1), Some(&party(2)))
}
fn x_mode() -> pb::BindRequest {
    bind("local", &party(1), Some(&party(2)))
}
