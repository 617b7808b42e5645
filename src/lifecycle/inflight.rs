//! The Binds of one app still running in this process: duplicates of an idempotent Bind wait
//! for the first one's outcome, and the resolver leaves their reservations alone. Also what
//! the platform said so far about reservations whose answer was lost.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::watch;

use super::error::PoolError;
use super::lock;
use crate::store::{BindingId, BindingRecord};

/// The outcome of an idempotent Bind, shared with concurrent duplicates.
type Shared = Option<Result<BindingRecord, PoolError>>;

/// One app's Binds in flight.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// Binds in flight per request_id: duplicates wait on the first one's outcome. An entry
    /// lives from the first Bind's start until its outcome is durable.
    by_request: Mutex<HashMap<String, watch::Receiver<Shared>>>,
    /// Reservations whose Bind is still running here.
    reservations: Mutex<HashSet<BindingId>>,
    /// PENDING reservations the platform said it does not have: when (ms) it first said so.
    /// An entry lives until the reservation is activated or dropped.
    absent: Mutex<HashMap<BindingId, i64>>,
}

/// What a Bind with a request_id found when it joined.
pub(super) enum Joined<S> {
    /// Another Bind with this request_id is in flight: wait for its outcome.
    Wait(watch::Receiver<Shared>),
    /// A Bind with this request_id already finished (or left a reservation): what is stored
    /// of it.
    Existing(S),
    /// This is the first: publish the outcome with [`InFlight::finish`].
    First(watch::Sender<Shared>),
}

impl InFlight {
    /// Registers a Bind with `request_id`, or finds the one that came first. `stored` is
    /// asked under the lock: the first Bind is either still listed here, or its record is
    /// written (where a transaction finds it, also before sled holds it).
    pub(super) fn join<S>(
        &self,
        request_id: &str,
        stored: impl FnOnce() -> Result<Option<S>, PoolError>,
    ) -> Result<Joined<S>, PoolError> {
        let mut by_request = lock(&self.by_request);
        if let Some(rx) = by_request.get(request_id) {
            return Ok(Joined::Wait(rx.clone()));
        }
        if let Some(existing) = stored()? {
            return Ok(Joined::Existing(existing));
        }
        let (tx, rx) = watch::channel(None);
        by_request.insert(request_id.to_owned(), rx);
        Ok(Joined::First(tx))
    }

    /// Publishes the first Bind's outcome to its duplicates and forgets the request_id.
    pub(super) fn finish(
        &self,
        request_id: &str,
        sender: watch::Sender<Shared>,
        result: &Result<BindingRecord, PoolError>,
    ) {
        sender.send_replace(Some(result.clone()));
        lock(&self.by_request).remove(request_id);
        drop(sender);
    }

    /// Lists reservation `id` as running here for as long as the guard lives.
    pub(super) fn running(&self, id: BindingId) -> Running<'_> {
        lock(&self.reservations).insert(id);
        Running { set: self, id }
    }

    /// The reservations running here now.
    pub(super) fn reservations(&self) -> HashSet<BindingId> {
        lock(&self.reservations).clone()
    }

    /// Records that the platform, asked at `asked_ms`, answered at `answered_ms` that it does not
    /// have reservation `id`. True once that is final: a lookup asked at least `recheck_ms` after
    /// the first such answer says so too (with `recheck_ms` 0, the first answer is). One answer
    /// is not enough: a platform that stalled may still hold the bind and carry it out after
    /// answering a later lookup.
    pub(super) fn absent(
        &self,
        id: BindingId,
        asked_ms: i64,
        answered_ms: i64,
        recheck_ms: i64,
    ) -> bool {
        if recheck_ms <= 0 {
            return true;
        }
        let mut absent = lock(&self.absent);
        let first = *absent.entry(id).or_insert(answered_ms);
        asked_ms >= first.saturating_add(recheck_ms)
    }

    /// Forgets what the platform said about reservation `id`: it is settled.
    pub(super) fn settled(&self, id: &BindingId) {
        lock(&self.absent).remove(id);
    }
}

/// Waits for the outcome of the first Bind with the same request_id.
pub(super) async fn wait(mut rx: watch::Receiver<Shared>) -> Result<BindingRecord, PoolError> {
    loop {
        if let Some(result) = rx.borrow_and_update().clone() {
            return result;
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone().unwrap_or_else(|| {
                Err(PoolError::internal(
                    "a concurrent Bind with this request_id was abandoned",
                ))
            });
        }
    }
}

/// Marks a reservation whose Bind is still running in this process, for as long as it lives.
pub(super) struct Running<'a> {
    set: &'a InFlight,
    id: BindingId,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.set.reservations).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_is_final_only_when_a_later_lookup_confirms_it() {
        let inflight = InFlight::default();
        let id = BindingId::new();
        // First "not there" at 1000: not final, whenever asked.
        assert!(!inflight.absent(id, 900, 1000, 500));
        // A lookup asked before 1000 + 500 confirms nothing, even if answered later.
        assert!(!inflight.absent(id, 1499, 2000, 500));
        assert!(inflight.absent(id, 1500, 1510, 500));
        inflight.settled(&id);
        assert!(
            !inflight.absent(id, 5000, 5000, 500),
            "forgotten once settled"
        );
        // Without a recheck interval the first answer is final.
        assert!(inflight.absent(BindingId::new(), 0, 10, 0));
    }
}
