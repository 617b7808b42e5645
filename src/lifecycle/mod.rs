//! The life of a binding: the two-phase bind, release, expiry, reconciliation with the
//! platform and the defensive clean-up after expiry. It keeps the allocation index (`alloc`),
//! the store and the platform (`upstream`, through `upstream_calls`) in step, and speaks only
//! domain types ([`Binding`], [`BindingId`], [`BindingState`], [`NumberState`]) to its callers.
//!
//! A Bind reserves a slot under the app's index lock, makes the reservation durable (PENDING),
//! calls the platform without any lock held, and records the answer (ACTIVE, or the reservation
//! dropped). An answer that never came is resolved by asking the platform, never by guessing.
//!
//! - `mod.rs`: [`Pool`], the facade over every app.
//! - `app/`: [`AppPool`], one app — `bind`, `release`, `expire`, `reconcile`, `numbers`.
//! - `binding`, `params`, `error`: the types callers see; `records`: store ↔ domain.
//! - `options`: the call options in force on a Bind, and what an UpdateBinding changes.
//! - `expiry`: expiry rounds over every app (the `jobs` scheduler runs them).
//! - `retention`: deleting bindings that left service, and forgetting their request ids.
//! - `reconciler`: reconciliation runs over every app, one at a time, and what they found;
//!   `reconcile_runs`: the runs kept in memory for callers to follow.
//! - `inflight`, `cleanup`, `clock`: Binds running here, defensive unbinds, wall-clock time.
//! - `upstream_calls`: the adapter to `crate::upstream`.

mod app;
mod binding;
mod cleanup;
pub mod clock;
mod error;
mod expiry;
#[cfg(test)]
mod expiry_tests;
mod feed;
mod inflight;
mod number_status;
mod options;
mod params;
mod reconcile_runs;
mod reconciler;
mod records;
mod restore;
#[cfg(test)]
mod restore_tests;
mod retention;
#[cfg(test)]
mod retention_tests;
mod route;
mod upstream_calls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

pub use crate::alloc::{AreaStats, NumberState, NumberStatus, NumberView, Rules};
pub use crate::platform::options::{CallDirection, CallField, CallOptions};
pub use app::{AddedNumbers, AppInfo, AppPool, AppSetup, PlatformInfo};
pub use binding::{Binding, BindingId, BindingState};
pub use clock::{Clock, OffsetClock, SystemClock};
pub use error::{Meta, PoolError, Reason, quoted};
pub use expiry::{ExpiryPolicy, Round};
pub use number_status::StatusCounts;
pub use options::OptionsChange;
pub use params::{BindParams, BindingKey, BindingUpdate, ListFilter};
pub use reconciler::{
    KEEP as RUNS_KEPT, OrphanPolicy, ReconcileOptions, ReconcileReport, ReconcileRun, Reconciler,
    RunError, RunId, RunObserver, RunRequest, RunState,
};
pub use retention::{RetentionPolicy, RetentionRound};
pub use route::CallRoute;

use crate::store::{self, BindingRecord, Store, StoreError};

/// Locks `m`, through a panic of an earlier holder (every critical section leaves its data
/// consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// Every app's pool, over one store.
#[derive(Debug)]
pub struct Pool {
    store: Arc<Store>,
    /// The pools of the apps served here: every configured app on a single node; in cluster
    /// mode the apps this replica leads (see [`Pool::lead`]).
    apps: RwLock<HashMap<String, Arc<AppPool>>>,
    /// Every configured app's setup, for [`Pool::lead`].
    setups: HashMap<String, AppSetup>,
    /// What every app's pool shares.
    shared: app::Shared,
    /// Signalled whenever a binding's deadline is written (see [`Pool::deadlines`]).
    deadlines: Arc<tokio::sync::Notify>,
    /// True while expiry rounds find more due than one round takes (a burst): set by
    /// `expire_round`, watched by every app's defensive unbinds, which wait until it is false.
    expiring: tokio::sync::watch::Sender<bool>,
    /// Held while numbers are added to any app, so two apps cannot take one number at once.
    adding: tokio::sync::Mutex<()>,
    retention: retention::Retention,
    /// The longest any app's released binding is kept for its cool-down (see `retention`).
    cool_down_kept_ms: i64,
}

