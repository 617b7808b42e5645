//! Conversions of WatchService: the request's filters and starting point, and the changes of
//! the feed as events. Every field of an incoming message is destructured, as in `convert`.

use super::convert::{number_status, timestamp};
use super::pb;
use super::resume;
use crate::calls::{Change, ChangeFilter, ChangeKind, NumberStatusChange};
use crate::lifecycle::PoolError;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PoolError {
    PoolError::invalid(field, message)
}

/// Where a Watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// After the last change stored when the Watch began.
    Now,
    /// From the oldest change kept.
    Oldest,
    /// After change `seq` (a resume token).
    After(u64),
}

/// A Watch as asked for: which changes, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStart {
    pub filter: ChangeFilter,
    pub from: WatchFrom,
    /// The request's token, for the metadata of errors about it.
    pub resume_token: String,
}

impl TryFrom<pb::WatchRequest> for WatchStart {
    type Error = PoolError;

    fn try_from(r: pb::WatchRequest) -> Result<Self, PoolError> {
        let pb::WatchRequest {
            apps,
            kinds,
            resume_token,
            from_oldest,
        } = r;
        if let Some(i) = apps.iter().position(String::is_empty) {
            return Err(invalid(format!("apps[{i}]"), "must not be empty"));
        }
        let kinds = kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                change_kind(k)
                    .ok_or_else(|| invalid(format!("kinds[{i}]"), format!("not a watch kind: {k}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let from = match (resume_token.as_str(), from_oldest) {
            ("", false) => WatchFrom::Now,
            ("", true) => WatchFrom::Oldest,
            (_, true) => {
                return Err(invalid(
                    "from_oldest",
                    "only without a resume_token (which says where to start)",
                ));
            }
            (token, false) => WatchFrom::After(resume::position(token)?),
        };
        Ok(WatchStart {
            filter: ChangeFilter { apps, kinds },
            from,
            resume_token,
        })
    }
}

/// The kind a request's `kinds` value names; `None` for UNSPECIFIED and unknown values.
fn change_kind(value: i32) -> Option<ChangeKind> {
    Some(match pb::WatchKind::try_from(value).ok()? {
        pb::WatchKind::Unspecified => return None,
        pb::WatchKind::BindingBound => ChangeKind::BindingBound,
        pb::WatchKind::BindingUpdated => ChangeKind::BindingUpdated,
        pb::WatchKind::BindingReleased => ChangeKind::BindingReleased,
        pb::WatchKind::BindingExpired => ChangeKind::BindingExpired,
        pb::WatchKind::BindingAdopted => ChangeKind::BindingAdopted,
        pb::WatchKind::NumberStatus => ChangeKind::NumberStatus,
        pb::WatchKind::CallEvent => ChangeKind::CallEvent,
        pb::WatchKind::Message => ChangeKind::Message,
    })
}

pub fn watch_kind(k: ChangeKind) -> pb::WatchKind {
    match k {
        ChangeKind::BindingBound => pb::WatchKind::BindingBound,
        ChangeKind::BindingUpdated => pb::WatchKind::BindingUpdated,
        ChangeKind::BindingReleased => pb::WatchKind::BindingReleased,
        ChangeKind::BindingExpired => pb::WatchKind::BindingExpired,
        ChangeKind::BindingAdopted => pb::WatchKind::BindingAdopted,
        ChangeKind::NumberStatus => pb::WatchKind::NumberStatus,
        ChangeKind::CallEvent => pb::WatchKind::CallEvent,
        ChangeKind::Message => pb::WatchKind::Message,
    }
}

impl From<Change> for pb::WatchEvent {
    fn from(c: Change) -> pb::WatchEvent {
        use pb::watch_event::Payload;
        let Change {
            seq,
            at_ms,
            app,
            kind,
            binding,
            number,
            call_event,
            message,
        } = c;
        let payload = match kind {
            ChangeKind::BindingBound
            | ChangeKind::BindingUpdated
            | ChangeKind::BindingReleased
            | ChangeKind::BindingExpired
            | ChangeKind::BindingAdopted => binding.map(|b| Payload::Binding(b.into())),
            ChangeKind::NumberStatus => number.map(|n| Payload::NumberStatus(n.into())),
            ChangeKind::CallEvent => call_event.map(|e| Payload::CallEvent(e.into())),
            ChangeKind::Message => message.map(|m| Payload::Message(m.into())),
        };
        pb::WatchEvent {
            resume_token: resume::token(seq),
            kind: watch_kind(kind).into(),
            app,
            event_time: Some(timestamp(at_ms)),
            payload,
        }
    }
}

impl From<NumberStatusChange> for pb::NumberStatusChange {
    fn from(n: NumberStatusChange) -> pb::NumberStatusChange {
        let NumberStatusChange {
            number,
            status,
            cause,
        } = n;
        pb::NumberStatusChange {
            number,
            status: number_status(status).into(),
            cause: cause.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests;
