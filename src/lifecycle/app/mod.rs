//! One app's pool: its rules, allocation index, platform client and Binds in flight. The
//! lifecycle steps are in the submodules, each an `impl AppPool` over these private fields.

mod axyb_steps;
mod bind;
mod expire;
mod numbers;
mod reconcile;
mod release;
mod status;
mod update;

pub(super) use expire::StagedExpiry;
pub use numbers::AddedNumbers;

use std::sync::{Arc, Mutex, MutexGuard};

use super::cleanup::Cleanup;
use super::clock::Clock;
use super::error::PoolError;
use super::feed;
use super::inflight::InFlight;
use super::lock;
use super::records;
use super::retention::Retention;
use crate::alloc::{Index, Rules};
use crate::platform::Mode;
use crate::platform::options::CallOptions;
use crate::store::{
    BindingRecord, Lane, NumberRecord, NumberState, SlotView, Staged, Store, Term, Tx,
};
use crate::upstream::{AppClient, Circuit, UpstreamError};
use axyb_steps::{AxybSteps, Steps};

/// Everything needed to open an app's pool.
#[derive(Debug, Clone)]
pub struct AppSetup {
    pub name: String,
    pub rules: Rules,
    /// `None` for X mode, which has no platform API.
    pub client: Option<Arc<AppClient>>,
    /// A PENDING reservation the platform says it does not have is dropped only when a lookup
    /// asked this long after the first such answer says so too.
    pub pending_recheck: std::time::Duration,
    /// Ask the platform about numbers before adding them (see `AppPool::check_on_platform`).
    pub check_numbers_on_add: bool,
    /// The call options a Bind gets where it sets none (`[apps.call_defaults]`), only those
    /// the mode takes.
    pub call_defaults: CallOptions,
    /// The daemon's tasks and its shutdown, for the background work the pool starts
    /// (defensive unbinds).
    pub tasks: tokio_util::task::TaskTracker,
    pub cancel: tokio_util::sync::CancellationToken,
}

#[cfg(test)]
impl AppSetup {
    /// Tests: an app `name` in `mode` without a platform (its bindings are ACTIVE once durable),
    /// 100 bindings per X, 4-digit extensions, no cool-down, no fallback areas.
    pub(crate) fn without_platform(name: &str, mode: Mode) -> AppSetup {
        AppSetup {
            name: name.into(),
            rules: Rules {
                mode,
                max_bindings_per_x: 100,
                extension_digits: 4,
                max_extensions_per_x: None,
                cool_down_ms: 0,
                fallback_areas: Vec::new(),
            },
            client: None,
            pending_recheck: std::time::Duration::ZERO,
            check_numbers_on_add: false,
            call_defaults: CallOptions::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// An app as ListApps shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub name: String,
    pub mode: Mode,
    /// Numbers in the pool, drained ones included.
    pub numbers: u32,
    pub draining: u32,
    /// `None` for an app that makes no platform calls (X mode).
    pub platform: Option<PlatformInfo>,
}

/// How an app reaches the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformInfo {
    pub base_url: String,
    pub rate_per_second: u32,
    pub burst: u32,
    /// `None` on a cluster replica that does not lead the app: it makes no platform calls
    /// for it.
    pub circuit: Option<Circuit>,
}

/// What every app's pool shares with the others.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// See [`AppPool::deadlines`].
    pub deadlines: Arc<tokio::sync::Notify>,
    /// Whether expiry is in a burst, for the defensive unbinds (see `cleanup`).
    pub expiring: tokio::sync::watch::Receiver<bool>,
    pub retention: Retention,
}

