//! The gRPC contract from the outside: the protos against buf's lint rules (as far as the
//! descriptor set shows them), a Python client generated from `proto/`, the README's
//! grpcurl commands run as written against `xpool serve` with no config, and the example
//! clients of `examples/` against a daemon over TLS with a token. The Python packages and
//! grpcurl come from `tools.rs`.

mod examples;
mod proto_lint;
mod python_client;
mod readme;
mod shell;
pub(crate) mod tools;