impl Pool {
    /// Opens every app's pool: loads its numbers (adding the configured ones) and rebuilds the
    /// index from the stored bindings (see `restore`). Call [`Pool::recover`] before serving.
    pub fn open(
        store: Arc<Store>,
        setups: Vec<AppSetup>,
        clock: &Arc<dyn Clock>,
        retention: RetentionPolicy,
    ) -> Result<Pool, PoolError> {
        Pool::open_with(store, setups, clock, retention, restore::restore)
    }

    /// [`Pool::open`], with the index rebuilt by `rebuild`.
    fn open_with(
        store: Arc<Store>,
        setups: Vec<AppSetup>,
        clock: &Arc<dyn Clock>,
        retention: RetentionPolicy,
        rebuild: impl FnOnce(&Store, &HashMap<String, Arc<AppPool>>, i64) -> Result<(), PoolError>,
    ) -> Result<Pool, PoolError> {
        let mut pool = Pool::standby(store, setups, clock, retention)?;
        let mut apps = HashMap::new();
        for setup in pool.setups.values() {
            let app = AppPool::new(setup.clone(), pool.shared.clone(), None)?;
            apps.insert(setup.name.clone(), Arc::new(app));
        }
        rebuild(&pool.store, &apps, clock.now_ms())?;
        pool.apps = RwLock::new(apps);
        Ok(pool)
    }

    /// Cluster mode: a pool that serves no app until this replica leads it ([`Pool::lead`]).
    pub fn standby(
        store: Arc<Store>,
        setups: Vec<AppSetup>,
        clock: &Arc<dyn Clock>,
        retention: RetentionPolicy,
    ) -> Result<Pool, PoolError> {
        let deadlines = Arc::new(tokio::sync::Notify::new());
        let (expiring, _) = tokio::sync::watch::channel(false);
        let retention = retention::Retention::new(retention);
        let shared = app::Shared {
            store: Arc::clone(&store),
            clock: Arc::clone(clock),
            deadlines: Arc::clone(&deadlines),
            expiring: expiring.subscribe(),
            retention: retention.clone(),
        };
        let cool_down_kept_ms = setups
            .iter()
            .map(|setup| app::cool_down_kept_ms(&setup.rules))
            .max()
            .unwrap_or(0);
        let setups = setups.into_iter().map(|s| (s.name.clone(), s)).collect();
        Ok(Pool {
            store,
            apps: RwLock::default(),
            setups,
            shared,
            deadlines,
            expiring,
            adding: tokio::sync::Mutex::new(()),
            retention,
            cool_down_kept_ms,
        })
    }

    /// Cluster mode: starts serving app `name` under `term`, its pool rebuilt from the store
    /// (which must have applied every revision up to the term's start), and resolves what an
    /// earlier leader left open. Replaces a pool of an earlier term.
    pub async fn lead(&self, name: &str, term: Arc<store::Term>) -> Result<(), PoolError> {
        let setup = self
            .setups
            .get(name)
            .ok_or_else(|| PoolError::unknown_app(name))?;
        let app = Arc::new(AppPool::new(
            setup.clone(),
            self.shared.clone(),
            Some(term),
        )?);
        let one = HashMap::from([(name.to_owned(), Arc::clone(&app))]);
        restore::restore(&self.store, &one, self.shared.clock.now_ms())?;
        let open: Vec<BindingRecord> = self
            .store
            .open_bindings()?
            .into_iter()
            .filter(|b| b.app == name)
            .collect();
        write_lock(&self.apps).insert(name.to_owned(), Arc::clone(&app));
        let left = app.recover(open).await;
        if left > 0 {
            tracing::warn!(
                app = name,
                left,
                "bindings left open by an earlier leader are still unresolved; retried in the background"
            );
        }
        Ok(())
    }

