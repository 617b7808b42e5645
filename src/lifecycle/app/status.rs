//! Number status pushed by the platform (notifications.md §3): a number the platform holds
//! (paused, unavailable, binding-frozen) leaves rotation at once and comes back when it is
//! normal again. The status is the platform's, kept apart from the operator's drain.

use super::AppPool;
use crate::lifecycle::error::PoolError;
use crate::lifecycle::{NumberStatus, StatusCounts, records};
use crate::platform::push::NumInfo;
use crate::store::{ChangeKindStored, ChangeStored, NumberChangeStored, NumberRecord, NumberState};

impl AppPool {
    /// Applies the statuses a `numStatus` push reports for this app's numbers (status codes as
    /// the contract gives them: "5", "9", "10", "11"), durably and in one write: a number whose
    /// status is not normal leaves rotation at once; each change goes on the change feed.
    /// Numbers that are not the app's and codes the contract does not list are skipped.
    pub async fn set_number_status(&self, statuses: &[NumInfo]) -> Result<StatusCounts, PoolError> {
        let mut counts = StatusCounts::default();
        let mut wanted = Vec::with_capacity(statuses.len());
        for info in statuses {
            match NumberStatus::from_code(&info.status) {
                Some(status) if self.has_number(&info.number) => {
                    let cause = (status == NumberStatus::Unavailable)
                        .then(|| info.cause.clone())
                        .flatten();
                    wanted.push((info.number.clone(), status, cause));
                }
                _ => {
                    tracing::warn!(
                        app = %self.name,
                        number = %info.number,
                        status = %info.status,
                        "number status push for a number not in the pool, or with an unknown status; skipped"
                    );
                    counts.skipped += 1;
                }
            }
        }
        let now = self.clock.now_ms();
        let changed = self
            .write(
                |tx, _| {
                    let mut changed: Vec<NumberRecord> = Vec::new();
                    for (number, status, cause) in &wanted {
                        let Some(r) = tx.get_number(&self.name, number)? else {
                            continue;
                        };
                        let status = (*status).into();
                        if r.state == NumberState::Removed
                            || (r.platform_status == status && &r.status_cause == cause)
                        {
                            continue;
                        }
                        let record = NumberRecord {
                            platform_status: status,
                            status_cause: cause.clone(),
                            updated_at_ms: now,
                            ..r
                        };
                        tx.put_number(&record)?;
                        tx.append_change(&ChangeStored {
                            at_ms: now,
                            app: self.name.clone(),
                            kind: ChangeKindStored::NumberStatus,
                            binding: None,
                            number: Some(NumberChangeStored {
                                number: number.clone(),
                                status,
                                cause: cause.clone(),
                            }),
                            call_event: None,
                            message: None,
                        })?;
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
        for r in &changed {
            tracing::info!(
                app = %self.name,
                number = %r.number,
                status = NumberStatus::from(r.platform_status).as_str(),
                cause = r.status_cause.as_deref().unwrap_or(""),
                "the platform changed a number's status"
            );
        }
        counts.changed = changed.len() as u32;
        counts.unchanged = wanted.len() as u32 - counts.changed;
        Ok(counts)
    }
}
