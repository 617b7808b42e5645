//! xpool: a daemon that owns a pool of Huawei Cloud PrivateNumber numbers.
//!
//! `platform` is the wire contract, `upstream` the client that calls the platform, `sim` a local
//! simulator of the platform, and `grpc` the daemon's API.
#![forbid(unsafe_code)]

pub mod grpc;
pub mod platform;
pub mod sim;
pub mod upstream;
