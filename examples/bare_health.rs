//! The gRPC hop's floor: a tonic server with only `grpc.health.v1.Health`, none of the
//! daemon's layers, on the same runtime as `xpool serve` (multi-thread, one worker per core).
//! BENCHMARKS.md drives it with `xpool bench --target grpc --server … --mix health=1` to tell
//! what tonic and the machine cost per call from what the daemon adds.
//!
//! ```sh
//! cargo run --release --example bare_health -- 127.0.0.1:50061
//! ```

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50061".to_owned())
        .parse()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    println!("listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(health)
        .serve(addr)
        .await?;
    Ok(())
}
