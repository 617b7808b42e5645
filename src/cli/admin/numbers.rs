//! `xpool numbers`: an app's X numbers — list them, add some, drain, undrain or remove them
//! (PoolService's ListNumbers, AddNumbers, DrainNumbers, UndrainNumbers, RemoveNumbers).

use clap::{Args, Subcommand};
use serde_json::json;
use xpool::grpc::pb;
use xpool::grpc::pb::pool_service_client::PoolServiceClient;

use super::{CallArgs, Conn, EXIT_CODES, Failure, Output, all_pages, finish, json, print_json};
use super::{page_size, table};

#[derive(Debug, Args)]
pub struct NumbersArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List an app's numbers (every page): area, state, the platform's status, live bindings,
    /// slots cooling down, free AXE extensions.
    #[command(after_help = EXIT_CODES)]
    List {
        /// The app (its name in the daemon's config).
        #[arg(long)]
        app: String,
        /// Only the numbers of this area code.
        #[arg(long)]
        area: Option<String>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Add numbers to an app's pool (needs the `admin` scope). Each is reported as added,
    /// updated (area changed, or removed before) or unchanged.
    #[command(after_help = EXIT_CODES)]
    Add {
        /// The app (its name in the daemon's config).
        #[arg(long)]
        app: String,
        /// A number, E.164, with its area code after a colon (`+8617010000009:0755`) or, without
        /// one, in --area. Repeatable.
        #[arg(long = "number", value_name = "NUMBER[:AREA]", required = true)]
        numbers: Vec<String>,
        /// The area code of the numbers given without one.
        #[arg(long)]
        area: Option<String>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Stop handing numbers out; their bindings live on (`admin` scope).
    #[command(after_help = EXIT_CODES)]
    Drain(Change),
    /// Put drained numbers back in rotation (`admin` scope).
    #[command(after_help = EXIT_CODES)]
    Undrain(Change),
    /// Remove numbers that hold no live binding (`admin` scope).
    #[command(after_help = EXIT_CODES)]
    Remove(Change),
}

/// Numbers of an app to change.
#[derive(Debug, Args)]
struct Change {
    /// The app (its name in the daemon's config).
    #[arg(long)]
    app: String,
    /// The numbers, E.164. Each call is all or nothing.
    #[arg(value_name = "NUMBER", required = true)]
    numbers: Vec<String>,
    #[command(flatten)]
    call: CallArgs,
}

type Client = PoolServiceClient<super::Authed>;

/// Returns the process exit code.
pub async fn run(args: NumbersArgs) -> i32 {
    match args.action {
        Action::List { call, app, area } => {
            let outcome = list(&call, app, area.unwrap_or_default()).await;
            finish("numbers list", outcome)
        }
        Action::Add {
            call,
            app,
            numbers,
            area,
        } => finish(
            "numbers add",
            add(&call, app, &numbers, area.as_deref()).await,
        ),
        Action::Drain(change) => finish("numbers drain", drain(change, true).await),
        Action::Undrain(change) => finish("numbers undrain", drain(change, false).await),
        Action::Remove(change) => finish("numbers remove", remove(change).await),
    }
}

async fn connect(call: &CallArgs) -> Result<(Conn, Client), Failure> {
    let conn = Conn::open(call).await?;
    let client = PoolServiceClient::new(conn.channel.clone());
    Ok((conn, client))
}

async fn list(call: &CallArgs, app: String, area_code: String) -> Result<(), Failure> {
    let (conn, client) = connect(call).await?;
    let numbers = all_pages(None, |page_token| {
        let mut client = client.clone();
        let conn = &conn;
        let req = pb::ListNumbersRequest {
            app: app.clone(),
            area_code: area_code.clone(),
            page_size: page_size(None),
            page_token,
        };
        async move {
            let page = conn.ask(client.list_numbers(req)).await?;
            Ok((page.numbers, page.next_page_token))
        }
    })
    .await?;
    match conn.output {
        Output::Json => print_json(&json!({ "numbers": json::number_infos(&numbers) })),
        Output::Table => print_numbers(&numbers, None),
    }
    Ok(())
}

/// `NUMBER[:AREA]` as a spec, the area from `--area` when the number has none.
fn spec(arg: &str, area: Option<&str>) -> Result<pb::NumberSpec, Failure> {
    let (number, area_code) = match arg.split_once(':') {
        Some((number, area)) => (number, area),
        None => match area {
            Some(area) => (arg, area),
            None => {
                return Err(Failure::Usage(format!(
                    "--number {arg}: no area code (write {arg}:AREA, or give --area)"
                )));
            }
        },
    };
    Ok(pb::NumberSpec {
        number: number.to_owned(),
        area_code: area_code.to_owned(),
    })
}

async fn add(
    call: &CallArgs,
    app: String,
    numbers: &[String],
    area: Option<&str>,
) -> Result<(), Failure> {
    let numbers = numbers
        .iter()
        .map(|n| spec(n, area))
        .collect::<Result<Vec<_>, _>>()?;
    let (conn, mut client) = connect(call).await?;
    let req = pb::AddNumbersRequest { app, numbers };
    let pb::AddNumbersResponse {
        added,
        updated,
        unchanged,
    } = conn.ask(client.add_numbers(req)).await?;
    match conn.output {
        Output::Json => print_json(&json!({
            "added": json::number_infos(&added),
            "updated": json::number_infos(&updated),
            "unchanged": json::number_infos(&unchanged),
        })),
        Output::Table => {
            let rows: Vec<(pb::NumberInfo, &str)> = [
                (added, "added"),
                (updated, "updated"),
                (unchanged, "unchanged"),
            ]
            .into_iter()
            .flat_map(|(infos, what)| infos.into_iter().map(move |n| (n, what)))
            .collect();
            let (infos, results): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            print_numbers(&infos, Some(&results));
        }
    }
    Ok(())
}

async fn drain(change: Change, drain: bool) -> Result<(), Failure> {
    let Change { call, app, numbers } = change;
    let (conn, mut client) = connect(&call).await?;
    let numbers = if drain {
        let req = pb::DrainNumbersRequest { app, numbers };
        conn.ask(client.drain_numbers(req)).await?.numbers
    } else {
        let req = pb::UndrainNumbersRequest { app, numbers };
        conn.ask(client.undrain_numbers(req)).await?.numbers
    };
    match conn.output {
        Output::Json => print_json(&json!({ "numbers": json::number_infos(&numbers) })),
        Output::Table => print_numbers(&numbers, None),
    }
    Ok(())
}

async fn remove(change: Change) -> Result<(), Failure> {
    let Change { call, app, numbers } = change;
    let (conn, mut client) = connect(&call).await?;
    let req = pb::RemoveNumbersRequest { app, numbers };
    let pb::RemoveNumbersResponse { removed } = conn.ask(client.remove_numbers(req)).await?;
    match conn.output {
        Output::Json => print_json(&json!({ "removed": removed })),
        Output::Table => println!("removed {removed} number(s)"),
    }
    Ok(())
}

/// Numbers as a table; with `results`, a RESULT column (added, updated, unchanged) per row.
fn print_numbers(numbers: &[pb::NumberInfo], results: Option<&[&str]>) {
    let mut headers = vec![
        "NUMBER", "AREA", "STATE", "STATUS", "BINDINGS", "COOLING", "FREE EXT",
    ];
    if results.is_some() {
        headers.push("RESULT");
    }
    let mut t = table::new(&headers, &["BINDINGS", "COOLING", "FREE EXT"]);
    for (i, n) in numbers.iter().enumerate() {
        let mut row = vec![
            n.number.clone(),
            n.area_code.clone(),
            table::short(n.state().as_str_name(), "NUMBER_STATE_"),
            table::short(n.status().as_str_name(), "NUMBER_STATUS_"),
            n.binding_count.to_string(),
            n.cooling_count.to_string(),
            n.free_extension_count.to_string(),
        ];
        if let Some(results) = results {
            row.push(results.get(i).copied().unwrap_or_default().to_owned());
        }
        t.add_row(row);
    }
    table::print(&t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_takes_its_own_area_or_the_default() {
        let s = spec("+8617010000009:0755", Some("010")).unwrap();
        assert_eq!(
            (s.number.as_str(), s.area_code.as_str()),
            ("+8617010000009", "0755")
        );
        let s = spec("+8617010000009", Some("010")).unwrap();
        assert_eq!(s.area_code, "010");
        let refused = spec("+8617010000009", None).unwrap_err();
        assert_eq!(refused.exit_code(), 2);
    }
}
