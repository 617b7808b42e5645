//! Cluster mode's membership, per-app leadership and `xpool cluster status`, against real
//! 3-member etcd clusters on loopback (`xpool_etcd::testing::EtcdCluster`; each test skips with
//! one line when etcd is not installed). Every test is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod common;
mod leadership;
mod membership;
mod serve;
mod status;
