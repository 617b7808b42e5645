//! Compiles etcd's v3 API protos (vendored in `proto/`, see its README) with the protoc shipped
//! inside `protoc-bin-vendored`, client side only, so a fresh machine needs nothing beyond
//! rustup's toolchain (the `etcd-client` crate needs a system protoc).

use std::error::Error;

const PROTOS: &[&str] = &["proto/kv.proto", "proto/auth.proto", "proto/rpc.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, PROTOS, &["proto"])?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
