//! `xpool stats`: each app's pool per area code — total, free, bound, cooling down, draining,
//! held out by the platform, free AXE extensions (PoolService's ListApps, then GetPoolStats of
//! each app).

use clap::Args;
use serde_json::json;
use xpool::grpc::pb;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;

use super::{CallArgs, Conn, Failure, Output, all_pages, finish, json, print_json, table};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only these apps (repeatable); every app the token may read when left out.
    #[arg(long = "app", value_name = "APP")]
    apps: Vec<String>,
    #[command(flatten)]
    call: CallArgs,
}

/// Returns the process exit code.
pub async fn run(args: StatsArgs) -> i32 {
    finish("stats", stats(args).await)
}

async fn stats(args: StatsArgs) -> Result<(), Failure> {
    let StatsArgs { call, apps } = args;
    let conn = Conn::open(&call).await?;
    let client = PoolServiceClient::new(conn.channel.clone());
    let apps = if apps.is_empty() {
        list_apps(&conn, &client).await?
    } else {
        apps
    };
    let mut all = Vec::with_capacity(apps.len());
    for app in apps {
        let mut client = client.clone();
        let req = pb::GetPoolStatsRequest { app };
        all.push(conn.ask(client.get_pool_stats(req)).await?);
    }
    match conn.output {
        Output::Json => print_json(&json!({
            "apps": all.iter().map(json::pool_stats).collect::<Vec<_>>(),
        })),
        Output::Table => print_stats(&all),
    }
    Ok(())
}

/// The names of every app the daemon lists (those the token may read), across pages.
async fn list_apps(
    conn: &Conn,
    client: &PoolServiceClient<super::Authed>,
) -> Result<Vec<String>, Failure> {
    let apps = all_pages(None, |page_token| {
        let mut client = client.clone();
        let req = pb::ListAppsRequest {
            page_size: 1000,
            page_token,
        };
        async move {
            let page = conn.ask(client.list_apps(req)).await?;
            Ok((page.apps, page.next_page_token))
        }
    })
    .await?;
    Ok(apps.into_iter().map(|a| a.name).collect())
}

const NUMERIC: [&str; 7] = [
    "TOTAL", "FREE", "BOUND", "COOLING", "DRAINING", "HELD", "FREE EXT",
];

/// One row per app and area; an app without numbers gets one row of zeros with area `-`.
fn print_stats(all: &[pb::GetPoolStatsResponse]) {
    let mut headers = vec!["APP", "AREA"];
    headers.extend(NUMERIC);
    let mut t = table::new(&headers, &NUMERIC);
    for stats in all {
        let none = [pb::AreaStats::default()];
        let areas = if stats.areas.is_empty() {
            &none[..]
        } else {
            &stats.areas[..]
        };
        for a in areas {
            t.add_row(vec![
                stats.app.clone(),
                table::or_dash(&a.area_code).to_owned(),
                a.total.to_string(),
                a.free.to_string(),
                a.bound.to_string(),
                a.cooling_down.to_string(),
                a.draining.to_string(),
                a.held_by_platform.to_string(),
                a.free_extensions.to_string(),
            ]);
        }
    }
    table::print(&t);
}
