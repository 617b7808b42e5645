//! Cluster mode's membership, per-app leadership, `xpool cluster status` and `xpool serve`
//! replicas (an X-mode app, and an AXB app against the simulator), against real 3-member etcd
//! clusters on loopback (`xpool_etcd::testing::EtcdCluster`; each test skips with
//! one line when etcd is not installed). Every test is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod common;
mod leadership;
mod membership;
mod platform;
mod pushes;
mod serve;
mod status;
