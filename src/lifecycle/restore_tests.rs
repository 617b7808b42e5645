//! Start-up rebuilds every app's index and X-mode routes from the `slots` index: they must be
//! what rebuilding from every binding record gives, with bindings in every state, AXE
//! extensions, AX and AXE cool-downs, AXYB reservations on no X yet, after a crash whose log is
//! replayed, and when the `slots` index cannot be read (then start-up reads every record).
//! The open bindings it then resolves are acted on only while they are still open.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::platform::Mode;
use crate::store::{BindingState as Stored, CallOptionsRecord, StoreOptions};

const START: i64 = 1_700_000_000_000;

type Rebuild = fn(&Store, &HashMap<String, Arc<AppPool>>, i64) -> Result<(), PoolError>;
const COOL_DOWN: i64 = 60_000;

#[derive(Debug)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// (app, mode): one app of each mode, none with a platform (local Binds are ACTIVE at once).
const APPS: [(&str, Mode); 5] = [
    ("ax", Mode::Ax),
    ("axe", Mode::Axe),
    ("axb", Mode::Axb),
    ("x", Mode::X),
    ("axyb", Mode::Axyb),
];

fn setups() -> Vec<AppSetup> {
    APPS.iter()
        .map(|(name, mode)| {
            let base = AppSetup::without_platform(name, *mode);
            AppSetup {
                rules: Rules {
                    max_bindings_per_x: 3,
                    extension_digits: 1,
                    cool_down_ms: COOL_DOWN,
                    ..base.rules
                },
                ..base
            }
        })
        .collect()
}

struct Fixture {
    store: Arc<Store>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    /// A fixture on a temporary store, its clock at `START`.
    fn temporary() -> Fixture {
        Fixture {
            store: Arc::new(Store::open_temporary().unwrap()),
            clock: Arc::new(ManualClock(AtomicI64::new(START))),
        }
    }

    fn open(&self, rebuild: Rebuild) -> Pool {
        let clock: Arc<dyn Clock> = self.clock.clone();
        let retention = RetentionPolicy {
            released_ms: i64::MAX,
            request_ms: i64::MAX,
        };
        Pool::open_with(
            Arc::clone(&self.store),
            setups(),
            &clock,
            retention,
            rebuild,
        )
        .unwrap()
    }

    /// Each app's index and routes, rebuilt the usual way.
    fn restored(&self) -> BTreeMap<String, String> {
        digests(&self.open(restore::restore))
    }

    /// The same, rebuilt from every record.
    fn rebuilt_from_records(&self) -> BTreeMap<String, String> {
        digests(&self.open(restore::from_every_record))
    }

