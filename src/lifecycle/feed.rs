//! What the change feed (`crate::calls`, `Watch`) says of a binding write: written in the same
//! transaction as the write (`AppPool::write`), so a watcher that resumes misses nothing.

use crate::store::{BindingChange, BindingRecord, BindingState, ChangeKindStored, ChangeStored};

/// The `reason` of a binding adopted by reconciliation (found on the platform only).
pub(super) const ADOPTED: &str = "adopted by reconciliation: found on the platform only";

/// The feed entry for one binding written (before → after), if callers care: a binding that
/// became ACTIVE (bound or adopted), changed while ACTIVE, or ended. PENDING reservations,
/// RELEASING and deletions (retention, dropped reservations) are not news.
pub(super) fn change(c: &BindingChange, at_ms: i64) -> Option<ChangeStored> {
    let (before, Some(after)) = c else {
        return None;
    };
    let was = before.as_ref().map(|b| b.state);
    let kind = match after.state {
        BindingState::Active => match was {
            None | Some(BindingState::Pending) if after.reason == ADOPTED => {
                ChangeKindStored::BindingAdopted
            }
            None | Some(BindingState::Pending) => ChangeKindStored::BindingBound,
            Some(BindingState::Active) if changed_for_callers(before.as_ref()?, after) => {
                ChangeKindStored::BindingUpdated
            }
            _ => return None,
        },
        BindingState::Released if was != Some(BindingState::Released) => {
            ChangeKindStored::BindingReleased
        }
        BindingState::Expired if was != Some(BindingState::Expired) => {
            ChangeKindStored::BindingExpired
        }
        _ => return None,
    };
    Some(ChangeStored {
        at_ms,
        app: after.app.clone(),
        kind,
        binding: Some(after.clone()),
        number: None,
        call_event: None,
        message: None,
    })
}

/// Whether an ACTIVE binding changed in a way its users see (not only its update time).
fn changed_for_callers(before: &BindingRecord, after: &BindingRecord) -> bool {
    let same = BindingRecord {
        updated_at_ms: before.updated_at_ms,
        ..after.clone()
    };
    &same != before
}
