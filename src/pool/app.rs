//! One app's pool: its rules, index, platform client and in-flight idempotent Binds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::clock::Clock;
use super::error::{PoolError, quoted};
use super::index::Index;
use super::params::{AreaStats, BindParams, NumberView};
use super::rules::Rules;
use crate::platform::{Mode, number};
use crate::store::{BindingRecord, NumberRecord, NumberState, Store, Tx};
use crate::upstream::{AppClient, UpstreamError};

/// Everything needed to open an app's pool.
#[derive(Debug)]
pub struct AppSetup {
    pub name: String,
    pub rules: Rules,
    /// `None` for X mode, which has no platform API.
    pub client: Option<Arc<AppClient>>,
    /// The daemon's tasks and its shutdown, for the background work the pool starts
    /// (defensive unbinds).
    pub tasks: tokio_util::task::TaskTracker,
    pub cancel: tokio_util::sync::CancellationToken,
}

/// The outcome of an idempotent Bind, shared with concurrent duplicates.
pub(super) type Shared = Option<Result<BindingRecord, PoolError>>;

/// One app's pool.
#[derive(Debug)]
pub struct AppPool {
    pub(super) name: String,
    pub(super) rules: Rules,
    pub(super) client: Option<Arc<AppClient>>,
    pub(super) store: Arc<Store>,
    pub(super) clock: Arc<dyn Clock>,
    /// The allocation index. Held only for in-memory work and short sled writes, never across
    /// an `.await`.
    index: Mutex<Index>,
    /// Binds in flight per request_id: duplicates wait on the first one's outcome. An entry lives
    /// from the first Bind's start until its outcome is durable.
    pub(super) inflight: Mutex<HashMap<String, watch::Receiver<Shared>>>,
    /// Reservations whose Bind is still running here: the resolver leaves them alone.
    pub(super) in_flight: Mutex<std::collections::HashSet<crate::store::BindingId>>,
    /// Shared by every app and the expiry job: signalled when a deadline is written, so the job
    /// wakes early for a binding that expires before the one it sleeps for.
    pub(super) deadlines: Arc<tokio::sync::Notify>,
    /// Defensive unbinds after expiry, drained in the background (see `cleanup`).
    pub(super) cleanup: Arc<super::cleanup::Cleanup>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppPool {
    pub(super) fn new(
        setup: AppSetup,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        deadlines: Arc<tokio::sync::Notify>,
    ) -> Result<Self, PoolError> {
        let mut index = Index::new(setup.rules.clone());
        let now = clock.now_ms();
        for n in store.numbers(Some(&setup.name))? {
            if n.state != NumberState::Removed {
                index.upsert_number(&n, now);
            }
        }
        Ok(AppPool {
            name: setup.name,
            rules: setup.rules,
            client: setup.client,
            store,
            clock,
            index: Mutex::new(index),
            inflight: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(Default::default()),
            deadlines,
            cleanup: Arc::new(super::cleanup::Cleanup::new(setup.tasks, setup.cancel)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> Mode {
        self.rules.mode
    }

    pub fn client(&self) -> Option<&Arc<AppClient>> {
        self.client.as_ref()
    }

    pub(super) fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// The one way the pool writes: under the index lock, `tx` runs as a store transaction (it
    /// may read the index) and `then` brings the index in step with what it returned; after the
    /// lock is released, the write is awaited until durable. Concurrent writers of the app are
    /// thus ordered the same in the index and in the store, and nothing is answered before it
    /// is on disk.
    pub(super) async fn write<T: Send>(
        &self,
        tx: impl FnOnce(&Tx<'_>, &mut Index) -> Result<T, PoolError>,
        then: impl FnOnce(&mut Index, &T),
    ) -> Result<T, PoolError> {
        let staged = {
            let mut index = self.index();
            let staged = self.store.stage(|t| tx(t, &mut index))?;
            then(&mut index, staged.value());
            staged
        };
        Ok(staged.await?)
    }

    /// Re-reads one stored binding at start-up.
    /// Start-up: the `restore` calls that follow only record what they change, and `end_restore`
    /// settles each touched number once.
    pub(super) fn begin_restore(&self) {
        self.index().begin_bulk();
    }

    pub(super) fn end_restore(&self) {
        let now = self.clock.now_ms();
        self.index().end_bulk(now);
    }

    pub(super) fn restore(&self, b: &BindingRecord) {
        let now = self.clock.now_ms();
        let mut index = self.index();
        if b.state.holds_slot() {
            index.occupy(b, now);
        } else if let Some(released) = b.released_at_ms {
            index.cool(b, released, now);
        }
    }

    /// Mode-specific checks of a Bind, before anything changes.
    pub(super) fn validate(&self, p: &BindParams) -> Result<(), PoolError> {
        let mode = self.rules.mode;
        match mode {
            Mode::Axb | Mode::Axyb | Mode::X if p.party_b.is_none() => {
                return Err(PoolError::invalid(
                    "party_b",
                    format!("required in {mode} mode"),
                ));
            }
            Mode::Ax | Mode::Axe if p.party_b.is_some() => {
                return Err(PoolError::invalid(
                    "party_b",
                    format!("not used in {mode} mode"),
                ));
            }
            _ => {}
        }
        if p.extension.is_some() && mode != Mode::Axe {
            return Err(PoolError::invalid(
                "extension",
                format!("only AXE bindings have extensions, this app is {mode}"),
            ));
        }
        if let Some(ext) = &p.extension {
            let digits = usize::from(self.rules.extension_digits);
            if !number::is_extension(ext, self.rules.extension_digits) {
                return Err(PoolError::invalid(
                    "extension",
                    format!("must be {digits} digits, not all zeros"),
                ));
            }
            if p.x_number.is_none() {
                return Err(PoolError::invalid(
                    "extension",
                    "a pinned extension needs x_number too",
                ));
            }
        }
        if mode == Mode::Axyb && p.x_number.is_some() {
            return Err(PoolError::invalid(
                "x_number",
                "in AXYB mode the platform chooses X; give area_code",
            ));
        }
        if mode == Mode::Axe && !p.ttl_seconds.is_multiple_of(60) {
            return Err(PoolError::invalid(
                "ttl_seconds",
                "AXE lifetimes are whole minutes (a multiple of 60)",
            ));
        }
        if mode == Mode::Axyb && p.ttl_seconds != 0 && p.ttl_seconds < 60 {
            return Err(PoolError::invalid(
                "ttl_seconds",
                "AXYB lifetimes are 0 (none) or at least 60 s",
            ));
        }
        if let Some(x) = &p.x_number
            && self.index().number(x).is_none()
        {
            return Err(PoolError::invalid(
                "x_number",
                format!("{x} is not a number of app {}", self.name),
            ));
        }
        Ok(())
    }

    // Numbers --------------------------------------------------------------------------------

    /// Adds numbers (or updates their area). Returns (added, updated).
    pub async fn add_numbers(&self, numbers: &[(String, String)]) -> Result<(u32, u32), PoolError> {
        let (mut added, mut updated) = (0, 0);
        for (n, area) in numbers {
            if !number::is_global(n) {
                return Err(PoolError::invalid(
                    "numbers",
                    format!("{} is not a number in global format", quoted(n)),
                ));
            }
            if !number::is_area_code(area) {
                return Err(PoolError::invalid(
                    "numbers",
                    format!(
                        "area code {} of {} is not 2–6 digits",
                        quoted(area),
                        quoted(n)
                    ),
                ));
            }
        }
        let now = self.clock.now_ms();
        self.write(
            |tx, _| {
                let mut changed = Vec::new();
                for (n, area) in numbers {
                    let record = match tx.get_number(&self.name, n)? {
                        Some(r) if r.area_code == *area && r.state != NumberState::Removed => {
                            continue;
                        }
                        Some(r) => {
                            updated += 1;
                            NumberRecord {
                                area_code: area.clone(),
                                state: if r.state == NumberState::Removed {
                                    NumberState::Active
                                } else {
                                    r.state
                                },
                                updated_at_ms: now,
                                ..r
                            }
                        }
                        None => {
                            added += 1;
                            NumberRecord {
                                app: self.name.clone(),
                                number: n.clone(),
                                area_code: area.clone(),
                                state: NumberState::Active,
                                needs_reconcile: false,
                                updated_at_ms: now,
                            }
                        }
                    };
                    tx.put_number(&record)?;
                    changed.push(record);
                }
                Ok(changed)
            },
            |index, changed| {
                for record in changed {
                    index.upsert_number(record, now);
                }
            },
        )
        .await?;
        Ok((added, updated))
    }

    /// Stops handing numbers out; their bindings live on.
    pub async fn drain_numbers(&self, numbers: &[String]) -> Result<u32, PoolError> {
        self.set_state(numbers, NumberState::Draining).await
    }

    /// Removes numbers that hold no live binding; refuses (changing nothing) otherwise.
    pub async fn remove_numbers(&self, numbers: &[String]) -> Result<u32, PoolError> {
        self.set_state(numbers, NumberState::Removed).await
    }

    /// Moves `numbers` to `state` in one transaction, the index with it. Every number must be
    /// the app's; to be removed, one must carry no live binding (checked under the index lock,
    /// so no Bind can take it meanwhile).
    async fn set_state(&self, numbers: &[String], state: NumberState) -> Result<u32, PoolError> {
        let now = self.clock.now_ms();
        let changed = self
            .write(
                |tx, index| {
                    if state == NumberState::Removed {
                        refuse_if_carrying(index, numbers)?;
                    }
                    let mut changed = Vec::with_capacity(numbers.len());
                    for n in numbers {
                        let Some(r) = tx
                            .get_number(&self.name, n)?
                            .filter(|r| r.state != NumberState::Removed)
                        else {
                            return Err(PoolError::NotFound(format!(
                                "{n} is not a number of app {}",
                                self.name
                            )));
                        };
                        let record = NumberRecord {
                            state,
                            updated_at_ms: now,
                            ..r
                        };
                        tx.put_number(&record)?;
                        changed.push(record);
                    }
                    Ok(changed)
                },
                |index, changed| {
                    for record in changed {
                        if state == NumberState::Removed {
                            index.remove_number(&record.number);
                        } else {
                            index.upsert_number(record, now);
                        }
                    }
                },
            )
            .await?;
        Ok(changed.len() as u32)
    }

    /// Acts on the platform contradicting the index about number `x`: a number the platform
    /// says is not the app's is marked removed, a blacklisted one frozen (both leave rotation
    /// for good); any other contradiction sets it aside until reconciliation clears it.
    pub(super) async fn flag_number(&self, x: &str, error: &UpstreamError) {
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
                        index.upsert_number(record, now);
                    }
                },
            )
            .await;
        if let Err(e) = flagged {
            tracing::error!(app = %self.name, number = x, error = %e, "could not flag number");
        }
    }

    pub fn list_numbers(&self, area: Option<&str>) -> Vec<NumberView> {
        let now = self.clock.now_ms();
        let index = self.index();
        let mut out: Vec<NumberView> = index
            .numbers()
            .filter(|(_, n)| area.is_none_or(|a| n.area == a))
            .map(|(x, n)| NumberView {
                number: x.clone(),
                area_code: n.area.clone(),
                state: n.state,
                bindings: n.load,
                free_extensions: n.ext.as_ref().map_or(0, |s| s.free_now(now)),
                cooling: match &n.ext {
                    Some(s) => s.cooling_count(now),
                    None => u64::from(n.cool_until_ms > now),
                },
            })
            .collect();
        out.sort_by(|a, b| a.number.cmp(&b.number));
        out
    }

    pub fn stats(&self) -> Vec<AreaStats> {
        let now = self.clock.now_ms();
        let mut index = self.index();
        let mut areas: HashMap<String, AreaStats> = HashMap::new();
        let eligible: HashMap<String, usize> = index
            .area_names()
            .into_iter()
            .map(|a| {
                let n = index.eligible_in(&a, now);
                (a, n)
            })
            .collect();
        for (_, n) in index.numbers() {
            let s = areas.entry(n.area.clone()).or_insert_with(|| AreaStats {
                area_code: n.area.clone(),
                ..Default::default()
            });
            s.total += 1;
            s.bound += u32::from(n.load > 0);
            s.draining += u32::from(n.state == NumberState::Draining);
            let cooling = match &n.ext {
                Some(space) => space.cooling_count(now) > 0 && space.free_now(now) == 0,
                None => n.cool_until_ms > now && n.load == 0,
            };
            s.cooling_down += u32::from(cooling && n.state == NumberState::Active);
            if n.state == NumberState::Active {
                s.free_extensions += n.ext.as_ref().map_or(0, |e| e.free_now(now));
            }
        }
        for (area, s) in areas.iter_mut() {
            s.free = eligible.get(area).copied().unwrap_or(0) as u32;
        }
        let mut out: Vec<_> = areas.into_values().collect();
        out.sort_by(|a, b| a.area_code.cmp(&b.area_code));
        out
    }
}

/// Refuses to remove numbers that still carry live bindings (changing nothing).
fn refuse_if_carrying(index: &Index, numbers: &[String]) -> Result<(), PoolError> {
    for n in numbers {
        if let Some(num) = index.number(n)
            && (num.load > 0 || num.y_load > 0)
        {
            return Err(PoolError::FailedPrecondition(format!(
                "{n} still carries {} live binding(s); drain it and unbind them first",
                num.load + num.y_load
            )));
        }
    }
    Ok(())
}
