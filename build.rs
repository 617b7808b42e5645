//! Compiles the gRPC API in `proto/xpool/v1/` with the protoc shipped inside
//! `protoc-bin-vendored`, so a fresh machine needs nothing beyond rustup's toolchain, and writes
//! the descriptor set that the server's reflection service serves.

use std::{env, error::Error, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/xpool/v1/binding.proto",
    "proto/xpool/v1/calls.proto",
    "proto/xpool/v1/pool.proto",
    "proto/xpool/v1/reconcile.proto",
    "proto/xpool/v1/store.proto",
    "proto/xpool/v1/watch.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("xpool_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
