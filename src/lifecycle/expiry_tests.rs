//! Batched expiry over a pool on a store the tests control: a burst expires in batch writes
//! that share log syncs (a few batches each); a binding released, rebound or given a later
//! deadline after the round read it is left alone; a crash keeps whole batches or none; a
//! failed store loses nothing and frees every slot once. Apps have no platform (their bindings
//! are ACTIVE once durable, and expiry needs no platform call).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::platform::Mode;
use crate::store::faults::{self, Error, Point, Times};
use crate::store::{BindingState as Stored, StoreOptions};

const START: i64 = 1_700_000_000_000;
/// Bindings in a burst: more than two batches.
const BURST: usize = 150;
const GRACE_MS: i64 = 5_000;

#[derive(Debug)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// An app in `mode` (AXB in most tests) without a platform, numbers `+861700000000<n>` in area
/// 010, 100 bindings each.
fn app_in(mode: Mode) -> AppSetup {
    AppSetup::without_platform("rides", mode)
}

fn parties(n: usize, ttl_seconds: u64, request_id: Option<String>) -> BindParams {
    BindParams {
        app: "rides".into(),
        party_a: format!("+861380{n:07}"),
        party_b: Some(format!("+861390{n:07}")),
        area_code: Some("010".into()),
        ttl_seconds,
        request_id,
        ..BindParams::default()
    }
}

fn policy() -> ExpiryPolicy {
    ExpiryPolicy {
        skew_grace_ms: GRACE_MS,
        defensive_unbind: true,
        batch_size: 1000,
        round_budget: Duration::from_secs(60),
    }
}

struct Fixture {
    store: Arc<Store>,
    pool: Pool,
    clock: Arc<ManualClock>,
}

impl Fixture {
    /// A pool over `store`, at `now`, with four numbers (added if new).
    async fn open(store: Arc<Store>, now: i64) -> Fixture {
        Fixture::open_in(store, now, Mode::Axb).await
    }

    /// [`Fixture::open`] with the app in `mode`.
    async fn open_in(store: Arc<Store>, now: i64, mode: Mode) -> Fixture {
        let clock = Arc::new(ManualClock(AtomicI64::new(now)));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let retention =
            RetentionPolicy::new(Duration::from_secs(86_400), Duration::from_secs(86_400));
        let pool = Pool::open(
            Arc::clone(&store),
            vec![app_in(mode)],
            &dyn_clock,
            retention,
        )
        .unwrap();
        let numbers: Vec<_> = (1..=4)
            .map(|n| (format!("+86170000000{n:02}"), "010".to_owned()))
            .collect();
        pool.add_configured_numbers("rides", &numbers)
            .await
            .unwrap();
        Fixture { store, pool, clock }
    }

    /// A binding of parties number `n`, with request id `r<n>`.
    async fn bind(&self, n: usize, ttl_seconds: u64) -> Binding {
        let request_id = Some(format!("r{n}"));
        self.pool
            .bind(parties(n, ttl_seconds, request_id), Duration::from_secs(1))
            .await
            .unwrap()
    }

    /// `BURST` bindings due at one deadline, 60 s from now, all of them in sled: a round reads
    /// its candidates without waiting for the applier, and a Bind answered a moment ago may not
    /// be there yet (a round then takes it next time).
    async fn burst(&self) -> Vec<Binding> {
        self.burst_of(BURST).await
    }

    /// [`Fixture::burst`] of `count` bindings.
    async fn burst_of(&self, count: usize) -> Vec<Binding> {
        let mut out = Vec::new();
        for n in 0..count {
            out.push(self.bind(n, 60).await);
        }
        self.store.settled().await.unwrap();
        out
    }

    /// Past the burst's deadline and its skew grace.
    fn past_deadline(&self) {
        self.clock.0.fetch_add(60_000 + GRACE_MS, Ordering::SeqCst);
    }

    async fn round(&self) -> Result<Round, PoolError> {
        self.pool.expire_round(&policy(), self.clock.now_ms()).await
    }

    fn stored(&self, b: &Binding) -> store::BindingRecord {
        self.store
            .get_binding(&store::BindingId::from(b.id))
            .unwrap()
            .expect("stored")
    }

    fn state(&self, b: &Binding) -> Stored {
        self.stored(b).state
    }

    fn rides(&self) -> Arc<AppPool> {
        self.pool.app("rides").unwrap()
    }

