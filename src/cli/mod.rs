//! What the binary adds to the daemon library: `serve` (signals, and the embedded default's
//! in-process simulator), the `bench` load generator and the `store` tools.

pub mod bench;
pub mod embedded;
pub mod serve;
pub mod store;
