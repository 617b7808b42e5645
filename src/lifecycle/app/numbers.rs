//! The numbers of an app's pool: adding, draining and removing them, and what the index says
//! about them.

use super::AppPool;
use crate::alloc::{AreaStats, Index, NumberView};
use crate::lifecycle::error::{PoolError, quoted};
use crate::lifecycle::records;
use crate::platform::number;
use crate::store::{NumberRecord, NumberState};

impl AppPool {
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
                    index.upsert_number(&records::number(record), now);
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
                            index.upsert_number(&records::number(record), now);
                        }
                    }
                },
            )
            .await?;
        Ok(changed.len() as u32)
    }

    /// Every number of the app (of `area`, when given), sorted by number.
    pub fn list_numbers(&self, area: Option<&str>) -> Vec<NumberView> {
        let now = self.clock.now_ms();
        self.index().number_views(area, now)
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
            return Err(PoolError::FailedPrecondition(format!(
                "{n} still carries {} live binding(s); drain it and unbind them first",
                num.load + num.y_load
            )));
        }
    }
    Ok(())
}