    /// Cluster mode: stops serving app `name` (this replica no longer leads it). Calls already
    /// inside its pool finish against the old term, whose writes etcd refuses.
    pub fn step_down(&self, name: &str) -> bool {
        write_lock(&self.apps).remove(name).is_some()
    }

    /// Whether `term`'s app is served here under that term.
    pub fn serves_term(&self, term: &store::Term) -> bool {
        read_lock(&self.apps)
            .get(&term.app)
            .is_some_and(|app| app.term().is_some_and(|t| **t == *term))
    }

    /// Whether app `name` is served here.
    pub fn serves(&self, name: &str) -> bool {
        read_lock(&self.apps).contains_key(name)
    }

    /// Whether `name` is a configured app.
    pub fn is_configured(&self, name: &str) -> bool {
        self.setups.contains_key(name)
    }

    /// The pools of the apps served now.
    fn served(&self) -> HashMap<String, Arc<AppPool>> {
        read_lock(&self.apps).clone()
    }

    /// At a clean stop, after the last write: notes the size of every app's tables, so the
    /// next start-up sizes them at once (see `restore::TableSizes`).
    pub async fn note_table_sizes(&self) -> Result<(), PoolError> {
        Ok(restore::note_sizes(&self.store, &self.served()).await?)
    }

    /// Resolves what a crash or a lost answer left open: PENDING reservations are looked up on
    /// the platform, RELEASING bindings are unbound. Returns how many are still unresolved.
    pub async fn recover(&self) -> usize {
        // One read of the (small) open index for all apps.
        let mut by_app: HashMap<String, Vec<BindingRecord>> = HashMap::new();
        match self.store.open_bindings() {
            Ok(all) => {
                for b in all {
                    by_app.entry(b.app.clone()).or_default().push(b);
                }
            }
            Err(e) => {
                if !matches!(e, StoreError::Unavailable { .. }) {
                    tracing::error!(error = %e, "cannot list open bindings");
                }
                return 1;
            }
        }
        let mut left = 0;
        let apps = self.served();
        for (name, open) in by_app {
            match apps.get(&name) {
                Some(app) => left += app.recover(open).await,
                None => tracing::warn!(app = %name, "open bindings of an app no longer configured"),
            }
        }
        left
    }

    /// The pool of app `name`.
    /// In cluster mode a configured app this replica does not lead (a call routed here just
    /// before leadership moved) is `LEADER_UNAVAILABLE`, which the caller retries.
    pub fn app(&self, name: &str) -> Result<Arc<AppPool>, PoolError> {
        if let Some(app) = read_lock(&self.apps).get(name) {
            return Ok(Arc::clone(app));
        }
        if !self.is_configured(name) {
            return Err(PoolError::unknown_app(name));
        }
        let message = format!(
            "this replica does not lead app {} (leadership moved); retry",
            quoted(name)
        );
        Err(PoolError::refused(Reason::LeaderUnavailable, message).with("app", name))
    }

    /// Adds numbers to app `app` (or updates their area), all or none: refused when one is
    /// malformed or listed twice (INVALID_ARGUMENT), already belongs to another app
    /// (ALREADY_EXISTS naming it), or — with the app's `check_numbers_on_add` — is refused by the
    /// platform (FAILED_PRECONDITION) or cannot be checked there (UNAVAILABLE). Says what came
    /// of each number.
    pub async fn add_numbers(
        &self,
        app: &str,
        numbers: &[(String, String)],
    ) -> Result<AddedNumbers, PoolError> {
        let pool = self.app(app)?;
        let added = async {
            AppPool::check_new_numbers(numbers)?;
            self.refuse_owned_elsewhere(app, numbers)?;
            pool.check_on_platform(numbers).await?;
            let _one_at_a_time = self.adding.lock().await;
            // Again: another app may have taken one while the platform was asked.
            self.refuse_owned_elsewhere(app, numbers)?;
            pool.add_numbers(numbers).await
        };
        added.await.map_err(|e| e.in_app(app))
    }

