//! Scenario 3 of BENCHMARKS.md: the allocation index alone, whatever the pool size.
//!
//! For AX, AXB and AXE, at 1k, 10k and 100k numbers and 0 %, 50 % and 95 % of every slot taken,
//! it measures `pick` alone and one full cycle (pick, occupy, vacate) for parties that hold
//! nothing yet. The index is filled through its own `pick` + `occupy`, so its state is the one
//! the daemon would reach. Slots per X: AX 1; AXB 10 (`max_bindings_per_x = 10`); AXE 10 (4-digit
//! extensions, capped at 10 per X so 95 % of 100k numbers is 950k bindings rather than 950M).
//!
//! Run: `cargo bench --bench allocator` (all), or e.g. `cargo bench --bench allocator -- AXB`.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use xpool::alloc::{Index, Number, NumberState, Occupant, Pick, Rules};
use xpool::platform::Mode;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const OCCUPANCY_PCT: [usize; 3] = [0, 50, 95];
const SLOTS: u32 = 10;
const AREA: &str = "010";

fn rules(mode: Mode) -> Rules {
    Rules {
        mode,
        max_bindings_per_x: SLOTS,
        extension_digits: 4,
        max_extensions_per_x: (mode == Mode::Axe).then_some(SLOTS),
        cool_down_ms: 0,
        fallback_areas: Vec::new(),
    }
}

fn slots_per_x(mode: Mode) -> usize {
    if mode == Mode::Ax { 1 } else { SLOTS as usize }
}

/// What the daemon builds for a new binding before it occupies the slot: the same allocations
/// as its stored record (a fresh UUID v7 id and owned strings), so a cycle costs what it did
/// when the index took the record itself.
struct Owned {
    id: uuid::Uuid,
    app: String,
    x: String,
    extension: Option<String>,
    party_a: String,
    party_b: Option<String>,
    area_code: String,
    reason: String,
}

impl Owned {
    fn new(pick: &Pick, a: &str, b: Option<&str>) -> Self {
        Owned {
            id: uuid::Uuid::now_v7(),
            app: "bench".into(),
            x: pick.x.clone(),
            extension: pick.extension.clone(),
            party_a: a.to_owned(),
            party_b: b.map(str::to_owned),
            area_code: pick.area.clone(),
            reason: String::new(),
        }
    }

    fn occupant(&self) -> Occupant<'_> {
        Occupant {
            x: &self.x,
            extension: self.extension.as_deref(),
            y: None,
            party_a: &self.party_a,
            party_b: self.party_b.as_deref(),
            binding: [0; 16],
        }
    }
}

/// An index of `n` numbers with `pct` % of its slots taken by distinct parties.
fn build(mode: Mode, n: usize, pct: usize) -> Index {
    let mut index = Index::new(rules(mode));
    for i in 0..n {
        let number = format!("+86170{i:08}");
        let number = Number {
            number: &number,
            area_code: AREA,
            state: NumberState::Active,
            suspect: false,
            status: Default::default(),
        };
        index.upsert_number(&number, 0);
    }
    let areas = [AREA.to_owned()];
    let none = HashSet::new();
    let target = n * slots_per_x(mode) * pct / 100;
    for k in 0..target {
        let a = format!("+86138{:08}", 2 * k);
        let b = (mode == Mode::Axb).then(|| format!("+86138{:08}", 2 * k + 1));
        let Ok((pick, _)) = index.pick(&areas, &a, b.as_deref(), &none, 0) else {
            panic!("filling {mode:?} {n}/{pct}%: no slot at binding {k}");
        };
        index.occupy(&pick.occupant(&a, b.as_deref()), 0);
    }
    index
}

fn allocator(c: &mut Criterion) {
    let areas = [AREA.to_owned()];
    let none = HashSet::new();
    // Parties that hold nothing (the fill used +86138…).
    let fresh: Vec<(String, String)> = (0..4096)
        .map(|k| {
            (
                format!("+86139{:08}", 2 * k),
                format!("+86139{:08}", 2 * k + 1),
            )
        })
        .collect();
    for mode in [Mode::Ax, Mode::Axb, Mode::Axe] {
        let mut group = c.benchmark_group(format!("{mode:?}").to_uppercase());
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30);
        for n in SIZES {
            for pct in OCCUPANCY_PCT {
                let mut index = build(mode, n, pct);
                let param = format!("{n}/{pct}%");
                let b_of =
                    |(a, b): &(String, String)| (a.clone(), (mode == Mode::Axb).then(|| b.clone()));
                group.bench_with_input(BenchmarkId::new("pick", &param), &(), |bench, ()| {
                    let mut i = 0;
                    bench.iter(|| {
                        let (a, b) = &fresh[i % fresh.len()];
                        i += 1;
                        let b = (mode == Mode::Axb).then_some(b.as_str());
                        black_box(index.pick(&areas, a, b, &none, 0).is_ok())
                    });
                });
                group.bench_with_input(BenchmarkId::new("cycle", &param), &(), |bench, ()| {
                    let mut i = 0;
                    bench.iter(|| {
                        let (a, b) = b_of(&fresh[i % fresh.len()]);
                        i += 1;
                        let Ok((pick, _)) = index.pick(&areas, &a, b.as_deref(), &none, 0) else {
                            panic!("no slot");
                        };
                        let rec = Owned::new(&pick, &a, b.as_deref());
                        index.occupy(&rec.occupant(), 0);
                        index.vacate(&rec.occupant(), None, 0);
                        black_box((rec.id, &rec.app, &rec.area_code, &rec.reason));
                        black_box(rec.x.len())
                    });
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, allocator);
criterion_main!(benches);
