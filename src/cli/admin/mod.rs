//! The admin commands that talk to a running daemon over gRPC: `xpool numbers`, `xpool
//! bindings`, `xpool stats` and `xpool watch`. Each prints a table for people or, with
//! `--output json`, the answer as proto3 JSON (see [`json`]).
//!
//! Exit codes, the same for every one of them (see [`EXIT_CODES`]): 0 success, 1 the daemon
//! answered with an error (printed as `CODE: message` and the `ErrorInfo` reason), 2 the daemon
//! could not be reached or the command line is wrong.

pub mod bindings;
pub mod json;
pub mod numbers;
pub mod stats;
pub mod table;
pub mod watch;

use std::collections::BTreeMap;
use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use super::{Bearer, DaemonArgs};

/// The exit codes, as `--help` shows them under each admin command.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the daemon answered with an error (printed as `CODE: message` and its reason)
  2  the daemon could not be reached, did not answer in time, or the command line is wrong";

/// A channel that sends the caller's token with every call.
pub type Authed = InterceptedService<Channel, Bearer>;

/// How the answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and lines for people.
    Table,
    /// Proto3 JSON (field names in lowerCamelCase, as grpcurl prints them).
    Json,
}

/// The flags every admin command takes: how to reach the daemon, how to print, how long to wait.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up on a call the daemon has not answered within this many seconds (exit 2); for
    /// `watch`, on its first answer.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_seconds: u64,
}

/// Why a command failed, which decides its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The daemon answered with an error status: exit 1.
    Refused(Status),
    /// The daemon could not be reached or did not answer in time: exit 2.
    Unreachable(String),
    /// The command line is wrong in a way clap cannot tell: exit 2.
    Usage(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Unreachable(_) | Failure::Usage(_) => 2,
        }
    }
}

impl From<Status> for Failure {
    /// A status tonic made itself, from a transport error (a connection refused or reset), is
    /// no answer from the daemon; one decoded from the daemon's answer has no source.
    fn from(status: Status) -> Failure {
        match status.source() {
            Some(source) => {
                Failure::Unreachable(format!("the daemon did not answer: {}", chain(source)))
            }
            None => Failure::Refused(status),
        }
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// A connection to the daemon for one command.
#[derive(Debug, Clone)]
pub struct Conn {
    pub channel: Authed,
    pub output: Output,
    timeout: Duration,
}

impl Conn {
    /// Connects as `args` say; [`Failure::Unreachable`] if the daemon cannot be reached.
    pub async fn open(args: &CallArgs) -> Result<Conn, Failure> {
        let bearer = args
            .daemon
            .bearer()
            .map_err(|e| Failure::Usage(format!("--token: {e}")))?;
        let channel = args
            .daemon
            .channel()
            .await
            .map_err(|e| Failure::Unreachable(format!("{e:#}")))?;
        Ok(Conn {
            channel: InterceptedService::new(channel, bearer),
            output: args.output,
            timeout: Duration::from_secs(args.timeout_seconds),
        })
    }

    /// Awaits one call for at most `--timeout-seconds`; the answer's message.
    pub async fn ask<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => Ok(answer?.into_inner()),
            Err(_) => Err(Failure::Unreachable(format!(
                "no answer within {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}

/// Runs a command's body and turns its outcome into the process exit code, printing a failure
/// to stderr as `xpool <command>: …`.
pub fn finish(command: &str, outcome: Result<(), Failure>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("xpool {command}: {}", describe(&failure));
            failure.exit_code()
        }
    }
}

/// A failure for people: a refusal as `CODE: message`, then its reason, metadata and retry hint.
pub fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Refused(status) => describe_status(status),
        Failure::Unreachable(what) | Failure::Usage(what) => what.clone(),
    }
}

/// `NOT_FOUND: no app "x"` and, when the status carries an `ErrorInfo`, a second line
/// `reason: UNKNOWN_APP (app=x)`, with the retry delay when `RetryInfo` gives one.
pub fn describe_status(status: &Status) -> String {
    let mut out = format!("{}: {}", code_name(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(info) = details.error_info() {
        out.push_str(&format!("\n  reason: {}", info.reason));
        let meta: BTreeMap<_, _> = info.metadata.iter().collect();
        if !meta.is_empty() {
            let pairs: Vec<String> = meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(" ({})", pairs.join(", ")));
        }
    }
    if let Some(delay) = details.retry_info().and_then(|r| r.retry_delay) {
        out.push_str(&format!("\n  retry after {} ms", delay.as_millis()));
    }
    out
}

/// The code's name as gRPC spells it: `NOT_FOUND`, `UNAUTHENTICATED`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Prints a JSON document, pretty, on stdout.
pub fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("xpool: cannot print JSON: {e}"),
    }
}

/// Every item of a paged listing: `page(token)` asks for one page and returns its items and
/// the next token (empty after the last page). Stops once `limit` items are there.
pub async fn all_pages<T, F>(
    limit: Option<usize>,
    mut page: impl FnMut(String) -> F,
) -> Result<Vec<T>, Failure>
where
    F: Future<Output = Result<(Vec<T>, String), Failure>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        out.extend(items);
        if let Some(limit) = limit
            && out.len() >= limit
        {
            out.truncate(limit);
            return Ok(out);
        }
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

/// The page size to ask for: the most the daemon gives (1000), or fewer when only `limit`
/// items are wanted.
pub fn page_size(limit: Option<usize>) -> i32 {
    limit.map_or(1000, |l| l.clamp(1, 1000) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn a_refusal_reads_code_message_reason_and_metadata() {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            "UNKNOWN_APP",
            "xpool",
            std::collections::HashMap::from([("app".to_owned(), "nope".to_owned())]),
        );
        let status = Status::with_error_details(Code::NotFound, "no app \"nope\"", details);
        let failure = Failure::from(status);
        assert_eq!(failure.exit_code(), 1);
        assert_eq!(
            describe(&failure),
            "NOT_FOUND: no app \"nope\"\n  reason: UNKNOWN_APP (app=nope)"
        );
    }

    #[test]
    fn a_status_tonic_made_from_a_transport_error_is_no_answer() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let status = Status::from_error(Box::new(io));
        let failure = Failure::from(status);
        assert_eq!(failure.exit_code(), 2, "{failure:?}");
        assert!(describe(&failure).contains("reset by peer"), "{failure:?}");
    }
}