    /// Adds the numbers the config lists for app `app` at start-up, without asking the
    /// platform; a number another app holds (added over the API) is left out with a warning,
    /// so that the daemon still starts and the number can be removed there.
    pub async fn add_configured_numbers(
        &self,
        app: &str,
        numbers: &[(String, String)],
    ) -> Result<AddedNumbers, PoolError> {
        let pool = self.app(app)?;
        let _one_at_a_time = self.adding.lock().await;
        let mut kept = Vec::with_capacity(numbers.len());
        for (n, area) in numbers {
            match self.owner_elsewhere(app, n)? {
                Some(other) => tracing::warn!(
                    app,
                    number = %n,
                    owner = other,
                    "a configured number belongs to another app; not added (remove it there first)"
                ),
                None => kept.push((n.clone(), area.clone())),
            }
        }
        if kept.is_empty() {
            return Ok(AddedNumbers::default());
        }
        pool.add_numbers(&kept).await
    }

    fn refuse_owned_elsewhere(
        &self,
        app: &str,
        numbers: &[(String, String)],
    ) -> Result<(), PoolError> {
        for (n, _) in numbers {
            if let Some(other) = self.owner_elsewhere(app, n)? {
                return Err(PoolError::refused(
                    Reason::NumberExists,
                    format!(
                        "{} already belongs to app {}; remove it there first. Nothing was added",
                        quoted(n),
                        quoted(other)
                    ),
                )
                .with("number", n)
                .with("owner", other));
            }
        }
        Ok(())
    }

    /// The configured app other than `app` that holds `number` (in any state but removed).
    fn owner_elsewhere(&self, app: &str, number: &str) -> Result<Option<&str>, PoolError> {
        for other in self.setups.keys().filter(|name| name.as_str() != app) {
            let held = self
                .store
                .get_number(other, number)?
                .is_some_and(|r| r.state != store::NumberState::Removed);
            if held {
                return Ok(Some(other));
            }
        }
        Ok(None)
    }

    /// Every app's pool.
    pub fn apps(&self) -> impl Iterator<Item = Arc<AppPool>> + use<> {
        self.served().into_values()
    }

    /// Every configured app's summary, for ListApps. The apps served here come from their
    /// pools. In cluster mode the others, led by another replica, come from this replica's
    /// copy of their numbers, with no circuit state (it makes no platform calls for them).
    pub fn app_infos(&self) -> Result<Vec<AppInfo>, PoolError> {
        let served = self.served();
        let mut infos: Vec<AppInfo> = served.values().map(|app| app.info()).collect();
        if !self.store.takes_leader_writes() {
            return Ok(infos);
        }
        for (name, setup) in &self.setups {
            if served.contains_key(name) {
                continue;
            }
            let (mut numbers, mut draining) = (0, 0);
            for number in self.store.numbers(Some(name))? {
                if number.state != store::NumberState::Removed {
                    numbers += 1;
                    draining += u32::from(number.state == store::NumberState::Draining);
                }
            }
            let platform = setup.client.as_ref().map(|client| {
                let settings = client.settings();
                PlatformInfo {
                    base_url: settings.base_url.clone(),
                    rate_per_second: settings.rate_per_second.get(),
                    burst: settings.burst.get(),
                    circuit: None,
                }
            });
            infos.push(AppInfo {
                name: name.clone(),
                mode: setup.rules.mode,
                numbers,
                draining,
                platform,
            });
        }
        Ok(infos)
    }

    /// The app that holds number `x` (not removed), if any.
    pub fn app_of_number(&self, x: &str) -> Option<Arc<AppPool>> {
        read_lock(&self.apps)
            .values()
            .find(|app| app.has_number(x))
            .cloned()
    }

    /// The name of the configured app that holds number `x` (not removed), served here or not:
    /// in cluster mode the apps another replica leads are looked up in this replica's copy.
    pub fn owner_of_number(&self, x: &str) -> Option<String> {
        if let Some(app) = self.app_of_number(x) {
            return Some(app.name().to_owned());
        }
        let mut unserved: Vec<&String> = self
            .setups
            .keys()
            .filter(|name| !self.serves(name))
            .collect();
        unserved.sort();
        unserved.into_iter().find_map(|name| {
            let record = self.store.get_number(name, x).ok().flatten()?;
            (record.state != store::NumberState::Removed).then(|| name.clone())
        })
    }

