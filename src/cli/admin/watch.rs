//! `xpool watch`: follows WatchService.Watch and prints a line per change, each with the resume
//! token to go on after it; ends cleanly (exit 0) on Ctrl-C or SIGTERM, saying where to resume.

use clap::{Args, ValueEnum};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tonic_types::StatusExt as _;
use xpool::grpc::pb;
use xpool::grpc::pb::watch_service_client::WatchServiceClient;

use super::{CallArgs, Conn, Failure, Output, finish, json, table};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only changes of these apps (repeatable); every app's when left out.
    #[arg(long = "app", value_name = "APP")]
    apps: Vec<String>,
    /// Only changes of these kinds (repeatable); every kind when left out.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    kinds: Vec<Kind>,
    /// Start with every change still kept, then go on as they happen.
    #[arg(long, conflicts_with = "resume_token")]
    from_oldest: bool,
    /// Go on after this point: a token an earlier watch printed.
    #[arg(long)]
    resume_token: Option<String>,
    #[command(flatten)]
    call: CallArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    BindingBound,
    BindingUpdated,
    BindingReleased,
    BindingExpired,
    BindingAdopted,
    NumberStatus,
    CallEvent,
    Message,
}

impl From<Kind> for pb::WatchKind {
    fn from(k: Kind) -> pb::WatchKind {
        match k {
            Kind::BindingBound => pb::WatchKind::BindingBound,
            Kind::BindingUpdated => pb::WatchKind::BindingUpdated,
            Kind::BindingReleased => pb::WatchKind::BindingReleased,
            Kind::BindingExpired => pb::WatchKind::BindingExpired,
            Kind::BindingAdopted => pb::WatchKind::BindingAdopted,
            Kind::NumberStatus => pb::WatchKind::NumberStatus,
            Kind::CallEvent => pb::WatchKind::CallEvent,
            Kind::Message => pb::WatchKind::Message,
        }
    }
}

/// Returns the process exit code.
pub async fn run(args: WatchArgs) -> i32 {
    finish("watch", watch(args).await)
}

async fn watch(args: WatchArgs) -> Result<(), Failure> {
    let WatchArgs {
        call,
        apps,
        kinds,
        from_oldest,
        resume_token,
    } = args;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Usage(format!("cannot handle SIGINT: {e}")))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Failure::Usage(format!("cannot handle SIGTERM: {e}")))?;
    let conn = Conn::open(&call).await?;
    let mut client = WatchServiceClient::new(conn.channel.clone());
    let req = pb::WatchRequest {
        apps,
        kinds: kinds
            .into_iter()
            .map(|k| pb::WatchKind::from(k).into())
            .collect(),
        resume_token: resume_token.unwrap_or_default(),
        from_oldest,
    };
    let mut stream = conn.ask(client.watch(req)).await?;
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            message = stream.message() => {
                if !follow(message, &mut last, conn.output)? {
                    break;
                }
            }
        }
    }
    drop(stream);
    eprintln!("xpool watch: stopped; resume with --resume-token {last}");
    Ok(())
}

/// Prints one response and moves `last` to its token; `Ok(false)` when the stream ended, an
/// error (after saying where to resume) when the daemon ended it with one.
fn follow(
    message: Result<Option<pb::WatchResponse>, tonic::Status>,
    last: &mut String,
    output: Output,
) -> Result<bool, Failure> {
    let response = match message {
        Ok(Some(response)) => response,
        Ok(None) => return Ok(false),
        Err(status) => {
            // SHUTTING_DOWN carries the token to watch again with; it is the last one seen.
            let details = status.get_error_details();
            let token = details
                .error_info()
                .and_then(|info| info.metadata.get("resume_token").cloned())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| last.clone());
            if !token.is_empty() {
                eprintln!("xpool watch: resume with --resume-token {token}");
            }
            return Err(status.into());
        }
    };
    let pb::WatchResponse {
        events,
        resume_token,
    } = response;
    if events.is_empty() {
        match output {
            Output::Json => println!("{}", json!({ "resumeToken": resume_token })),
            Output::Table if last.is_empty() => {
                eprintln!("xpool watch: watching from resume token {resume_token}");
            }
            Output::Table => {}
        }
    }
    for event in &events {
        match output {
            Output::Json => println!("{}", json::watch_event(event)),
            Output::Table => println!("{}", line(event)),
        }
    }
    *last = resume_token;
    Ok(true)
}

/// One event for people: time, kind, app, what changed, and its resume token.
fn line(e: &pb::WatchEvent) -> String {
    use pb::watch_event::Payload;
    let what = match &e.payload {
        Some(Payload::Binding(b)) => {
            let mut s = format!(
                "binding {} {} x {}",
                b.binding_id,
                table::short(b.state().as_str_name(), "BINDING_STATE_"),
                b.x_number
            );
            for (label, value) in [("ext", &b.extension), ("a", &b.party_a), ("b", &b.party_b)] {
                if !value.is_empty() {
                    s.push_str(&format!(" {label} {value}"));
                }
            }
            s
        }
        Some(Payload::NumberStatus(n)) => {
            let status = table::short(n.status().as_str_name(), "NUMBER_STATUS_");
            let cause = if n.cause.is_empty() {
                String::new()
            } else {
                format!(" cause {}", n.cause)
            };
            format!("number {} {status}{cause}", n.number)
        }
        Some(Payload::CallEvent(c)) => {
            let state = c
                .state_code
                .map(|s| format!(" state {s}"))
                .unwrap_or_default();
            format!(
                "call {} {} {} -> {}{state}",
                c.call_id, c.event_type_name, c.caller, c.called
            )
        }
        Some(Payload::Message(m)) => format!(
            "sms {} {} -> {} via {}",
            m.message_id,
            m.calling,
            table::or_dash(&m.called),
            m.x_number
        ),
        None => "-".to_owned(),
    };
    format!(
        "{}  {}  {}  {what}  resume {}",
        table::time(&e.event_time),
        table::short(e.kind().as_str_name(), "WATCH_KIND_"),
        e.app,
        e.resume_token
    )
}
