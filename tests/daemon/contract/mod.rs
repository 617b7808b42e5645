//! The gRPC contract from the outside: the protos against buf's lint rules (as far as the
//! descriptor set shows them), a Python client generated from `proto/`, and the README's
//! grpcurl commands run as written against `xpool serve` with no config. The Python packages
//! and grpcurl come from `tools.rs`.

mod proto_lint;
mod python_client;
mod readme;
mod shell;
pub(crate) mod tools;
