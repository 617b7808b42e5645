//! Allocation: each app's pool of numbers, the rules that pick a free slot, and the two-phase
//! bind and unbind that keep the local index, the store and the platform in step.
//!
//! A Bind reserves a slot under the app's index lock, makes the reservation durable (PENDING),
//! calls the platform without any lock held, and records the answer (ACTIVE, or the reservation
//! dropped). An answer that never came is resolved by asking the platform, never by guessing.

mod app;
mod bind;
mod cleanup;
pub mod clock;
mod error;
mod expire;
mod ext;
mod index;
mod params;
mod parties;
mod platform;
mod reconcile;
mod release;
mod rules;

use std::collections::HashMap;
use std::sync::Arc;

pub use app::{AppPool, AppSetup};
pub use clock::{Clock, OffsetClock, SystemClock};
pub use error::{PoolError, quoted};
pub use expire::{ExpiryPolicy, Round};
pub use index::{Index, NoPick, Pick};
pub use params::{AreaStats, BindParams, BindingKey, ListFilter, NumberView};
pub use reconcile::{OrphanPolicy, ReconcileOptions, ReconcileReport};
pub use rules::Rules;

use crate::store::{BindingId, BindingRecord, Store};

/// Every app's pool, over one store.
#[derive(Debug)]
pub struct Pool {
    store: Arc<Store>,
    apps: HashMap<String, Arc<AppPool>>,
    /// Signalled whenever a binding's deadline is written (see [`Pool::deadlines`]).
    deadlines: Arc<tokio::sync::Notify>,
}

impl Pool {
    /// Opens every app's pool: loads its numbers (adding the configured ones) and rebuilds the
    /// index from the stored bindings. Call [`Pool::recover`] before serving.
    pub fn open(
        store: Arc<Store>,
        setups: Vec<AppSetup>,
        clock: &Arc<dyn Clock>,
    ) -> Result<Pool, PoolError> {
        let deadlines = Arc::new(tokio::sync::Notify::new());
        let mut apps = HashMap::new();
        for setup in setups {
            let name = setup.name.clone();
            apps.insert(
                name,
                Arc::new(AppPool::new(
                    setup,
                    Arc::clone(&store),
                    Arc::clone(clock),
                    Arc::clone(&deadlines),
                )?),
            );
        }
        for app in apps.values() {
            app.begin_restore();
        }
        for record in store.scan_bindings() {
            let record = record?;
            match apps.get(&record.app) {
                Some(app) => app.restore(&record),
                None => {
                    tracing::warn!(app = %record.app, id = %record.id, "binding of an app no longer configured")
                }
            }
        }
        for app in apps.values() {
            app.end_restore();
        }
        Ok(Pool {
            store,
            apps,
            deadlines,
        })
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
                tracing::error!(error = %e, "cannot list open bindings");
                return 1;
            }
        }
        let mut left = 0;
        for (name, open) in by_app {
            match self.apps.get(&name) {
                Some(app) => left += app.recover(open).await,
                None => tracing::warn!(app = %name, "open bindings of an app no longer configured"),
            }
        }
        left
    }

    pub fn app(&self, name: &str) -> Result<&Arc<AppPool>, PoolError> {
        self.apps
            .get(name)
            .ok_or_else(|| PoolError::invalid("app", format!("unknown app {}", quoted(name))))
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<AppPool>> {
        self.apps.values()
    }

    /// Notified when a deadline is written; the expiry job waits on it.
    pub fn deadlines(&self) -> &Arc<tokio::sync::Notify> {
        &self.deadlines
    }

    pub async fn bind(
        &self,
        params: BindParams,
        max_wait: std::time::Duration,
    ) -> Result<BindingRecord, PoolError> {
        self.app(&params.app)?.bind(params, max_wait).await
    }

    pub async fn unbind(&self, key: &BindingKey) -> Result<BindingRecord, PoolError> {
        let record = self.get(key)?;
        self.app(&record.app)?.unbind(record.id).await
    }

    pub async fn update_ttl(
        &self,
        id: BindingId,
        ttl_seconds: u64,
    ) -> Result<BindingRecord, PoolError> {
        let record = self.get(&BindingKey::Id(id))?;
        self.app(&record.app)?.update_ttl(id, ttl_seconds).await
    }

    pub fn get(&self, key: &BindingKey) -> Result<BindingRecord, PoolError> {
        let found = match key {
            BindingKey::Id(id) => self.store.get_binding(id)?,
            BindingKey::Request { app, request_id } => {
                self.app(app)?;
                self.store.binding_by_request(app, request_id)?
            }
        };
        found.ok_or_else(|| {
            PoolError::NotFound(match key {
                BindingKey::Id(id) => format!("no binding {id}"),
                BindingKey::Request { app, request_id } => {
                    format!(
                        "no binding of app {} with request_id {}",
                        quoted(app),
                        quoted(request_id)
                    )
                }
            })
        })
    }

    /// One page of bindings matching `filter`, after the binding `after`.
    pub fn list(
        &self,
        filter: &ListFilter,
        after: Option<BindingId>,
        limit: usize,
    ) -> Result<(Vec<BindingRecord>, Option<BindingId>), PoolError> {
        if let Some(app) = &filter.app {
            self.app(app)?;
        }
        let keep = |b: &BindingRecord| {
            filter.app.as_ref().is_none_or(|a| &b.app == a)
                && filter
                    .party
                    .as_ref()
                    .is_none_or(|p| &b.party_a == p || b.party_b.as_ref() == Some(p))
                && filter.x_number.as_ref().is_none_or(|x| &b.x == x)
                && filter.state.is_none_or(|s| b.state == s)
        };
        let page = self.store.list_bindings(after.as_ref(), limit + 1, keep)?;
        let more = page.len() > limit;
        let page: Vec<_> = page.into_iter().take(limit).collect();
        let next = if more {
            page.last().map(|b| b.id)
        } else {
            None
        };
        Ok((page, next))
    }
}
