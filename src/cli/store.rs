//! `xpool store`: check, repair, back up and restore a store. `check`, `repair` and `restore`
//! work on a store no daemon is running on; `backup` asks a running daemon for a consistent
//! copy (or, with `--offline`, opens the store itself).
//!
//! Exit codes: 0 done (for `check`: the store opens), 1 the store refuses to open or the
//! action was refused, 2 the command could not run (no store there, locked, daemon
//! unreachable).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use xpool::config::Config;
use xpool::store::admin::{self, LostChange, RepairPlan};
use xpool::store::{Store, StoreOptions};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

/// Which store: `--store`, or `store.path` of `--config`, or the embedded default's.
#[derive(Debug, Args)]
struct Which {
    /// The store directory (`store.path`).
    #[arg(long, conflicts_with = "config")]
    store: Option<PathBuf>,
    /// A daemon config whose `store.path` names the store.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Which {
    fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(match (&self.store, &self.config) {
            (Some(path), _) => path.clone(),
            (None, Some(config)) => Config::load(config, std::env::vars())?.store.path,
            (None, None) => PathBuf::from("xpool-data"),
        })
    }
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Report what the store holds and whether it opens; changes nothing. Stop the daemon first.
    Check(Which),
    /// Accept losing the write-ahead log from a damaged record on: list every binding and
    /// number change lost, and with --yes cut the log there (the bytes cut are kept aside).
    Repair {
        /// The damaged segment, as `check` or the refused start names it.
        #[arg(long)]
        segment: PathBuf,
        /// Where to cut: the byte offset `check` or the refused start names.
        #[arg(long)]
        truncate_at: u64,
        /// Cut the log; without it, only report what would be lost.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        which: Which,
    },
    /// Write a consistent copy of the store into DIR while the daemon serves.
    Backup {
        /// A new (or empty) directory; on the daemon's machine unless --offline.
        dir: PathBuf,
        /// The daemon's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// No daemon is running: open the store and copy it here.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        which: Which,
    },
    /// Put a backup in place as the store (no daemon may be running on it); the store that
    /// was there is moved aside, not deleted.
    Restore {
        backup: PathBuf,
        #[command(flatten)]
        which: Which,
    },
}

/// Runs the command; returns the exit code.
pub async fn run(args: StoreArgs) -> i32 {
    let result = match args.command {
        StoreCommand::Check(which) => check(&which),
        StoreCommand::Repair {
            segment,
            truncate_at,
            yes,
            which,
        } => repair(&which, &segment, truncate_at, yes).await,
        StoreCommand::Backup {
            dir,
            offline: true,
            which,
            ..
        } => backup_offline(&which, &dir).await,
        StoreCommand::Backup { dir, server, .. } => backup(&server, &dir).await,
        StoreCommand::Restore { backup, which } => restore(&which, &backup).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("xpool store: {e:#}");
        2
    })
}

fn check(which: &Which) -> anyhow::Result<i32> {
    let report = admin::check(&which.path()?)?;
    println!("store {}", report.path.display());
    println!(
        "  {} bindings, {} numbers; the database holds the log up to record {} ({})",
        report.bindings,
        report.numbers,
        report.log.applied,
        if report.log.clean {
            "closed cleanly"
        } else {
            "not closed cleanly"
        }
    );
    if report.log.segments.is_empty() {
        println!("  write-ahead log: empty");
    }
    for s in &report.log.segments {
        let records = s.records.map_or("no records".to_owned(), |(first, last)| {
            format!("records {first}..={last}")
        });
        if s.written < s.bytes && s.unreadable_at.is_none() {
            let prepared = s.bytes - s.written;
            println!(
                "  {}: {} bytes written, {prepared} prepared, {records}",
                s.path.display(),
                s.written
            );
        } else {
            println!("  {}: {} bytes, {records}", s.path.display(), s.bytes);
        }
        if let Some((at, why)) = s.unreadable_at {
            println!("    unreadable from byte {at}: {why}");
        }
    }
    match &report.log.refusal {
        None => {
            println!("opens: {} log records to replay", report.log.to_replay);
            Ok(0)
        }
        Some(e) => {
            println!("does not open: {e}");
            Ok(1)
        }
    }
}