/// One app's pool.
#[derive(Debug)]
pub struct AppPool {
    name: String,
    rules: Rules,
    /// `None` for X mode.
    client: Option<Arc<AppClient>>,
    /// See [`AppSetup::pending_recheck`], in ms.
    pending_recheck_ms: i64,
    check_numbers_on_add: bool,
    /// See [`AppSetup::call_defaults`].
    call_defaults: CallOptions,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// The allocation index. Held only for in-memory work and short store writes, never across
    /// an `.await`.
    index: Mutex<Index>,
    /// Binds running here: idempotent duplicates and reservations the resolver must skip.
    inflight: InFlight,
    /// Shared by every app and the expiry job: signalled when a deadline is written, so the job
    /// wakes early for a binding that expires before the one it sleeps for.
    deadlines: Arc<tokio::sync::Notify>,
    /// Defensive unbinds after expiry, drained in the background (see `cleanup`).
    cleanup: Arc<Cleanup>,
    /// How long bindings that left service are kept (see `lifecycle::retention`).
    retention: Retention,
    /// AXYB: one bind or search at a time per party A talks to the platform.
    axyb_steps: AxybSteps,
    /// Cluster mode: the term of this replica's leadership of the app (see [`AppPool::lane`]).
    term: Option<Arc<Term>>,
}

/// How long a binding of an app with `rules` must be kept after it left service, for its
/// slot's cool-down to survive a restart (see [`AppPool::cool_down_kept_ms`]).
pub(super) fn cool_down_kept_ms(rules: &Rules) -> i64 {
    match rules.mode {
        Mode::Ax | Mode::Axe => rules.cool_down_ms.max(0),
        _ => 0,
    }
}

impl AppPool {
    /// The pool of `setup`'s app; `term`: in cluster mode, the term of this replica's
    /// leadership of it, under which its writes go to etcd.
    pub(super) fn new(
        setup: AppSetup,
        shared: Shared,
        term: Option<Arc<Term>>,
    ) -> Result<Self, PoolError> {
        let Shared {
            store,
            clock,
            deadlines,
            expiring,
            retention,
        } = shared;
        let mode = setup.rules.mode;
        let index = numbers_index(&store, &setup.name, &setup.rules, clock.now_ms())?;
        Ok(AppPool {
            name: setup.name,
            rules: setup.rules,
            client: setup.client,
            pending_recheck_ms: i64::try_from(setup.pending_recheck.as_millis())
                .unwrap_or(i64::MAX),
            check_numbers_on_add: setup.check_numbers_on_add,
            call_defaults: setup.call_defaults.for_mode(mode),
            store,
            clock,
            index: Mutex::new(index),
            inflight: InFlight::default(),
            axyb_steps: AxybSteps::default(),
            deadlines,
            cleanup: Arc::new(Cleanup::new(setup.tasks, setup.cancel, expiring)),
            retention,
            term,
        })
    }

    /// How long a binding of this app must be kept after it left service for its slot's
    /// cool-down to survive a restart: the record is what restores it (AX numbers, AXE
    /// extensions); 0 for the other modes.
    pub(in crate::lifecycle) fn cool_down_kept_ms(&self) -> i64 {
        cool_down_kept_ms(&self.rules)
    }

    /// Cluster mode: the term of this replica's leadership under which the pool serves.
    pub fn term(&self) -> Option<&Arc<Term>> {
        self.term.as_ref()
    }