    fn advance(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

fn digests(pool: &Pool) -> BTreeMap<String, String> {
    pool.apps()
        .map(|app| (app.name().to_owned(), app.digest()))
        .collect()
}

fn number(app: usize, n: usize) -> String {
    format!("+8617{app}0000000{n}")
}

/// Numbers 1–3 of every app, in area 010.
async fn add_numbers(pool: &Pool) {
    for (i, (name, _)) in APPS.iter().enumerate() {
        let numbers: Vec<_> = (1..=3).map(|n| (number(i, n), "010".to_owned())).collect();
        pool.add_configured_numbers(name, &numbers).await.unwrap();
    }
}

/// Binds parties `n` (A) and `n + 1000` (B, where the mode has one) in app `app`.
async fn bind(pool: &Pool, app: &str, n: u32, ttl_seconds: u64) -> Binding {
    let mode = pool.app(app).unwrap().mode();
    // X mode: what a routed call gets.
    let call_options = match mode {
        Mode::X => CallOptions {
            max_call_minutes: Some(n % 7),
            record: Some(n.is_multiple_of(2)),
            record_hint_tone: Some(format!("hint-{n}.wav")),
            ..CallOptions::default()
        },
        _ => CallOptions::default(),
    };
    let params = BindParams {
        app: app.into(),
        party_a: format!("+86138{n:08}"),
        party_b: (mode != Mode::Ax && mode != Mode::Axe).then(|| format!("+86139{n:08}")),
        area_code: Some("010".into()),
        ttl_seconds,
        call_options,
        ..BindParams::default()
    };
    pool.bind(params, Duration::from_secs(1)).await.unwrap()
}

/// Bindings of the four local modes in every state a local app reaches: ACTIVE, RELEASED (in
/// and past its cool-down), EXPIRED; parties from `first`. AX takes all three numbers.
async fn load(f: &Fixture, pool: &Pool, first: u32) {
    // The cool-downs of an earlier load are over.
    f.advance(COOL_DOWN);
    let mut n = first;
    for app in ["ax", "axe", "axb", "x"] {
        let mut bound = Vec::new();
        for ttl in [0, 0, 60] {
            bound.push(bind(pool, app, n, ttl).await);
            n += 1;
        }
        f.advance(20_000);
        pool.unbind(&BindingKey::Id(bound[0].id)).await.unwrap();
        f.advance(50_000);
        pool.unbind(&BindingKey::Id(bound[1].id)).await.unwrap();
        // One more that stays ACTIVE (AX has no number left): for AXE a fresh extension.
        if app != "ax" {
            bound.push(bind(pool, app, n, 0).await);
            n += 1;
        }
    }
    let expiry = ExpiryPolicy {
        skew_grace_ms: 0,
        defensive_unbind: false,
        batch_size: 100,
        round_budget: Duration::from_secs(60),
    };
    pool.expire_round(&expiry, f.now()).await.unwrap();
}

/// A binding written straight to the store: the states only a platform leads to.
fn record(app: &str, x: &str, state: Stored, n: u32, now: i64) -> store::BindingRecord {
    let mode = APPS
        .iter()
        .find(|(name, _)| *name == app)
        .map_or(Mode::Axb, |a| a.1);
    store::BindingRecord {
        id: store::BindingId::new(),
        app: app.into(),
        mode,
        state,
        x: x.into(),
        extension: (mode == Mode::Axe).then(|| "7".into()),
        y: (mode == Mode::Axyb && !x.is_empty()).then(|| number(4, 3)),
        party_a: format!("+86137{n:08}"),
        party_b: (mode != Mode::Ax && mode != Mode::Axe).then(|| format!("+86136{n:08}")),
        area_code: "010".into(),
        subscription_id: None,
        request_id: None,
        created_at_ms: now,
        updated_at_ms: now,
        expires_at_ms: None,
        released_at_ms: (!state.holds_slot()).then_some(now),
        ttl_seconds: 0,
        call_options: CallOptionsRecord {
            max_call_minutes: Some(3),
            last_minute_tone: Some("last.wav".into()),
            ..CallOptionsRecord::default()
        },
        user_data: None,
        reason: "test".into(),
    }
}

/// PENDING and RELEASING bindings, AXYB ones (on no X yet, and with X and Y), an AXE one
/// released just now, and one of an app that is no longer configured.
async fn load_upstream_states(f: &Fixture, first: u32) {
    let now = f.now();
    let records = [
        record("axb", &number(2, 2), Stored::Pending, first, now),
        record("axe", &number(1, 3), Stored::Releasing, first + 1, now),
        record("axe", &number(1, 2), Stored::Released, first + 2, now),
        record("x", &number(3, 1), Stored::Releasing, first + 3, now),
        record("axyb", "", Stored::Pending, first + 4, now),
        record("axyb", &number(4, 1), Stored::Active, first + 5, now),
        record("axyb", &number(4, 2), Stored::Releasing, first + 6, now),
        record("gone", "+8619900000001", Stored::Active, first + 7, now),
    ];
    for r in &records {
        f.store.insert_binding(r).await.unwrap();
    }
}

#[tokio::test]
async fn the_index_from_the_slots_index_is_the_index_from_every_record() {
    let f = Fixture::temporary();
    let empty = f.restored();
    let pool = f.open(restore::restore);
    add_numbers(&pool).await;
    load(&f, &pool, 1).await;
    load_upstream_states(&f, 100).await;
    let restored = f.restored();
    assert_eq!(restored, f.rebuilt_from_records());
    for (app, digest) in &restored {
        assert_ne!(
            digest, &empty[app],
            "{app}: the load left nothing to restore"
        );
    }
    // X mode: each party's X with the binding it holds it by, which its calls are routed by.
    let parties = restored["x"].split("parties:").nth(1).unwrap();
    assert!(
        parties.contains("Packed") && parties.contains('@'),
        "{}",
        restored["x"]
    );
    assert!(restored["axe"].contains("until {"), "{}", restored["axe"]);
    // Every cool-down over: the released bindings no longer count.
    f.advance(COOL_DOWN);
    assert_eq!(f.restored(), f.rebuilt_from_records());
}

#[tokio::test]
async fn after_a_crash_the_replayed_log_rebuilds_the_same_index_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let sled_then = dir.path().join("sled-then");
    let wal_later = dir.path().join("wal-later");
    let clock = Arc::new(ManualClock(AtomicI64::new(START)));
    {
        let f = Fixture {
            store: Arc::new(Store::open(&options).unwrap()),
            clock: Arc::clone(&clock),
        };
        let pool = f.open(restore::restore);
        add_numbers(&pool).await;
        load(&f, &pool, 1).await;
        drop(pool);
        f.store.close().await.unwrap();
    }
    // sled as it was then, the log as it is after more changes: a crash before sled was
    // flushed, whose log start-up replays.
    store::test_files::copy_dir(&options.path, &sled_then);
    let live = {
        let f = Fixture {
            store: Arc::new(Store::open(&options).unwrap()),
            clock: Arc::clone(&clock),
        };
        f.store.pause_checkpoints();
        let pool = f.open(restore::restore);
        load(&f, &pool, 500).await;
        load_upstream_states(&f, 900).await;
        store::test_files::copy_dir(&options.path.join("wal"), &wal_later);
        f.store
            .scan_bindings()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    store::test_files::stage_crash(dir.path(), &sled_then, &wal_later);
    let f = Fixture {
        store: Arc::new(Store::open(&options).unwrap()),
        clock,
    };
    let replayed: Vec<_> = f.store.scan_bindings().map(Result::unwrap).collect();
    assert_eq!(replayed, live, "the log was replayed");
    assert_eq!(f.restored(), f.rebuilt_from_records());
    f.store.close().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_slots_index_means_reading_every_record() {
    let f = Fixture::temporary();
    let pool = f.open(restore::restore);
    add_numbers(&pool).await;
    load(&f, &pool, 1).await;
    load_upstream_states(&f, 100).await;
    let from_records = f.rebuilt_from_records();
    f.store.damage_slot_values();
    let pool = f.open(restore::restore);
    assert_eq!(digests(&pool), from_records);
    // And it hands out only what is free: every AXE slot once.
    let mut slots = std::collections::BTreeSet::new();
    let live = f.store.scan_bindings().map(Result::unwrap);
    for b in live.filter(|b| b.app == "axe" && b.state.holds_slot()) {
        assert!(slots.insert((b.x, b.extension)));
    }
    for n in 2000.. {
        let params = BindParams {
            app: "axe".into(),
            party_a: format!("+86135{n:08}"),
            area_code: Some("010".into()),
            ..BindParams::default()
        };
        let Ok(b) = pool.bind(params, Duration::from_secs(1)).await else {
            break;
        };
        assert!(slots.insert((b.x, b.extension)), "handed out twice");
    }
}

/// Start-up and the resolver read the open bindings (the `open` index, then each record) and
/// resolve them one by one: a binding may have moved on by the time its turn comes (a Bind's
/// ACTIVE write applied between the index scan and the record's read; a user's Unbind retry
/// finishing first). Such a binding was released as if its unbind were open: an ACTIVE one
/// became RELEASED although nobody had unbound it (daemon chaos test, seed 104372001308677,
/// the default, round 13, once in 22 runs: "RELEASED, never unbound").
#[tokio::test]
async fn recovery_leaves_alone_a_binding_that_is_no_longer_open() {
    let f = Fixture::temporary();
    let pool = f.open(restore::restore);
    add_numbers(&pool).await;
    let app = pool.app("axb").unwrap();
    // Read as ACTIVE: the scan's index entry was its PENDING reservation's.
    let active = store::BindingId::from(bind(&pool, "axb", 1, 0).await.id);
    let read = f.store.get_binding(&active).unwrap().unwrap();
    // Read as RELEASING; RELEASED since.
    let released = record("axb", &number(2, 2), Stored::Released, 2, f.now());
    f.store.insert_binding(&released).await.unwrap();
    let stale = store::BindingRecord {
        state: Stored::Releasing,
        released_at_ms: None,
        ..released.clone()
    };
    f.advance(1_000);
    assert_eq!(app.recover(vec![read.clone(), stale]).await, 0);
    assert_eq!(f.store.get_binding(&active).unwrap(), Some(read));
    assert_eq!(f.store.get_binding(&released.id).unwrap(), Some(released));
    assert!(f.store.open_bindings().unwrap().is_empty());
}
