//! `xpool cluster status`: the cluster as etcd sees it (see [`xpool::cluster::status`]), read
//! with the `[cluster]` section of the daemon's config.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use xpool::cluster::{self, Prefix, status};
use xpool::config::{ClusterConfig, Config};

use super::admin::{Output, print_json};

/// The exit codes, as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  etcd answered
  1  the config is invalid or has no [cluster] section
  2  etcd could not be reached, or did not answer within --timeout-seconds";

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The etcd members (health, revision), the registered replicas (address, version, start,
    /// applied revision and lag) and each app's leader.
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The daemon's config (TOML), for its [cluster] section (endpoints, prefix, etcd TLS and
    /// credentials) and apps; XPOOL__SECTION__KEY variables override it. Not needed with
    /// --etcd-endpoints.
    #[arg(long)]
    config: Option<PathBuf>,
    /// etcd client URLs (comma-separated or repeated), instead of or over the config's
    /// `cluster.etcd_endpoints`; without --config, etcd is reached without TLS client
    /// certificates or credentials.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// The replicas' `cluster.key_prefix`, over the config's (default without a config:
    /// /xpool/).
    #[arg(long, value_name = "PREFIX")]
    key_prefix: Option<String>,
    /// How to print the answer: a table, or JSON (keys in lowerCamelCase).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Give up when etcd has not answered within this many seconds (exit 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_seconds: u64,
}

/// Returns the process exit code.
pub async fn run(args: ClusterArgs) -> i32 {
    match args.command {
        ClusterCommand::Status(args) => status(args).await,
    }
}

async fn status(args: StatusArgs) -> i32 {
    let (cluster, apps) = match cluster_of(&args) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("xpool cluster status: {e}");
            return 1;
        }
    };
    let cluster = &cluster;
    let limit = Duration::from_secs(args.timeout_seconds);
    let client = match cluster::etcd_client(cluster, limit) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("xpool cluster status: {e}");
            return 1;
        }
    };
    let prefix = Prefix::new(cluster.key_prefix.clone());
    let endpoints = cluster.etcd_endpoints.join(", ");
    match tokio::time::timeout(limit, status::gather(&client, &prefix, &apps)).await {
        Ok(Ok(found)) => {
            match args.output {
                Output::Table => print!("{}", status::render(&found)),
                Output::Json => print_json(&status::to_json(&found)),
            }
            0
        }
        Ok(Err(e)) => {
            eprintln!("xpool cluster status: etcd at {endpoints}: {e}");
            2
        }
        Err(_) => {
            eprintln!(
                "xpool cluster status: etcd at {endpoints} did not answer within {} s",
                limit.as_secs()
            );
            2
        }
    }
}

/// The `[cluster]` section to read etcd with, and the configured apps (shown even without a
/// leader): from `--config` (or, without flags, the embedded default with its overrides),
/// with `--etcd-endpoints` and `--key-prefix` over it; from the flags alone without a config.
fn cluster_of(args: &StatusArgs) -> Result<(ClusterConfig, Vec<String>), String> {
    let (mut cluster, apps) = if args.config.is_none() && !args.etcd_endpoints.is_empty() {
        (
            ClusterConfig::for_reading(args.etcd_endpoints.clone()),
            Vec::new(),
        )
    } else {
        let config = match &args.config {
            Some(path) => Config::load(path, std::env::vars()),
            None => Config::embedded_default(std::env::vars()),
        }
        .map_err(|e| e.to_string())?;
        let Some(cluster) = config.cluster else {
            let origin = args
                .config
                .as_ref()
                .map_or("the embedded default".to_owned(), |p| {
                    p.display().to_string()
                });
            return Err(format!(
                "{origin} has no [cluster] section (or give --etcd-endpoints)"
            ));
        };
        let apps = config.apps.iter().map(|a| a.name.clone()).collect();
        (cluster, apps)
    };
    if !args.etcd_endpoints.is_empty() {
        cluster.etcd_endpoints = args.etcd_endpoints.clone();
    }
    if let Some(prefix) = &args.key_prefix {
        cluster.key_prefix = prefix.clone();
    }
    cluster.check_reading().map_err(|e| e.to_string())?;
    Ok((cluster, apps))
}
