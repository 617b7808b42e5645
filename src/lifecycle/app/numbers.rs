//! The numbers of an app's pool: adding, draining and removing them, and what the index says
//! about them.

use std::collections::HashSet;

use super::AppPool;
use crate::alloc::{AreaStats, Index, NumberView};
use crate::lifecycle::error::{PoolError, Reason, describe, quoted, upstream_reason};
use crate::lifecycle::{records, upstream_calls};
use crate::platform::number;
use crate::store::{NumberRecord, NumberState};
use crate::upstream::CallOpts;

/// What an AddNumbers did, number by number, with each number as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedNumbers {
    /// New to the pool.
    pub added: Vec<NumberView>,
    /// Held with another area code, or removed before.
    pub updated: Vec<NumberView>,
    /// Held as asked; left alone.
    pub unchanged: Vec<NumberView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    New,
    Updated,
    Unchanged,
}

impl AppPool {
    /// Refuses a request to add `numbers` that is malformed: a number not in global format, an
    /// area code not of 2–6 digits, a number listed twice; the field names it by its index.
    pub(in crate::lifecycle) fn check_new_numbers(
        numbers: &[(String, String)],
    ) -> Result<(), PoolError> {
        let mut seen = HashSet::new();
        for (i, (n, area)) in numbers.iter().enumerate() {
            if !number::is_global(n) {
                return Err(PoolError::invalid(
                    format!("numbers[{i}].number"),
                    format!("{} is not a number in global format", quoted(n)),
                ));
            }
            if !number::is_area_code(area) {
                return Err(PoolError::invalid(
                    format!("numbers[{i}].area_code"),
                    format!(
                        "area code {} of {} is not 2–6 digits",
                        quoted(area),
                        quoted(n)
                    ),
                ));
            }
            if !seen.insert(n.as_str()) {
                return Err(PoolError::invalid(
                    format!("numbers[{i}].number"),
                    format!("{} is listed twice", quoted(n)),
                ));
            }
        }
        Ok(())
    }

    /// Refuses a request to drain or remove `numbers` that is malformed, as AddNumbers: none
    /// given, a number not in global format, a number listed twice.
    fn check_numbers(numbers: &[String]) -> Result<(), PoolError> {
        if numbers.is_empty() {
            return Err(PoolError::invalid("numbers", "required"));
        }
        let mut seen = HashSet::new();
        for (i, n) in numbers.iter().enumerate() {
            if !number::is_global(n) {
                return Err(PoolError::invalid(
                    format!("numbers[{i}]"),
                    format!("{} is not a number in global format", quoted(n)),
                ));
            }
            if !seen.insert(n.as_str()) {
                return Err(PoolError::invalid(
                    format!("numbers[{i}]"),
                    format!("{} is listed twice", quoted(n)),
                ));
            }
        }
        Ok(())
    }

    /// With `check_numbers_on_add`, asks the platform about every number the app does not hold
    /// yet, one at a time; the first it refuses (not the app's: 1012001 / 1011001, or
    /// blacklisted) refuses the whole request, as does a platform that cannot be asked.
    pub(in crate::lifecycle) async fn check_on_platform(
        &self,
        numbers: &[(String, String)],
    ) -> Result<(), PoolError> {
        let Some(client) = self.client.as_ref().filter(|_| self.check_numbers_on_add) else {
            return Ok(());
        };
        for (n, _) in numbers {
            let held = self
                .store
                .get_number(&self.name, n)?
                .is_some_and(|r| r.state != NumberState::Removed);
            if held {
                continue;
            }
            let asked =
                upstream_calls::check_number(client, self.rules.mode, n, CallOpts::default());
            if let Err(e) = asked.await {
                tracing::warn!(app = %self.name, number = %n, error = %e, "number refused on add");
                let why = describe(&e);
                let refused = match upstream_reason(&e) {
                    reason if reason.retry_after().is_some() => PoolError::upstream(
                        reason,
                        format!("cannot check {n} on the platform: {why}; nothing was added"),
                        &e,
                    ),
                    _ => PoolError::upstream(
                        Reason::PlatformRejected,
                        format!(
                            "{n} is not a usable number of app {} on the platform: {why}; \
                             nothing was added",
                            self.name
                        ),
                        &e,
                    ),
                };
                return Err(refused.with("number", n));
            }
        }
        Ok(())
    }

