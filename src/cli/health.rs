//! `xpool health`: one `grpc.health.v1.Health/Check` of a running daemon, for container
//! HEALTHCHECKs and scripts. Exit codes: 0 SERVING, 1 answered but not serving, 2 no answer.

use std::time::Duration;

use clap::Args;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The daemon's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The service to ask about (empty: the daemon as a whole).
    #[arg(long, default_value = "")]
    service: String,
    /// Bearer token, needed only when `auth.open_health` is false.
    #[arg(long, env = "XPOOL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout_seconds: u64,
}

/// Returns the process exit code.
pub async fn run(args: HealthArgs) -> i32 {
    let limit = Duration::from_secs(args.timeout_seconds.max(1));
    match tokio::time::timeout(limit, check(&args)).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("SERVING");
            0
        }
        Ok(Ok(status)) => {
            println!("{}", status.as_str_name());
            1
        }
        Ok(Err(e)) => {
            eprintln!("xpool health: {}: {e:#}", args.server);
            2
        }
        Err(_) => {
            eprintln!("xpool health: {}: no answer within {limit:?}", args.server);
            2
        }
    }
}

async fn check(args: &HealthArgs) -> anyhow::Result<ServingStatus> {
    let bearer = super::Bearer::new(args.token.as_deref())?;
    let channel = Channel::from_shared(args.server.clone())?.connect().await?;
    let mut client = HealthClient::with_interceptor(channel, bearer);
    let reply = client
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await?;
    Ok(reply.into_inner().status())
}
