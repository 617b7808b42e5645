//! What sled alone costs for the index entries of a Bind, measured outside xpool: the floor
//! under the daemon's CPU per X-mode Bind (issue 13, target 1) while every Bind's entries are
//! sled inserts.
//!
//! It reads the four trees an X-mode Bind writes (`bindings`, `requests`, `slots`, `changes`)
//! from a store that `xpool bench --mode x … --store DIR` left at a clean stop, and inserts the
//! same keys and values into a fresh sled opened as the daemon opens it (16 MiB cache, no timer
//! flush, mimalloc), one entry of each tree per "Bind", with a `flush` every second as the daemon's
//! checkpointer does. `bindings` and `changes` go in key order (their keys are time-ordered, as
//! when they were written); `requests` and `slots` in a shuffled order (random request ids, Xs
//! spread by load), or every tree in key order with `--key-order` (sled's cheapest order). It
//! prints the process's CPU (sled's own threads included) per Bind and, with `--only TREE`, per
//! insert into one tree.
//!
//! ```sh
//! xpool bench --spawn --target grpc --mode x --concurrency 32 --connections 1 --duration 8 \
//!     --warmup 1 --numbers 2000 --mix bind=100 --store /tmp/floor-src
//! cargo run --release --example sled_floor -- /tmp/floor-src [--only slots] [--key-order] \
//!     [--binds 200000]
//! ```

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use xpool::store::keys;

/// The daemon's sled cache (`store.cache_capacity_mb` by default).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// The daemon's checkpoint interval (`wal::CHECKPOINT_EVERY`).
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const TREES: [&str; 4] = [keys::BINDINGS, keys::REQUESTS, keys::SLOTS, keys::CHANGES];

type Entries = Vec<(sled::IVec, sled::IVec)>;

/// The daemon's allocator (`src/main.rs`): sled allocates on every insert.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let source = args
        .first()
        .ok_or("usage: sled_floor SOURCE_STORE [--only TREE] [--key-order] [--binds N]")?;
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let only = flag("--only").map(String::as_str);
    if let Some(tree) = only
        && !TREES.contains(&tree)
    {
        return Err(format!("--only: {tree:?} is not one of {TREES:?}").into());
    }
    let limit: Option<usize> = flag("--binds")
        .map(|n| n.parse().map_err(|e| format!("--binds: {n:?}: {e}")))
        .transpose()?;
    let key_order = args.iter().any(|a| a == "--key-order");

    let entries = read_source(source, key_order)?;
    let binds = entries.iter().map(Vec::len).min().unwrap_or(0);
    let binds = limit.map_or(binds, |n| n.min(binds));
    if binds == 0 {
        return Err(
            format!("{source}: no X-mode Binds to replay (an empty tree, or --binds 0)").into(),
        );
    }
    let chosen: Vec<usize> = (0..TREES.len())
        .filter(|&t| only.is_none_or(|name| TREES[t] == name))
        .collect();

    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(None)
        .open()?;
    let trees: Vec<sled::Tree> = TREES
        .iter()
        .map(|name| db.open_tree(name))
        .collect::<Result<_, _>>()?;

    // One column of entries per chosen tree; a Bind takes the next entry of each.
    let mut columns: Vec<_> = chosen
        .iter()
        .map(|&t| (&trees[t], entries[t][..binds].iter()))
        .collect();
    let cpu_before = process_cpu()?;
    let start = Instant::now();
    let mut flushed = start;
    for _ in 0..binds {
        for (tree, column) in &mut columns {
            if let Some((key, value)) = column.next() {
                tree.insert(key, value.clone())?;
            }
        }
        if flushed.elapsed() >= FLUSH_EVERY {
            db.flush()?;
            flushed = Instant::now();
        }
    }
    db.flush()?;
    let wall = start.elapsed();
    let cpu = process_cpu()? - cpu_before;

    let inserts = binds * chosen.len();
    let per_bind = cpu.as_secs_f64() * 1e6 / binds as f64;
    let names: Vec<&str> = chosen.iter().map(|&t| TREES[t]).collect();
    println!(
        "{binds} Binds, {inserts} inserts into {names:?}: {:.2} s CPU in {:.2} s, \
         {per_bind:.1} µs per Bind, {:.2} µs per insert",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / inserts as f64,
    );
    Ok(())
}

/// The four trees' entries, in the order they are replayed.
fn read_source(path: &str, key_order: bool) -> Result<Vec<Entries>, Box<dyn std::error::Error>> {
    // sled would create an empty database where there is none.
    if !std::path::Path::new(path).join("db").is_file() {
        return Err(format!("{path}: not a store (no sled database in it)").into());
    }
    let db = sled::Config::new().path(path).open()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut all = Vec::new();
    for name in TREES {
        let mut entries: Entries = db.open_tree(name)?.iter().collect::<Result<_, _>>()?;
        if !key_order && (name == keys::REQUESTS || name == keys::SLOTS) {
            entries.shuffle(&mut rng);
        }
        println!("{name}: {} entries", entries.len());
        all.push(entries);
    }
    Ok(all)
}

/// This process's CPU time so far, user and system, from `/proc/self/stat`.
fn process_cpu() -> Result<Duration, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .ok_or("/proc/self/stat: no command name")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // The kernel's USER_HZ, 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}