    /// Where the app's writes go: the local log, or in cluster mode etcd under this
    /// replica's term.
    pub(crate) fn lane(&self) -> Lane<'_> {
        match &self.term {
            Some(term) => Lane::Leader(term),
            None => Lane::Local,
        }
    }

    /// The app's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The app's binding mode.
    pub fn mode(&self) -> Mode {
        self.rules.mode
    }

    /// What ListApps shows of the app.
    pub fn info(&self) -> AppInfo {
        let (numbers, draining) = {
            let index = self.index();
            index.numbers().fold((0, 0), |(all, draining), (_, n)| {
                (
                    all + 1,
                    draining + u32::from(n.state == crate::alloc::NumberState::Draining),
                )
            })
        };
        let platform = self.client.as_ref().map(|c| {
            let s = c.settings();
            PlatformInfo {
                base_url: s.base_url.clone(),
                rate_per_second: s.rate_per_second.get(),
                burst: s.burst.get(),
                circuit: Some(c.circuit()),
            }
        });
        AppInfo {
            name: self.name.clone(),
            mode: self.rules.mode,
            numbers,
            draining,
            platform,
        }
    }

    /// Whether the platform holds this app's bindings (not X mode).
    pub(in crate::lifecycle) fn on_platform(&self) -> bool {
        self.rules.mode != Mode::X && self.client.is_some()
    }

    /// X mode: where a call from `caller` to `x` goes — the other party of the caller's
    /// binding on `x`, found in the index (which keeps, in X mode, the binding by which each
    /// party holds its X) and read from its durable record; `None` when the caller holds no
    /// ACTIVE binding there (or the app is not X mode).
    pub fn route_call(&self, caller: &str, x: &str) -> Option<super::CallRoute> {
        let id = crate::store::BindingId(self.index().route(caller, x)?);
        match self.store.get_binding(&id) {
            Ok(b) => super::CallRoute::of(&b?, caller, x),
            Err(e) => {
                tracing::warn!(app = %self.name, binding = %id, error = %e, "cannot read the binding a call goes by");
                None
            }
        }
    }

    /// Bindings holding a slot on the app's numbers now (PENDING, ACTIVE, RELEASING): one
    /// pass over the index, for metrics.
    pub fn live_bindings(&self) -> u64 {
        self.index().numbers().map(|(_, n)| u64::from(n.load)).sum()
    }

    /// Whether `x` is one of the app's numbers (not removed).
    pub fn has_number(&self, x: &str) -> bool {
        self.index().number(x).is_some()
    }

    /// AXYB: waits until no other bind or search of `rec`'s party A talks to the platform (see
    /// `axyb_steps`), and holds that turn while the guard lives; other modes go at once.
    async fn platform_turn(&self, rec: &BindingRecord) -> Option<Steps<'_>> {
        if self.rules.mode != Mode::Axyb {
            return None;
        }
        Some(self.axyb_steps.of(&rec.party_a).await)
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// The one way the pool writes: under the index lock, `tx` runs as a store transaction (it
    /// may read and use the index) and `then` brings the index in step with what it returned;
    /// after the lock is released, the write is awaited until durable. Concurrent writers of
    /// the app are thus ordered the same in the index and in the store, and nothing is answered
    /// before it is on disk.
    async fn write<T: Send>(
        &self,
        tx: impl FnOnce(&Tx<'_>, &mut Index) -> Result<T, PoolError>,
        then: impl FnOnce(&mut Index, &T),
    ) -> Result<T, PoolError> {
        Ok(self.stage_write(tx, then)?.await?)
    }

    /// [`AppPool::write`] without the wait: the write is ordered and the index in step with it,
    /// and the returned [`Staged`] write is durable once awaited. For a caller that stages
    /// several writes and waits once for all of them; nothing it returned may be acted on
    /// outside the index before that wait.
    fn stage_write<T>(
        &self,
        tx: impl FnOnce(&Tx<'_>, &mut Index) -> Result<T, PoolError>,
        then: impl FnOnce(&mut Index, &T),
    ) -> Result<Staged<T>, PoolError> {
        let staged = {
            let mut index = self.index();
            let now = self.clock.now_ms();
            let staged = self.store.stage_in(self.lane(), |t| {
                let value = tx(t, &mut index)?;
                let news: Vec<_> = t
                    .take_binding_changes()
                    .iter()
                    .filter_map(|c| feed::change(c, now))
                    .collect();
                t.append_changes(&news)?;
                Ok::<_, PoolError>(value)
            })?;
            then(&mut index, staged.value());
            staged
        };
        Ok(staged)
    }

    /// Start-up: the `restore` calls that follow only record what they change, and `end_restore`
    /// settles each touched number once.
    pub(super) fn begin_restore(&self) {
        self.index().begin_bulk();
    }

    pub(super) fn end_restore(&self) {
        let now = self.clock.now_ms();
        self.index().end_bulk(now);
    }

    /// Start-up, before restoring again from scratch: the index holds the app's numbers and no
    /// binding, and no call is routed.
    pub(super) fn reset_index(&self) -> Result<(), PoolError> {
        let fresh = numbers_index(&self.store, &self.name, &self.rules, self.clock.now_ms())?;
        *self.index() = fresh;
        Ok(())
    }

    /// The size of its biggest tables now (see `restore::TableSizes`).
    pub(super) fn table_sizes(&self) -> super::restore::TableSizes {
        super::restore::TableSizes {
            parties: self.index().single_parties() as u64,
        }
    }

    /// Start-up: makes room in its tables for `sizes`.
    pub(super) fn make_room(&self, sizes: super::restore::TableSizes) {
        let fit = |n: u64| usize::try_from(n).unwrap_or(0);
        self.index().reserve(fit(sizes.parties));
    }

    /// Re-reads at start-up one binding that holds a slot, from its `slots` entry.
    pub(super) fn restore_slot(&self, x: &str, id: crate::store::BindingId, slot: &SlotView<'_>) {
        let now = self.clock.now_ms();
        self.index()
            .occupy(&records::slot_occupant(x, id, slot), now);
    }

    /// Re-reads one stored binding at start-up.
    pub(super) fn restore(&self, b: &BindingRecord) {
        let now = self.clock.now_ms();
        let mut index = self.index();
        if b.state.holds_slot() {
            index.occupy(&records::occupant(b), now);
        } else if let Some(released) = b.released_at_ms {
            index.cool(&records::occupant(b), released, now);
        }
    }

    /// Acts on the platform contradicting the index about number `x`: a number the platform
    /// says is not the app's is marked removed, a blacklisted one frozen (both leave rotation
    /// for good); any other contradiction sets it aside until reconciliation clears it.
    async fn flag_number(&self, x: &str, error: &UpstreamError) {
        use crate::platform::codes;
        let (state, needs_reconcile, what) = match error.code() {
            Some(codes::NUMBER_NOT_APPLIED | codes::AX_ACCOUNT_NOT_EXIST) => (
                Some(NumberState::Removed),
                false,
                "not the app's number on the platform; removed",
            ),
            Some(codes::NUMBER_BLACKLISTED) => (
                Some(NumberState::Frozen),
                false,
                "blacklisted on the platform; frozen",
            ),
            _ => (
                None,
                true,
                "platform contradicted the index; set aside for reconciliation",
            ),
        };
        tracing::warn!(app = %self.name, number = x, error = %error, "{what}");
        let now = self.clock.now_ms();
        let flagged = self
            .write(
                |tx, _| {
                    let Some(r) = tx.get_number(&self.name, x)? else {
                        return Ok(None);
                    };
                    let record = NumberRecord {
                        state: state.unwrap_or(r.state),
                        needs_reconcile: needs_reconcile || r.needs_reconcile,
                        updated_at_ms: now,
                        ..r
                    };
                    tx.put_number(&record)?;
                    Ok(Some(record))
                },
                |index, record| {
                    let Some(record) = record else { return };
                    if record.state == NumberState::Removed
                        && index.number(x).is_some_and(|n| n.load == 0)
                    {
                        index.remove_number(x);
                    } else {
                        index.upsert_number(&records::number(record), now);
                    }
                },
            )
            .await;
        if let Err(e) = flagged {
            tracing::error!(app = %self.name, number = x, error = %e, "could not flag number");
        }
    }

    /// Tests: the index (X mode: with the routes), in an order that does not depend on how it
    /// was built.
    #[cfg(test)]
    pub(super) fn digest(&self) -> String {
        self.index().digest()
    }

    /// A failed platform call, for the caller: the details are logged here, once, and only
    /// the reason and result code go on.
    fn upstream_error(&self, e: &UpstreamError) -> PoolError {
        tracing::warn!(app = %self.name, error = %e, "platform call failed");
        PoolError::from_upstream(e).in_app(&self.name)
    }
}

/// An index of the app's numbers (all but the removed ones), holding no binding.
fn numbers_index(store: &Store, app: &str, rules: &Rules, now_ms: i64) -> Result<Index, PoolError> {
    let mut index = Index::new(rules.clone());
    for n in store.numbers(Some(app))? {
        if n.state != NumberState::Removed {
            index.upsert_number(&records::number(&n), now_ms);
        }
    }
    Ok(index)
}
