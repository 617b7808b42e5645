//! xpool's write-ahead log against a maintained crate that does the log's job (issue 13): how
//! long a durable append of one record takes for one writer alone, and per record when 32
//! writers share group commits.
//!
//! - `xpool`: `Store::put_meta` of a 512-byte value. This is xpool's log (the record appended
//!   under the log's lock, written and `fdatasync`ed by its flusher thread) and the apply to
//!   sled after the sync, which every xpool write waits for before it is acknowledged: reads
//!   see sled.
//! - `okaywal`: okaywal 0.3's `begin_entry`, `write_chunk` and `commit` of the same 512 bytes,
//!   with `LogVoid` (checkpoints drop the entries). This is the log alone.
//! - `okaywal+sled`: the same commit, then the value inserted into a sled tree (sled's own
//!   flushes off, as in xpool), the part of xpool's acknowledgement that okaywal leaves to its
//!   user.
//!
//! Each runs in a fresh directory under the system temp dir (on this machine the disk the
//! store uses). Run: `cargo bench --bench log` (all), or e.g. `cargo bench --bench log -- 32`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use okaywal::{LogVoid, WriteAheadLog};
use xpool::store::{Store, StoreOptions};

/// A record about the size of an X-mode Bind's (its binding, request, slot and feed entries).
const RECORD_BYTES: usize = 512;

/// One writer alone (every append pays its own sync), and as many as `xpool bench` keeps in
/// flight (appends share syncs).
const WRITERS: [usize; 2] = [1, 32];

/// sled's cache for both sled-backed variants: xpool's default.
const SLED_CACHE_BYTES: u64 = 16 << 20;

fn record(writer: usize) -> Vec<u8> {
    (0..RECORD_BYTES)
        .map(|i| (i.wrapping_mul(31) ^ writer.wrapping_mul(131)) as u8)
        .collect()
}

/// `iters` appends by each of `writers` tasks on a two-worker runtime, through the store.
fn xpool_appends(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Store>,
    writers: usize,
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    let name = format!("bench-{w}");
                    let value = record(w);
                    for _ in 0..iters {
                        store.put_meta(&name, &value).await.expect("durable append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer task");
        }
        started.elapsed()
    })
}

/// `iters` appends by each of `writers` threads (okaywal blocks until its sync), each then
/// inserted into `tree` if given.
fn okaywal_appends(
    log: &WriteAheadLog,
    tree: Option<&sled::Tree>,
    writers: usize,
    iters: u64,
) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers {
            scope.spawn(move || {
                let key = format!("bench-{w}");
                let value = record(w);
                for _ in 0..iters {
                    let mut entry = log.begin_entry().expect("okaywal entry");
                    entry.write_chunk(&value).expect("okaywal chunk");
                    entry.commit().expect("okaywal commit");
                    if let Some(tree) = tree {
                        tree.insert(key.as_bytes(), value.as_slice())
                            .expect("sled insert");
                    }
                }
            });
        }
    });
    started.elapsed()
}

fn open_sled(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE_BYTES)
        .flush_every_ms(None)
        .open()
        .expect("sled opens")
}

fn durable_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("durable_append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for writers in WRITERS {
        group.throughput(Throughput::Elements(writers as u64));

        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(
            Store::open(&StoreOptions {
                cache_capacity_bytes: SLED_CACHE_BYTES,
                ..StoreOptions::new(dir.path().join("store"))
            })
            .expect("store opens"),
        );
        group.bench_function(BenchmarkId::new("xpool", writers), |b| {
            b.iter_custom(|iters| xpool_appends(&rt, &store, writers, iters));
        });
        rt.block_on(store.close()).expect("store closes");

        let dir = tempfile::tempdir().expect("temp dir");
        let log = WriteAheadLog::recover(dir.path(), LogVoid).expect("okaywal opens");
        group.bench_function(BenchmarkId::new("okaywal", writers), |b| {
            b.iter_custom(|iters| okaywal_appends(&log, None, writers, iters));
        });
        log.shutdown().expect("okaywal shuts down");

        let dir = tempfile::tempdir().expect("temp dir");
        let log = WriteAheadLog::recover(dir.path().join("log"), LogVoid).expect("okaywal opens");
        let db = open_sled(&dir.path().join("sled"));
        let tree = db.open_tree("bench").expect("sled tree");
        group.bench_function(BenchmarkId::new("okaywal+sled", writers), |b| {
            b.iter_custom(|iters| okaywal_appends(&log, Some(&tree), writers, iters));
        });
        log.shutdown().expect("okaywal shuts down");
    }
    group.finish();
}

criterion_group!(benches, durable_append);
criterion_main!(benches);
