//! `xpool reconcile`: starts a reconciliation run on a running daemon, follows it to its end
//! (`WatchReconcileRun`), and prints the report. For cron jobs.
//!
//! Exit codes: 0 the run succeeded, 1 it failed (errors, listed) or was cancelled, 2 the daemon
//! could not be asked (unreachable, or it refused the request).

use std::io::{IsTerminal as _, Write as _};

use clap::Args;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::reconcile_service_client::ReconcileServiceClient;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The daemon (a token with the `admin` scope when it has `[auth]`).
    #[command(flatten)]
    daemon: super::DaemonArgs,
    /// Only this app (all apps by default).
    #[arg(long)]
    app: Option<String>,
    /// Only these X numbers of --app (repeatable).
    #[arg(long = "number")]
    numbers: Vec<String>,
    /// Count the differences without changing anything.
    #[arg(long)]
    dry_run: bool,
}

/// Returns the process exit code.
pub async fn run(args: ReconcileArgs) -> i32 {
    let ReconcileArgs {
        daemon,
        app,
        numbers,
        dry_run,
    } = args;
    let bearer = match daemon.bearer() {
        Ok(bearer) => bearer,
        Err(e) => {
            eprintln!("xpool reconcile: --token: {e}");
            return 2;
        }
    };
    let mut client = match daemon.channel().await {
        Ok(channel) => ReconcileServiceClient::with_interceptor(channel, bearer),
        Err(e) => {
            eprintln!("xpool reconcile: {e:#}");
            return 2;
        }
    };
    let request = pb::ReconcileRequest {
        app: app.unwrap_or_default(),
        numbers,
        dry_run,
    };
    let progress = std::io::stderr().is_terminal();
    let run = match start_and_follow(&mut client, request, |run| {
        if progress {
            show_progress(run);
        }
    })
    .await
    {
        Ok(run) => run,
        Err(status) => {
            eprintln!("xpool reconcile: {}: {}", status.code(), status.message());
            return 2;
        }
    };
    if progress {
        eprintln!();
    }
    print_report(&run);
    i32::from(run.state() != pb::ReconcileRunState::Succeeded)
}

/// A reconcile client that sends the caller's token.
pub type Client = ReconcileServiceClient<InterceptedService<Channel, super::Bearer>>;

/// Starts a run of `request` and follows it to its final state, calling `progress` with each
/// earlier state the daemon sends.
pub async fn start_and_follow(
    client: &mut Client,
    request: pb::ReconcileRequest,
    mut progress: impl FnMut(&pb::ReconcileRun),
) -> Result<pb::ReconcileRun, Status> {
    let app = request.app.clone();
    let run = client.reconcile(request).await?.into_inner();
    let run_id = run.run_id.clone();
    let mut stream = client
        .watch_reconcile_run(on_app_leader(
            &app,
            pb::WatchReconcileRunRequest {
                run_id: run_id.clone(),
            },
        ))
        .await?
        .into_inner();
    while let Some(run) = stream.message().await? {
        if is_final(&run) {
            return Ok(run);
        }
        progress(&run);
    }
    // The stream ends after the final state; should it end early, ask once more.
    let run = client
        .get_reconcile_run(on_app_leader(&app, pb::GetReconcileRunRequest { run_id }))
        .await?
        .into_inner();
    if is_final(&run) {
        Ok(run)
    } else {
        Err(Status::unavailable(
            "the daemon stopped sending the run's progress",
        ))
    }
}

/// `message`, sent where a run of `app` runs: in cluster mode the replica that leads `app`
/// (a run lives on the replica that runs it), so a replica that does not lead it forwards the
/// call there (`xpool-app`, `xpool-consistent`). A run of every app (`app` empty) is followed
/// on the replica asked.
fn on_app_leader<T>(app: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !app.is_empty()
        && let Ok(value) = app.parse()
    {
        let metadata = request.metadata_mut();
        metadata.insert("xpool-app", value);
        metadata.insert(
            "xpool-consistent",
            tonic::metadata::MetadataValue::from_static("true"),
        );
    }
    request
}

fn is_final(run: &pb::ReconcileRun) -> bool {
    use pb::ReconcileRunState::*;
    matches!(run.state(), Succeeded | Failed | Cancelled)
}

/// The state in lower case without its prefix: "running", "succeeded".
fn state_name(run: &pb::ReconcileRun) -> String {
    let name = run.state().as_str_name();
    name.trim_start_matches("RECONCILE_RUN_STATE_")
        .to_ascii_lowercase()
}

fn show_progress(run: &pb::ReconcileRun) {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r{}: {}/{} numbers checked, {} errors\x1b[K",
        state_name(run),
        run.xs_checked,
        run.xs_total,
        run.error_count
    );
    let _ = err.flush();
}

/// One error as a line: where, what, and the platform's result code.
pub fn error_line(e: &pb::ReconcileError) -> String {
    let mut line = String::new();
    for part in [&e.app, &e.number] {
        if !part.is_empty() {
            line.push_str(part);
            line.push(' ');
        }
    }
    if !e.binding_id.is_empty() {
        line.push_str(&format!("binding {} ", e.binding_id));
    }
    if !line.is_empty() {
        line.insert(0, '[');
        line.pop();
        line.push_str("] ");
    }
    line.push_str(&e.message);
    if !e.platform_code.is_empty() && !e.message.contains(&e.platform_code) {
        line.push_str(&format!(" (platform result code {})", e.platform_code));
    }
    line
}

fn print_report(run: &pb::ReconcileRun) {
    let scope = if run.app.is_empty() {
        "all apps"
    } else {
        run.app.as_str()
    };
    let dry = if run.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    println!("reconciliation of {scope}{dry}");
    println!("  {:<18} {}", "run", run.run_id);
    println!("  {:<18} {}", "state", state_name(run));
    for (what, n) in [
        ("numbers checked", run.xs_checked),
        ("orphans adopted", run.orphans_adopted),
        ("orphans released", run.orphans_released),
        ("ghosts freed", run.ghosts_freed),
        ("fields corrected", run.fields_corrected),
        ("pending resolved", run.pending_resolved),
        ("numbers removed", run.numbers_removed),
        ("errors", run.error_count),
    ] {
        println!("  {what:<18} {n}");
    }
    for e in &run.errors {
        println!("    {}", error_line(e));
    }
    let unlisted = run.error_count - run.errors.len() as i64;
    if unlisted > 0 {
        println!("    … and {unlisted} more");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_says_where_what_and_the_platform_code() {
        let e = pb::ReconcileError {
            app: "rides".into(),
            number: "+8617000000001".into(),
            binding_id: String::new(),
            platform_code: "1010001".into(),
            message: "the platform did not answer".into(),
        };
        assert_eq!(
            error_line(&e),
            "[rides +8617000000001] the platform did not answer (platform result code 1010001)"
        );
        let e = pb::ReconcileError {
            message: "the store failed a write".into(),
            ..Default::default()
        };
        assert_eq!(error_line(&e), "the store failed a write");
    }
}