    /// Adds numbers (or updates their area), all in one transaction, and says what came of
    /// each. The callers ([`crate::lifecycle::Pool`]) have checked the request and the other
    /// apps.
    pub(in crate::lifecycle) async fn add_numbers(
        &self,
        numbers: &[(String, String)],
    ) -> Result<AddedNumbers, PoolError> {
        Self::check_new_numbers(numbers)?;
        let now = self.clock.now_ms();
        let outcomes = self
            .write(
                |tx, _| {
                    let mut outcomes = Vec::with_capacity(numbers.len());
                    for (n, area) in numbers {
                        let (outcome, record) = match tx.get_number(&self.name, n)? {
                            Some(r) if r.area_code == *area && r.state != NumberState::Removed => {
                                outcomes.push((Added::Unchanged, r));
                                continue;
                            }
                            Some(r) => {
                                let state = if r.state == NumberState::Removed {
                                    NumberState::Active
                                } else {
                                    r.state
                                };
                                let record = NumberRecord {
                                    area_code: area.clone(),
                                    state,
                                    updated_at_ms: now,
                                    ..r
                                };
                                (Added::Updated, record)
                            }
                            None => (
                                Added::New,
                                NumberRecord {
                                    app: self.name.clone(),
                                    number: n.clone(),
                                    area_code: area.clone(),
                                    state: NumberState::Active,
                                    needs_reconcile: false,
                                    updated_at_ms: now,
                                    platform_status: Default::default(),
                                    status_cause: None,
                                },
                            ),
                        };
                        tx.put_number(&record)?;
                        outcomes.push((outcome, record));
                    }
                    Ok(outcomes)
                },
                |index, outcomes| {
                    for (outcome, record) in outcomes {
                        if *outcome != Added::Unchanged {
                            index.upsert_number(&records::number(record), now);
                        }
                    }
                },
            )
            .await?;
        let mut added = AddedNumbers::default();
        let index = self.index();
        for (outcome, record) in outcomes {
            let Some(view) = index.number_view(&record.number, now) else {
                continue; // Removed meanwhile.
            };
            match outcome {
                Added::New => added.added.push(view),
                Added::Updated => added.updated.push(view),
                Added::Unchanged => added.unchanged.push(view),
            }
        }
        Ok(added)
    }

    /// Stops handing numbers out; their bindings live on.
    pub async fn drain_numbers(&self, numbers: &[String]) -> Result<Vec<NumberView>, PoolError> {
        self.set_state(numbers, NumberState::Draining).await?;
        Ok(self.views(numbers))
    }

    /// Puts drained numbers back in rotation. A frozen number (blacklisted on the platform)
    /// stays out: that is the platform's decision, not an operator's.
    pub async fn undrain_numbers(&self, numbers: &[String]) -> Result<Vec<NumberView>, PoolError> {
        self.set_state(numbers, NumberState::Active).await?;
        Ok(self.views(numbers))
    }

    /// The index's view of `numbers`, in their order.
    fn views(&self, numbers: &[String]) -> Vec<NumberView> {
        let now = self.clock.now_ms();
        let index = self.index();
        numbers
            .iter()
            .filter_map(|n| index.number_view(n, now))
            .collect()
    }

    /// Removes numbers that hold no live binding; refuses (changing nothing) otherwise.
    pub async fn remove_numbers(&self, numbers: &[String]) -> Result<u32, PoolError> {
        self.set_state(numbers, NumberState::Removed).await
    }

    /// Moves `numbers` to `state` in one transaction, the index with it. Every number must be
    /// the app's; to be removed, one must carry no live binding (checked under the index lock,
    /// so no Bind can take it meanwhile).
    async fn set_state(&self, numbers: &[String], state: NumberState) -> Result<u32, PoolError> {
        Self::check_numbers(numbers)?;
        let now = self.clock.now_ms();
        let changed = self
            .write(
                |tx, index| {
                    if state == NumberState::Removed {
                        refuse_if_carrying(index, numbers)?;
                    }
                    let mut changed = Vec::with_capacity(numbers.len());
                    for (i, n) in numbers.iter().enumerate() {
                        let Some(r) = tx
                            .get_number(&self.name, n)?
                            .filter(|r| r.state != NumberState::Removed)
                        else {
                            let field = format!("numbers[{i}]");
                            return Err(PoolError::number_not_in_pool(field, &self.name, n));
                        };
                        if state == NumberState::Draining && r.state == NumberState::Frozen {
                            continue; // Already out of rotation, for a reason drain must keep.
                        }
                        if state == NumberState::Active && r.state == NumberState::Frozen {
                            return Err(PoolError::refused(
                                Reason::NumberUnavailable,
                                format!(
                                    "{n} is frozen (blacklisted on the platform) and cannot be \
                                     put back in rotation"
                                ),
                            )
                            .with("app", &self.name)
                            .with("number", n));
                        }
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
                            index.upsert_number(&records::number(record), now);
                        }
                    }
                },
            )
            .await
            .map_err(|e| e.in_app(&self.name))?;
        Ok(changed.len() as u32)
    }

    /// One page of the app's numbers (of `area`, when given) in number order: at most `limit`
    /// numbers after `after`, and whether more follow.
    pub fn list_numbers(
        &self,
        area: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<NumberView>, bool) {
        let now = self.clock.now_ms();
        self.index().number_page(area, after, limit, now)
    }

    /// Counts per area, sorted by area code.
    pub fn stats(&self) -> Vec<AreaStats> {
        let now = self.clock.now_ms();
        self.index().area_stats(now)
    }
}

/// Refuses to remove numbers that still carry live bindings (changing nothing).
fn refuse_if_carrying(index: &Index, numbers: &[String]) -> Result<(), PoolError> {
    for n in numbers {
        if let Some(num) = index.number(n)
            && (num.load > 0 || num.y_load > 0)
        {
            let live = num.load + num.y_load;
            return Err(PoolError::refused(
                Reason::NumberInUse,
                format!("{n} still carries {live} live binding(s); drain it and unbind them first"),
            )
            .with("number", n)
            .with("bindings", live));
        }
    }
    Ok(())
}