    /// Refuses an app that is not configured (reads of the store need no pool of the app).
    pub(crate) fn check_configured(&self, name: &str) -> Result<(), PoolError> {
        if self.is_configured(name) {
            Ok(())
        } else {
            Err(PoolError::unknown_app(name))
        }
    }

    /// Notified when a deadline is written; the expiry job waits on it.
    pub fn deadlines(&self) -> &Arc<tokio::sync::Notify> {
        &self.deadlines
    }

    /// Binds per the app's rules, waiting at most `max_wait` for the app's rate limit. With a
    /// request_id, a repeated or concurrent Bind returns the same binding.
    pub async fn bind(
        &self,
        params: BindParams,
        max_wait: std::time::Duration,
    ) -> Result<Binding, PoolError> {
        let app = self.app(&params.app)?;
        let bound = app.bind(params, max_wait).await;
        Ok(bound.map_err(|e| e.in_app(app.name()))?.into())
    }

    /// Releases a binding; a released or expired one is returned unchanged.
    pub async fn unbind(&self, key: &BindingKey) -> Result<Binding, PoolError> {
        let record = self.record(key)?;
        let app = self.app(&record.app)?;
        let released = app.unbind(record.id).await;
        Ok(released.map_err(|e| e.in_app(app.name()))?.into())
    }

    /// Changes an ACTIVE binding's lifetime (counted from now) and call options, on the
    /// platform first where the mode allows it.
    pub async fn update(&self, update: &BindingUpdate) -> Result<Binding, PoolError> {
        let record = self.record(&BindingKey::Id(update.id))?;
        let app = self.app(&record.app)?;
        let updated = app.update(record.id, update).await;
        Ok(updated.map_err(|e| e.in_app(app.name()))?.into())
    }

    /// The binding `key` names.
    pub fn get(&self, key: &BindingKey) -> Result<Binding, PoolError> {
        self.record(key).map(Binding::from)
    }

    fn record(&self, key: &BindingKey) -> Result<BindingRecord, PoolError> {
        let found = match key {
            BindingKey::Id(id) => self.store.get_binding(&store::BindingId::from(*id))?,
            BindingKey::Request { app, request_id } => {
                self.check_configured(app)?;
                self.store.binding_by_request(app, request_id)?
            }
        };
        found.ok_or_else(|| match key {
            BindingKey::Id(id) => PoolError::binding_not_found(id),
            BindingKey::Request { app, request_id } => PoolError::refused(
                Reason::BindingNotFound,
                format!(
                    "no binding of app {} with request_id {}",
                    quoted(app),
                    quoted(request_id)
                ),
            )
            .with("app", app)
            .with("request_id", request_id),
        })
    }

    /// One page of bindings matching `filter`, after the binding `after`.
    pub fn list(
        &self,
        filter: &ListFilter,
        after: Option<BindingId>,
        limit: usize,
    ) -> Result<(Vec<Binding>, Option<BindingId>), PoolError> {
        if let Some(app) = &filter.app {
            self.check_configured(app)?;
        }
        let keep = |b: &BindingRecord| {
            filter.app.as_ref().is_none_or(|a| &b.app == a)
                && filter
                    .party
                    .as_ref()
                    .is_none_or(|p| &b.party_a == p || b.party_b.as_ref() == Some(p))
                && filter.x_number.as_ref().is_none_or(|x| &b.x == x)
                && filter
                    .state
                    .is_none_or(|s| BindingState::from(b.state) == s)
        };
        let after = after.map(store::BindingId::from);
        let page = self.store.list_bindings(after.as_ref(), limit + 1, keep)?;
        let more = page.len() > limit;
        let page: Vec<Binding> = page.into_iter().take(limit).map(Binding::from).collect();
        let next = if more {
            page.last().map(|b| b.id)
        } else {
            None
        };
        Ok((page, next))
    }
}
