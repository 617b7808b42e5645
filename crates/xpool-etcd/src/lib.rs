//! etcd v3 for xpool's cluster mode: a client, per-key leadership with fencing, a node registry,
//! and (feature `testing`) a harness that runs real etcd clusters as child processes.
//!
//! # Why not the `etcd-client` crate
//! Its build script needs a system `protoc`, and xpool must build and test on a machine with
//! nothing but Rust. So etcd's v3 protos are vendored in `proto/` (see its README) and compiled
//! by this crate's `build.rs` with the vendored protoc; [`pb`] holds the generated stubs.
//!
//! # The client's contract
//! - Every call is bounded by a deadline ([`ClientConfig::request_timeout`], or per call with
//!   [`Client::with_timeout`]): quorum loss surfaces as [`Error::Unavailable`] or
//!   [`Error::Timeout`], never as a hang.
//! - Calls fail over between the configured endpoints. Reads retry on any transient failure;
//!   writes retry only when etcd provably did not process them (connection refused, "no leader"
//!   from a member that knows it has none, an expired auth token), because a write whose answer
//!   was lost may still commit. A write that fails with `Unavailable`/`Timeout` therefore has an
//!   unknown outcome: make it safe to retry with a compare (see [`election`] for fencing).
//! - Every request carries etcd's `hasleader` metadata, so a member cut off from its leader
//!   rejects at once instead of waiting for its own internal timeout.
//!
//! # Modules
//! [`Client`] (connection, failover, auth), key/value calls ([`kv`]), transactions ([`txn`]),
//! leases and keep-alive ([`lease`]), watches that resume across failures ([`watch`]), members
//! and status ([`cluster`]), leadership ([`election`]) and the node registry ([`registry`]).

mod client;
pub mod cluster;
mod config;
pub mod election;
mod error;
pub mod kv;
pub mod lease;
pub mod registry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod txn;
pub mod watch;

pub use client::Client;
pub use config::{ClientConfig, Credentials, TlsConfig};
pub use error::Error;
pub use kv::{KeyValue, Range, RangeResponse};
pub use lease::{Lease, LeaseKeeper};
pub use txn::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};
pub use watch::{Event, EventKind, WatchBatch, Watcher};

/// The generated etcd v3 API (client stubs and messages), for calls this crate does not wrap
/// (user and role management, for example).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// `mvccpb`: keys, values and watch events.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// `authpb`: users, roles and permissions.
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    /// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
