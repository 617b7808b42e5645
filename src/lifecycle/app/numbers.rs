//! The numbers of an app's pool: adding, draining and removing them, and what the index says
//! about them.

use super::AppPool;
use crate::alloc::{AreaStats, NumberView};
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
        for (n, area) in numbers {
            let existing = self.store.get_number(&self.name, n)?;
            let record = match existing {
                Some(r) if r.area_code == *area && r.state != NumberState::Removed => continue,
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
            self.store.put_number(&record)?;
            self.index().upsert_number(&records::number(&record), now);
        }
        self.store.flush().await?;
        Ok((added, updated))
    }

    /// Stops handing numbers out; their bindings live on.
    pub async fn drain_numbers(&self, numbers: &[String]) -> Result<u32, PoolError> {
        self.set_state(numbers, NumberState::Draining).await
    }

    /// Removes numbers that hold no live binding; refuses (changing nothing) otherwise.
    pub async fn remove_numbers(&self, numbers: &[String]) -> Result<u32, PoolError> {
        {
            let index = self.index();
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
        }
        self.set_state(numbers, NumberState::Removed).await
    }

    async fn set_state(&self, numbers: &[String], state: NumberState) -> Result<u32, PoolError> {
        let mut records = Vec::new();
        for n in numbers {
            match self.store.get_number(&self.name, n)? {
                Some(r) if r.state != NumberState::Removed => records.push(r),
                _ => {
                    return Err(PoolError::NotFound(format!(
                        "{n} is not a number of app {}",
                        self.name
                    )));
                }
            }
        }
        let now = self.clock.now_ms();
        for r in &records {
            let record = NumberRecord {
                state,
                updated_at_ms: now,
                ..r.clone()
            };
            self.store.put_number(&record)?;
            let mut index = self.index();
            if state == NumberState::Removed {
                index.remove_number(&record.number);
            } else {
                index.upsert_number(&records::number(&record), now);
            }
        }
        self.store.flush().await?;
        Ok(records.len() as u32)
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
