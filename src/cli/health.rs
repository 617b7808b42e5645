//! `xpool health`: one `grpc.health.v1.Health/Check` of a running daemon, for container
//! HEALTHCHECKs and scripts. Exit codes: 0 SERVING, 1 anything else (not serving, or no answer:
//! Docker reserves 2).

use std::time::Duration;

use clap::Args;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    daemon: super::DaemonArgs,
    /// The service to ask about (empty: the daemon as a whole).
    #[arg(long, default_value = "")]
    service: String,
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
            eprintln!("xpool health: {}: {e:#}", args.daemon.server);
            1
        }
        Err(_) => {
            eprintln!(
                "xpool health: {}: no answer within {limit:?}",
                args.daemon.server
            );
            1
        }
    }
}

async fn check(args: &HealthArgs) -> anyhow::Result<ServingStatus> {
    let channel = args.daemon.channel().await?;
    let mut client = HealthClient::with_interceptor(channel, args.daemon.bearer()?);
    let reply = client
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await?;
    Ok(reply.into_inner().status())
}
