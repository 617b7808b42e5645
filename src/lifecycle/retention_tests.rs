//! Retention over a pool on a temporary store, with a clock the tests move: what a round
//! deletes and forgets, request ids within and after their retention, retention 0, cool-downs,
//! backlogs, and restarts. Apps have no platform (their bindings are ACTIVE once durable).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::platform::Mode;
use crate::store::{StoreOptions, keys};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const START: i64 = 1_700_000_000_000;

/// Wall-clock time that moves only when a test moves it.
#[derive(Debug)]
struct ManualClock(AtomicI64);

impl ManualClock {
    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

type KeySets = BTreeMap<&'static str, BTreeSet<Vec<u8>>>;

struct Fixture {
    store: Arc<Store>,
    pool: Pool,
    clock: Arc<ManualClock>,
}

/// An app without a platform: `mode`, numbers `+86170000000<n>` in area 010, cool-down
/// `cool_down_ms`.
fn app(name: &str, mode: Mode, cool_down_ms: i64) -> AppSetup {
    let base = AppSetup::without_platform(name, mode);
    AppSetup {
        rules: Rules {
            cool_down_ms,
            ..base.rules
        },
        ..base
    }
}

fn policy(released_ms: i64, request_ms: i64) -> RetentionPolicy {
    RetentionPolicy {
        released_ms,
        request_ms,
    }
}

impl Fixture {
    async fn new(apps: Vec<AppSetup>, retention: RetentionPolicy) -> Fixture {
        let store = Arc::new(Store::open_temporary().unwrap());
        Fixture::on(
            store,
            Arc::new(ManualClock(AtomicI64::new(START))),
            apps,
            retention,
        )
        .await
    }

    async fn on(
        store: Arc<Store>,
        clock: Arc<ManualClock>,
        apps: Vec<AppSetup>,
        retention: RetentionPolicy,
    ) -> Fixture {
        let names: Vec<String> = apps.iter().map(|a| a.name.clone()).collect();
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let pool = Pool::open(Arc::clone(&store), apps, &dyn_clock, retention).unwrap();
        for (i, name) in names.iter().enumerate() {
            let numbers = [(format!("+8617{i}00000001"), "010".to_owned())];
            pool.add_configured_numbers(name, &numbers).await.unwrap();
        }
        Fixture { store, pool, clock }
    }

    async fn bind(&self, app: &str, n: u8, request_id: Option<&str>) -> Result<Binding, PoolError> {
        let mode = self.pool.app(app).unwrap().mode();
        let params = BindParams {
            app: app.into(),
            party_a: format!("+86138000100{n:02}"),
            party_b: (mode != Mode::Ax).then(|| format!("+86139000200{n:02}")),
            area_code: Some("010".into()),
            request_id: request_id.map(str::to_owned),
            ..BindParams::default()
        };
        self.pool.bind(params, Duration::from_secs(1)).await
    }

    async fn unbind(&self, b: &Binding) -> Binding {
        self.pool.unbind(&BindingKey::Id(b.id)).await.unwrap()
    }

    async fn round(&self) -> RetentionRound {
        self.pool
            .retention_round(self.clock.now_ms())
            .await
            .unwrap()
    }

    /// The store's keys, without the change feed's (it records every binding change and
    /// keeps them for its own retention, see `calls::retention`).
    fn keys(&self) -> KeySets {
        let mut keys = self.store.key_sets();
        keys.remove(keys::CHANGES);
        if let Some(meta) = keys.get_mut(keys::META) {
            meta.retain(|k| !k.starts_with(b"feed/"));
        }
        keys
    }

