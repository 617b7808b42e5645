//! Shared by the integration tests: every test runs against a real 3-member etcd cluster on
//! loopback (skipping with one line only when etcd is not installed) and is bounded in time.

#![allow(dead_code)]

use std::{future::Future, time::Duration};

pub use xpool_etcd::testing::EtcdCluster;

/// The most any one test may take, cluster start-up included.
pub const TEST_BOUND: Duration = Duration::from_secs(90);

/// Runs a test body, failing it if it takes longer than [`TEST_BOUND`].
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    if tokio::time::timeout(TEST_BOUND, body).await.is_err() {
        panic!("test did not finish within {TEST_BOUND:?}");
    }
}

/// Awaits `future`, failing the test if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not happen within {limit:?}"),
    }
}
