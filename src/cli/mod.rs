//! What the binary adds to the daemon library: `serve` (signals, and the embedded default's
//! in-process simulator), the `bench` load generator, the `store` tools and the `reconcile`
//! client.

pub mod bench;
pub mod embedded;
pub mod reconcile;
pub mod serve;
pub mod store;