    fn stored(&self, b: &Binding) -> Option<store::BindingRecord> {
        self.store
            .get_binding(&store::BindingId::from(b.id))
            .unwrap()
    }
}

/// Every key binding `b` has in the store while it is RELEASED or EXPIRED: (tree, key). Its one
/// retention entry is in `remembered` while its request id is remembered, else in `released`.
fn keys_of_left(f: &Fixture, b: &Binding) -> Vec<(&'static str, Vec<u8>)> {
    let rec = f.stored(b).expect("stored");
    let id = rec.id;
    let left = rec.left_service_ms().expect("left service");
    let mut out = vec![(keys::BINDINGS, keys::binding(&id).to_vec())];
    match &rec.request_id {
        Some(rid) => {
            out.push((keys::REQUESTS, keys::request(&rec.app, rid).unwrap()));
            out.push((keys::REMEMBERED, keys::remembered(left, &id).to_vec()));
        }
        None => out.push((keys::RELEASED, keys::released(left, &id).to_vec())),
    }
    out
}

/// `before` without the `gone` keys, each of which it must have.
fn without(before: &KeySets, gone: &[(&'static str, Vec<u8>)]) -> KeySets {
    let mut after = before.clone();
    for (tree, key) in gone {
        assert!(
            after.get_mut(tree).unwrap().remove(key),
            "{tree} lacks {key:?}"
        );
    }
    after
}

#[tokio::test]
async fn a_round_deletes_what_left_service_long_enough_ago_and_nothing_else() {
    let apps = vec![app("calls", Mode::X, 0), app("other", Mode::X, 0)];
    let f = Fixture::new(apps, policy(7 * DAY, 24 * HOUR)).await;
    // Released and expired long enough ago.
    let released = f.bind("calls", 1, Some("r1")).await.unwrap();
    let released = f.unbind(&released).await;
    let params = BindParams {
        ttl_seconds: 60,
        ..BindParams::default()
    };
    let expiring = f
        .pool
        .bind(
            BindParams {
                app: "calls".into(),
                party_a: "+8613800010002".into(),
                party_b: Some("+8613900020002".into()),
                request_id: Some("r2".into()),
                ..params
            },
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    let no_request_id = f.bind("calls", 3, None).await.unwrap();
    let no_request_id = f.unbind(&no_request_id).await;
    f.clock.advance(61_000);
    let expiry = ExpiryPolicy {
        skew_grace_ms: 0,
        defensive_unbind: false,
        batch_size: 100,
        round_budget: Duration::from_secs(60),
    };
    assert_eq!(
        f.pool
            .expire_round(&expiry, f.clock.now_ms())
            .await
            .unwrap()
            .expired,
        1
    );
    // Live bindings, one with another app's copy of a deleted binding's request id.
    let active = f.bind("calls", 4, Some("r4")).await.unwrap();
    let other_active = f.bind("other", 1, Some("r1")).await.unwrap();
    // Released later: inside its retention at the round, but past its request id's.
    f.clock.advance(HOUR);
    let recent = f.bind("calls", 5, Some("r5")).await.unwrap();
    let recent = f.unbind(&recent).await;
    let other_recent = f.bind("other", 6, Some("r6")).await.unwrap();
    let other_recent = f.unbind(&other_recent).await;

    let before = f.keys();
    let mut gone = keys_of_left(&f, &released);
    gone.extend(keys_of_left(
        &f,
        &f.pool.get(&BindingKey::Id(expiring.id)).unwrap(),
    ));
    gone.extend(keys_of_left(&f, &no_request_id));
    // The request ids of the recent ones are forgotten, their records stay, indexed in
    // `released` now.
    let mut expected = before.clone();
    for b in [&recent, &other_recent] {
        gone.extend(
            keys_of_left(&f, b)
                .into_iter()
                .filter(|(tree, _)| [keys::REQUESTS, keys::REMEMBERED].contains(tree)),
        );
        let left = f.stored(b).unwrap().left_service_ms().unwrap();
        let key = keys::released(left, &store::BindingId::from(b.id)).to_vec();
        assert!(expected.get_mut(keys::RELEASED).unwrap().insert(key));
    }
    f.clock.advance(7 * DAY - HOUR);
    let round = f.round().await;
    assert_eq!(
        round,
        RetentionRound {
            deleted: 3,
            forgotten: 4,
            more: false
        }
    );
    assert_eq!(f.keys(), without(&expected, &gone));
    assert_eq!(f.pool.retention_deleted(), 3);

    assert!(f.stored(&released).is_none());
    assert_eq!(f.pool.get(&BindingKey::Id(active.id)).unwrap(), active);
    assert_eq!(
        f.pool.get(&BindingKey::Id(other_active.id)).unwrap(),
        other_active
    );
    for b in [&recent, &other_recent] {
        let kept = f.pool.get(&BindingKey::Id(b.id)).unwrap();
        assert_eq!(
            kept,
            Binding {
                request_id: None,
                ..b.clone()
            }
        );
    }
    // Nothing more is due; a second round changes nothing.
    let after = f.keys();
    assert_eq!(f.round().await, RetentionRound::default());
    assert_eq!(f.keys(), after);
    // The rest goes once its own retention has passed.
    f.clock.advance(HOUR);
    assert_eq!(f.round().await.deleted, 2);
    assert!(f.stored(&recent).is_none() && f.stored(&other_recent).is_none());
}

#[tokio::test]
async fn a_request_id_is_remembered_until_its_retention_has_passed() {
    let f = Fixture::new(vec![app("calls", Mode::X, 0)], policy(7 * DAY, 24 * HOUR)).await;
    let first = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    // While the binding lives its request id is never forgotten.
    f.clock.advance(3 * DAY);
    f.round().await;
    assert_eq!(f.bind("calls", 1, Some("ride-1")).await.unwrap(), first);
    let released = f.unbind(&first).await;
    assert_eq!(released.state, BindingState::Released);

    // Within the retention the request id returns the released binding, as it is.
    f.clock.advance(24 * HOUR - 1);
    f.round().await;
    let again = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    assert_eq!(again, released);
    let by_request = BindingKey::Request {
        app: "calls".into(),
        request_id: "ride-1".into(),
    };
    assert_eq!(f.pool.get(&by_request).unwrap(), released);
    let other_parties = f.bind("calls", 2, Some("ride-1")).await.unwrap_err();
    assert!(
        matches!(
            other_parties,
            PoolError::Refused {
                reason: Reason::RequestIdConflict,
                ..
            }
        ),
        "{other_parties:?}"
    );

    // After it, the request id starts a new binding; the old record is kept, without it.
    f.clock.advance(1);
    assert_eq!(f.round().await.forgotten, 1);
    assert!(matches!(
        f.pool.get(&by_request),
        Err(PoolError::Refused {
            reason: Reason::BindingNotFound,
            ..
        })
    ));
    let new = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    assert_ne!(new.id, first.id);
    assert_eq!(new.state, BindingState::Active);
    assert_eq!(f.pool.get(&by_request).unwrap(), new);
    assert_eq!(f.stored(&first).unwrap().request_id, None);
}

#[tokio::test]
async fn with_no_retention_a_binding_is_deleted_when_it_leaves_service() {
    let f = Fixture::new(vec![app("calls", Mode::X, 0)], policy(0, 24 * HOUR)).await;
    let empty = f.keys();
    let b = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    let released = f.unbind(&b).await;
    assert_eq!(
        released.state,
        BindingState::Released,
        "answered as it left"
    );
    assert_eq!(f.pool.retention_deleted(), 1);
    // Only the request id is left, taken until its retention has passed.
    let rec_keys = {
        let id = store::BindingId::from(b.id);
        let left = released.released_at_ms.unwrap();
        vec![
            (keys::REQUESTS, keys::request("calls", "ride-1").unwrap()),
            (
                keys::REMEMBERED,
                keys::remembered_tombstone(left, &id).to_vec(),
            ),
        ]
    };
    let mut tombstone = empty.clone();
    for (tree, key) in &rec_keys {
        tombstone.get_mut(tree).unwrap().insert(key.clone());
    }
    assert_eq!(f.keys(), tombstone);
    assert!(matches!(
        f.pool.get(&BindingKey::Id(b.id)),
        Err(PoolError::Refused {
            reason: Reason::BindingNotFound,
            ..
        })
    ));
    let refused = f.bind("calls", 1, Some("ride-1")).await.unwrap_err();
    let PoolError::Refused {
        reason: Reason::RequestIdConflict,
        message: why,
        ..
    } = &refused
    else {
        panic!("{refused:?}");
    };
    assert!(why.contains("ride-1") && why.contains("deleted"), "{why}");
    assert_eq!(f.keys(), tombstone, "a refused Bind writes nothing");

    f.clock.advance(24 * HOUR);
    assert_eq!(
        f.round().await,
        RetentionRound {
            deleted: 0,
            forgotten: 1,
            more: false
        }
    );
    assert_eq!(f.keys(), empty);
    let new = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    assert_ne!(new.id, b.id);

    // Expiry deletes at once too, and a binding without request id leaves nothing.
    let expiring = f
        .pool
        .bind(
            BindParams {
                app: "calls".into(),
                party_a: "+8613800010009".into(),
                party_b: Some("+8613900020009".into()),
                ttl_seconds: 60,
                ..BindParams::default()
            },
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    f.unbind(&new).await;
    f.clock.advance(24 * HOUR);
    f.round().await;
    let expiry = ExpiryPolicy {
        skew_grace_ms: 0,
        defensive_unbind: false,
        batch_size: 100,
        round_budget: Duration::from_secs(60),
    };
    assert_eq!(
        f.pool
            .expire_round(&expiry, f.clock.now_ms())
            .await
            .unwrap()
            .expired,
        1
    );
    assert!(f.stored(&expiring).is_none());
    assert_eq!(f.keys(), empty);
    assert_eq!(f.pool.retention_deleted(), 3);
}

#[tokio::test]
async fn no_retention_and_no_request_id_retention_leave_nothing_at_release() {
    let f = Fixture::new(vec![app("calls", Mode::X, 0)], policy(0, 0)).await;
    let empty = f.keys();
    let b = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    f.unbind(&b).await;
    assert_eq!(f.keys(), empty);
    let new = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    assert_ne!(new.id, b.id);
}

#[tokio::test]
async fn a_cooling_slot_keeps_its_record_until_the_cool_down_has_ended() {
    const COOL: i64 = 300_000;
    let apps = vec![app("drivers", Mode::Ax, COOL), app("calls", Mode::X, 0)];
    let f = Fixture::new(apps, policy(0, 0)).await;
    let ax = f.bind("drivers", 1, Some("d1")).await.unwrap();
    let ax = f.unbind(&ax).await;
    // The record is what restores the cool-down after a restart: it stays until it ends.
    assert!(f.stored(&ax).is_some());
    f.clock.advance(COOL - 1);
    assert_eq!(f.round().await.deleted, 0);
    assert!(f.stored(&ax).is_some());
    f.clock.advance(1);
    assert_eq!(f.round().await.deleted, 1);
    assert!(f.stored(&ax).is_none());
    // An app without cool-down still deletes at release.
    let x = f.bind("calls", 1, None).await.unwrap();
    f.unbind(&x).await;
    assert!(f.stored(&x).is_none());
}

#[tokio::test]
async fn a_backlog_goes_in_bounded_rounds() {
    let f = Fixture::new(vec![app("calls", Mode::X, 0)], policy(DAY, HOUR)).await;
    let empty = f.keys();
    let records: Vec<store::BindingRecord> = (0..1_050u32)
        .map(|n| store::BindingRecord {
            id: store::BindingId::new(),
            app: "calls".into(),
            mode: Mode::X,
            state: store::BindingState::Released,
            x: "+8617000000001".into(),
            extension: None,
            y: None,
            party_a: format!("+86138{n:08}"),
            party_b: Some(format!("+86139{n:08}")),
            area_code: "010".into(),
            subscription_id: None,
            request_id: Some(format!("r{n}")),
            created_at_ms: START,
            updated_at_ms: START,
            expires_at_ms: None,
            released_at_ms: Some(START),
            ttl_seconds: 0,
            call_options: Default::default(),
            user_data: None,
            reason: "test".into(),
        })
        .collect();
    f.store
        .commit(|tx| records.iter().try_for_each(|r| tx.put_binding(r)))
        .await
        .unwrap();
    f.clock.advance(DAY);
    let first = f.round().await;
    assert_eq!(
        (first.forgotten, first.deleted, first.more),
        (1_000, 1_000, true)
    );
    let second = f.round().await;
    assert_eq!(
        (second.forgotten, second.deleted, second.more),
        (50, 50, false)
    );
    assert_eq!(f.keys(), empty);
}

#[tokio::test]
async fn deletes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(dir.path().join("db"));
    let clock = Arc::new(ManualClock(AtomicI64::new(START)));
    let retention = policy(7 * DAY, 24 * HOUR);
    let apps = || vec![app("calls", Mode::X, 0)];
    let (old, active, after) = {
        let store = Arc::new(Store::open(&options).unwrap());
        let f = Fixture::on(Arc::clone(&store), Arc::clone(&clock), apps(), retention).await;
        let old = f.bind("calls", 1, Some("ride-1")).await.unwrap();
        let old = f.unbind(&old).await;
        let active = f.bind("calls", 2, Some("ride-2")).await.unwrap();
        f.clock.advance(7 * DAY);
        assert_eq!(f.round().await.deleted, 1);
        let after = f.keys();
        drop(f);
        store.close().await.unwrap();
        (old, active, after)
    };
    let store = Arc::new(Store::open(&options).unwrap());
    let f = Fixture::on(store, clock, apps(), retention).await;
    assert_eq!(f.keys(), after);
    assert!(f.stored(&old).is_none());
    assert_eq!(f.pool.get(&BindingKey::Id(active.id)).unwrap(), active);
    // The request id of the deleted binding was forgotten with it.
    let new = f.bind("calls", 1, Some("ride-1")).await.unwrap();
    assert_ne!(new.id, old.id);
    f.store.close().await.unwrap();
}

/// A Bind repeated with its request id just after the first one was answered returns the same
/// binding, also while sled does not hold the first one's record yet (its apply is held up
/// here): the repeat looks its request id up in a transaction, which sees the answered write.
#[tokio::test]
async fn a_repeated_bind_finds_its_binding_before_sled_holds_it() {
    use crate::store::faults::{self, Error, Point, Times};
    let f = Fixture::new(vec![app("calls", Mode::X, 0)], policy(DAY, DAY)).await;
    faults::stall_for(Duration::from_secs(3));
    // Every apply stalls (a background write of the pool's may come first): the Bind's
    // record is still waiting for its apply when it is answered.
    faults::set(
        f.store.path(),
        Point::SledApply,
        Error::Stall,
        Times::Always,
    );
    let first = f.bind("calls", 1, Some("r1")).await.unwrap();
    let id = store::BindingId::from(first.id);
    assert_eq!(
        f.store.peek_binding(&id).unwrap(),
        None,
        "answered before sled holds it (the apply is stalled)"
    );
    let again = f.bind("calls", 1, Some("r1")).await.unwrap();
    assert_eq!(again.id, first.id, "the same binding, not a conflict");
    faults::clear(f.store.path());
    assert_eq!(f.stored(&first).map(|r| r.id), Some(id));
}