async fn repair(which: &Which, segment: &Path, offset: u64, yes: bool) -> anyhow::Result<i32> {
    let path = which.path()?;
    let plan = admin::plan_repair(&path, segment, offset)?;
    print_loss(&plan);
    if !yes {
        println!("nothing changed; run again with --yes to cut the log here");
        return Ok(0);
    }
    let kept = admin::repair(&path, &plan).await?;
    println!(
        "the log is cut at byte {offset} of {}; the bytes cut are kept in {}. The store opens. \
         After starting the daemon, run `xpool reconcile`: the platform may hold bindings whose \
         records were lost, and reconciliation brings the index in step with it.",
        segment.display(),
        kept.display()
    );
    Ok(0)
}

fn print_loss(plan: &RepairPlan) {
    let loss = &plan.loss;
    println!(
        "cutting {} at byte {}: the log keeps records up to {}",
        plan.segment.display(),
        plan.offset,
        loss.kept_through
    );
    if let Some((first, last)) = loss.unreadable {
        println!(
            "  unreadable: records {first}..={last} ({} bytes); what they changed cannot be known",
            loss.unreadable_bytes
        );
    }
    if loss.already_applied > 0 {
        println!(
            "  {} records past the cut are already in the database: nothing of theirs is lost",
            loss.already_applied
        );
    }
    for later in &loss.later_segments {
        println!("  later segment {} goes too", later.display());
    }
    println!("  {} readable records are lost:", loss.lost.len());
    for change in &plan.changes {
        match change {
            LostChange::Binding {
                seq,
                id,
                record: Some(b),
            } => println!(
                "    record {seq}: binding {id} of app {} -> {:?} on {} (request id {})",
                b.app,
                b.state,
                b.x,
                b.request_id.as_deref().unwrap_or("none")
            ),
            LostChange::Binding {
                seq,
                id,
                record: None,
            } => println!("    record {seq}: binding {id} deleted"),
            LostChange::Number {
                seq,
                record: Some(n),
                ..
            } => println!(
                "    record {seq}: number {} of app {} -> {:?}",
                n.number, n.app, n.state
            ),
            LostChange::Number {
                seq,
                key,
                record: None,
            } => println!("    record {seq}: number {key} deleted"),
        }
    }
}

async fn backup(server: &str, dir: &Path) -> anyhow::Result<i32> {
    use xpool::grpc::pb;
    let dir = std::path::absolute(dir)?;
    let mut client = match pb::store_service_client::StoreServiceClient::connect(server.to_owned())
        .await
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!(
                "xpool store backup: cannot reach {server}: {e} (use --offline when no daemon runs)"
            );
            return Ok(2);
        }
    };
    let request = pb::BackupRequest {
        dir: dir.display().to_string(),
    };
    match client.backup(request).await {
        Ok(reply) => {
            let r = reply.into_inner();
            println!(
                "backed up to {} (on the daemon's machine): {} bindings, {} numbers, up to log record {}",
                r.dir, r.bindings, r.numbers, r.last_record
            );
            Ok(0)
        }
        Err(status) => {
            eprintln!(
                "xpool store backup: {}: {}",
                status.code(),
                status.message()
            );
            Ok(1)
        }
    }
}

async fn backup_offline(which: &Which, dir: &Path) -> anyhow::Result<i32> {
    let store = Store::open(&StoreOptions::new(which.path()?))?;
    let info = store.backup(dir).await;
    store.close().await?;
    let info = info?;
    println!(
        "backed up to {}: {} bindings, {} numbers, up to log record {}",
        info.path.display(),
        info.bindings,
        info.numbers,
        info.last_record
    );
    Ok(0)
}

async fn restore(which: &Which, backup: &Path) -> anyhow::Result<i32> {
    let target = which.path()?;
    let info = admin::restore(backup, &target).await?;
    println!(
        "restored {} into {}: {} bindings, {} numbers",
        backup.display(),
        target.display(),
        info.bindings,
        info.numbers
    );
    if let Some(previous) = info.previous {
        println!("the store that was there is kept in {}", previous.display());
    }
    println!(
        "After starting the daemon, run `xpool reconcile`: bindings made or released since the \
         backup are on the platform only, and reconciliation brings the index in step."
    );
    Ok(0)
}