    /// The index, the records and the store's own indexes agree: the slots the index counts
    /// are the ACTIVE records, each listed on its X once, and those with a deadline are in the
    /// expiry index.
    fn assert_consistent(&self) {
        let all: Vec<_> = self.store.scan_bindings().map(Result::unwrap).collect();
        let active: std::collections::BTreeSet<_> = all
            .iter()
            .filter(|b| b.state.holds_slot())
            .map(|b| b.id)
            .collect();
        assert_eq!(
            self.rides().live_bindings(),
            active.len() as u64,
            "index load"
        );
        let mut on_slots = std::collections::BTreeSet::new();
        for n in 1..=4 {
            for b in self
                .store
                .bindings_on("rides", &format!("+86170000000{n:02}"))
                .unwrap()
            {
                assert!(on_slots.insert(b.id), "{} on two slots", b.id);
            }
        }
        assert_eq!(on_slots, active, "slots index");
        let with_deadline: std::collections::BTreeSet<_> = all
            .iter()
            .filter(|b| b.state == Stored::Active && b.expires_at_ms.is_some())
            .map(|b| b.id)
            .collect();
        let due: std::collections::BTreeSet<_> = self
            .store
            .due_bindings(i64::MAX, 10_000)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(due, with_deadline, "expiry index");
    }
}

#[tokio::test]
async fn a_burst_expires_in_batches_that_share_log_syncs() {
    let store = Arc::new(Store::open_temporary().unwrap());
    let f = Fixture::open(store, START).await;
    let burst = f.burst().await;
    let forever = f.bind(1_000, 0).await;
    f.clock.0.fetch_add(60_000, Ordering::SeqCst);
    let early = f.round().await.unwrap();
    assert_eq!(early.expired, 0, "inside the skew grace");
    assert_eq!(early.next_due_ms, Some(START + 60_000 + GRACE_MS));

    f.clock.0.fetch_add(GRACE_MS, Ordering::SeqCst);
    let syncs = f.store.sync_count();
    let round = f.round().await.unwrap();
    assert_eq!(round.expired, BURST);
    assert!(!round.more);
    // Not one per binding, nor one per batch: the batches in flight share a sync.
    let batches = BURST.div_ceil(super::expiry::BATCH);
    assert_eq!(
        f.store.sync_count() - syncs,
        batches.div_ceil(super::expiry::BATCHES_IN_FLIGHT) as u64,
        "log syncs for {batches} batches"
    );
    for b in &burst {
        let rec = f.stored(b);
        assert_eq!(rec.state, Stored::Expired);
        assert_eq!(rec.released_at_ms, Some(f.clock.now_ms()));
    }
    assert_eq!(f.state(&forever), Stored::Active);
    f.assert_consistent();
    // The slots are free again.
    for n in 2_000..2_000 + BURST {
        f.bind(n, 0).await;
    }
    assert_eq!(f.round().await.unwrap().expired, 0);
    f.assert_consistent();
}

#[tokio::test]
async fn a_binding_released_rebound_or_given_a_later_deadline_meanwhile_is_left_alone() {
    let store = Arc::new(Store::open_temporary().unwrap());
    let f = Fixture::open(store, START).await;
    let burst = f.burst().await;
    f.past_deadline();
    // What a round read before the batch's transaction ran.
    let read: Vec<_> = burst.iter().map(|b| f.stored(b)).collect();
    let (released, later, rebound) = (&burst[0], &burst[1], &burst[2]);
    f.pool.unbind(&BindingKey::Id(released.id)).await.unwrap();
    f.pool
        .update(&BindingUpdate {
            id: later.id,
            ttl_seconds: Some(600),
            call_options: OptionsChange::default(),
        })
        .await
        .unwrap();
    // Its parties bound again (a new binding) after it was released.
    f.pool.unbind(&BindingKey::Id(rebound.id)).await.unwrap();
    let again = f
        .pool
        .bind(parties(2, 600, None), Duration::from_secs(1))
        .await
        .unwrap();

    let app = f.rides();
    let staged = app
        .stage_expiry(&read, &policy(), f.clock.now_ms())
        .unwrap();
    assert_eq!(app.finish_expiry(staged, false).await.unwrap(), BURST - 3);
    assert_eq!(f.state(released), Stored::Released);
    assert_eq!(f.state(rebound), Stored::Released);
    assert_eq!(f.state(later), Stored::Active);
    assert_eq!(f.state(&again), Stored::Active);
    for b in &burst[3..] {
        assert_eq!(f.state(b), Stored::Expired);
    }
    f.assert_consistent();
    assert_eq!(
        f.rides().live_bindings(),
        2,
        "the later one and the new one"
    );
}

