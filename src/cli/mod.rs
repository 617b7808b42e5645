//! What the binary adds to the daemon library: `serve` (signals, and the embedded default's
//! in-process simulator) and the `bench` load generator.

pub mod bench;
pub mod embedded;
pub mod serve;