/// AX bindings go one at a time (each unbound on the platform first, when the app has one):
/// one given a later deadline after the round read it is neither unbound nor expired.
#[tokio::test]
async fn an_ax_binding_given_a_later_deadline_after_the_round_read_it_is_left_alone() {
    let store = Arc::new(Store::open_temporary().unwrap());
    let f = Fixture::open_in(store, START, Mode::Ax).await;
    let bind_ax = |n: usize| BindParams {
        party_b: None,
        ..parties(n, 60, None)
    };
    let kept = f
        .pool
        .bind(bind_ax(1), Duration::from_secs(1))
        .await
        .unwrap();
    let gone = f
        .pool
        .bind(bind_ax(2), Duration::from_secs(1))
        .await
        .unwrap();
    // AX bindings act at the deadline itself (the platform never expires them).
    f.clock.0.fetch_add(60_000, Ordering::SeqCst);
    let (read_kept, read_gone) = (f.stored(&kept), f.stored(&gone));
    f.pool
        .update(&BindingUpdate {
            id: kept.id,
            ttl_seconds: Some(600),
            call_options: OptionsChange::default(),
        })
        .await
        .unwrap();

    let app = f.rides();
    let now = f.clock.now_ms();
    assert!(!app.expire_ax(read_kept, &policy(), now).await.unwrap());
    assert!(app.expire_ax(read_gone, &policy(), now).await.unwrap());
    assert_eq!(f.state(&kept), Stored::Active);
    assert_eq!(f.state(&gone), Stored::Expired);
    f.assert_consistent();
    assert_eq!(f.rides().live_bindings(), 1);
}

#[tokio::test]
async fn a_crash_in_a_round_keeps_whole_batches_or_nothing_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let (sled_then, wal_later) = (dir.path().join("sled-then"), dir.path().join("wal-later"));
    let burst = {
        let f = Fixture::open(Arc::new(Store::open(&options).unwrap()), START).await;
        let burst = f.burst().await;
        f.store.close().await.unwrap();
        burst
    };
    crate::store::copy_dir(&dir.path().join("db"), &sled_then);
    let at = START + 60_000 + GRACE_MS;
    {
        let f = Fixture::open(Arc::new(Store::open(&options).unwrap()), at).await;
        let round = f.round().await.unwrap();
        assert_eq!(round.expired, BURST);
        crate::store::copy_dir(&dir.path().join("db").join("wal"), &wal_later);
    }
    // The crash cut the round's write short, in its second batch's record (the three
    // records, of 64, 64 and 22 bindings, went to one segment in one write; the log moved on
    // to a new segment after it).
    let segment = std::fs::read_dir(&wal_later)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() / 2]).unwrap();
    // Cut short during that write, the log never got to its next segment.
    for later in std::fs::read_dir(&wal_later).unwrap() {
        let later = later.unwrap().path();
        if later > segment {
            std::fs::remove_file(later).unwrap();
        }
    }
    crate::store::stage_crash(dir.path(), &sled_then, &wal_later);

    let f = Fixture::open(Arc::new(Store::open(&options).unwrap()), at).await;
    let expired = burst
        .iter()
        .filter(|b| f.state(b) == Stored::Expired)
        .count();
    assert_eq!(expired, 64, "the first batch, whole; nothing of the second");
    f.assert_consistent();
    // The next round takes the rest, once.
    assert_eq!(f.round().await.unwrap().expired, BURST - 64);
    assert!(burst.iter().all(|b| f.state(b) == Stored::Expired));
    f.assert_consistent();
}

#[tokio::test]
async fn a_store_failure_in_a_round_loses_nothing_and_frees_each_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&StoreOptions::new(dir.path().join("db"))).unwrap());
    let f = Fixture::open(Arc::clone(&store), START).await;
    // More than the round stages before it first waits for the log.
    let in_flight = super::expiry::BATCH * super::expiry::BATCHES_IN_FLIGHT;
    let burst = f.burst_of(in_flight + 22).await;
    f.past_deadline();
    faults::set(store.path(), Point::LogSync, Error::Io, Times::Once);
    let failed = f.round().await.unwrap_err();
    assert!(failed.is_store_unavailable(), "{failed:?}");
    // The slots of the batches staged before the failed sync went back in the index with
    // their writes; the round staged nothing after it. Nothing is handed out while the store
    // refuses writes.
    let still_live = 22;
    assert_eq!(f.rides().live_bindings(), still_live as u64);
    let refused = f
        .pool
        .bind(parties(9_999, 0, None), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(refused.is_store_unavailable(), "{refused:?}");

    // Recovery writes the staged batches again: exactly those bindings are EXPIRED, none
    // lost; the rest are still due, and the next round expires them.
    assert!(store.recover().await.unwrap() >= 1);
    let expired = burst
        .iter()
        .filter(|b| f.state(b) == Stored::Expired)
        .count();
    assert_eq!(expired, in_flight);
    f.assert_consistent();
    assert_eq!(f.round().await.unwrap().expired, still_live);
    assert!(burst.iter().all(|b| f.state(b) == Stored::Expired));
    f.assert_consistent();
    assert_eq!(f.round().await.unwrap().expired, 0);
    for n in 2_000..2_000 + 4 * 100 {
        f.bind(n, 0).await;
    }
    f.assert_consistent();
    assert_eq!(f.rides().live_bindings(), 400, "every slot once");
}
