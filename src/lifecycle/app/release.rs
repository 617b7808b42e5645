//! Unbind, and the recovery of what a crash or a lost answer left open.

use super::AppPool;
use crate::lifecycle::error::{PoolError, Reason};
use crate::lifecycle::{records, upstream_calls};
use crate::store::{BindingId, BindingRecord, BindingState};
use crate::upstream::{CallOpts, Priority};

impl AppPool {
    /// Releases a binding: RELEASING (durable), unbind on the platform, RELEASED (durable), slot
    /// back into cool-down. Unbinding a released or expired binding returns it unchanged.
    pub(in crate::lifecycle) async fn unbind(
        &self,
        id: BindingId,
    ) -> Result<BindingRecord, PoolError> {
        let rec = self.load(&id)?;
        let rec = match rec.state {
            BindingState::Released | BindingState::Expired => return Ok(rec),
            BindingState::Pending => {
                let resolved = self.resolve(rec).await?;
                if resolved.state != BindingState::Active {
                    return Ok(resolved);
                }
                resolved
            }
            BindingState::Active | BindingState::Releasing => rec,
        };
        self.release(&rec, BindingState::Released).await
    }

    /// RELEASING (durable), unbind on the platform at urgent priority, then `to` (Released, or
    /// Expired for an AX binding past its deadline). A failed unbind leaves it RELEASING for the
    /// resolver to finish.
    pub(super) async fn release(
        &self,
        rec: &BindingRecord,
        to: BindingState,
    ) -> Result<BindingRecord, PoolError> {
        let (released, _) = self.release_if(rec, to, |_| true).await?;
        Ok(released)
    }

    /// [`AppPool::release`], only if `still` holds for the binding as its first write finds
    /// it (checked inside that transaction, so a change made after `rec` was read counts). If
    /// it does not, nothing is written or unbound: the current record and `false`.
    pub(super) async fn release_if(
        &self,
        rec: &BindingRecord,
        to: BindingState,
        still: impl FnOnce(&BindingRecord) -> bool + Send,
    ) -> Result<(BindingRecord, bool), PoolError> {
        let Some(client) = &self.client else {
            // X mode: nothing to undo upstream, one durable step.
            return self.transition_if(&rec.id, to, still, |_| {}).await;
        };
        let (releasing, held) = self
            .transition_if(&rec.id, BindingState::Releasing, still, |_| {})
            .await?;
        if !held {
            return Ok((releasing, false));
        }
        let only_yb = self.shares_subscription(&releasing);
        let unbind = upstream_calls::unbind(
            client,
            &releasing,
            only_yb,
            CallOpts::priority(Priority::Urgent),
        );
        if let Err(e) = unbind.await {
            tracing::info!(app = %self.name, id = %rec.id, "unbind failed; the binding stays RELEASING");
            return Err(self.upstream_error(&e));
        }
        Ok((self.transition(&rec.id, to, |_| {}).await?, true))
    }

    /// AXYB: whether another live binding here rides on the same AX subscription (an adopted
    /// AX with several YB relations), so that unbinding this one must leave the AX in place.
    pub(super) fn shares_subscription(&self, rec: &BindingRecord) -> bool {
        rec.mode == crate::platform::Mode::Axyb
            && rec.subscription_id.is_some()
            && self
                .store
                .bindings_on(&self.name, &rec.x)
                .is_ok_and(|on_x| {
                    on_x.iter()
                        .any(|b| b.id != rec.id && b.subscription_id == rec.subscription_id)
                })
    }

    fn load(&self, id: &BindingId) -> Result<BindingRecord, PoolError> {
        self.store
            .get_binding(id)?
            .ok_or_else(|| PoolError::binding_not_found(id))
    }

    /// Moves a binding to `to`, durably, in step with the index (see [`AppPool::write`]), so
    /// that concurrent transitions of one binding take effect once: the slot is given back
    /// exactly when the binding stops holding it. A binding that leaves service with no
    /// retention left (see `lifecycle::retention`) is deleted in the same write; the record is
    /// returned as it left.
    pub(super) async fn transition(
        &self,
        id: &BindingId,
        to: BindingState,
        edit: impl FnOnce(&mut BindingRecord) + Send,
    ) -> Result<BindingRecord, PoolError> {
        let (record, _) = self.transition_if(id, to, |_| true, edit).await?;
        Ok(record)
    }

    /// [`AppPool::transition`], only if `still` holds for the current record (inside the
    /// transaction); with whether it did. When it does not, nothing is written.
    async fn transition_if(
        &self,
        id: &BindingId,
        to: BindingState,
        still: impl FnOnce(&BindingRecord) -> bool + Send,
        edit: impl FnOnce(&mut BindingRecord) + Send,
    ) -> Result<(BindingRecord, bool), PoolError> {
        let now = self.clock.now_ms();
        let (next, _vacated, deleted, held) = self
            .write(
                |tx, _| {
                    let current = tx
                        .get_binding(id)?
                        .ok_or_else(|| PoolError::binding_not_found(id))?;
                    if !still(&current) {
                        return Ok((current, None, false, false));
                    }
                    if current.state == to || !current.state.holds_slot() {
                        return Ok((current, None, false, true));
                    }
                    let mut next = BindingRecord {
                        state: to,
                        updated_at_ms: now,
                        ..current.clone()
                    };
                    if !to.holds_slot() {
                        next.released_at_ms = Some(now);
                    }
                    edit(&mut next);
                    tx.put_binding(&next)?;
                    let left = !to.holds_slot();
                    // With no retention, the record goes in this same write.
                    let deleted = left
                        && self
                            .retention
                            .at_leave(tx, &next, self.cool_down_kept_ms())?;
                    Ok((next, left.then_some(current), deleted, true))
                },
                |index, (_, vacated, _, _)| {
                    if let Some(current) = vacated {
                        index.vacate(&records::occupant(current), Some(now), now);
                    }
                },
            )
            .await?;
        if deleted {
            self.retention.count(1);
        }
        Ok((next, held))
    }

    /// Edits an ACTIVE binding without changing its state (the store moves its expiry entry in
    /// the same transaction).
    pub(super) async fn transition_in_place(
        &self,
        id: &BindingId,
        edit: impl FnOnce(&mut BindingRecord) + Send,
    ) -> Result<BindingRecord, PoolError> {
        let now = self.clock.now_ms();
        self.write(
            |tx, _| {
                let current = tx
                    .get_binding(id)?
                    .ok_or_else(|| PoolError::binding_not_found(id))?;
                if current.state != BindingState::Active {
                    let state = format!("{:?}", current.state).to_uppercase();
                    return Err(PoolError::refused(
                        Reason::BindingNotActive,
                        format!("binding {id} is no longer active"),
                    )
                    .with("binding_id", id)
                    .with("state", state));
                }
                let mut next = BindingRecord {
                    updated_at_ms: now,
                    ..current
                };
                edit(&mut next);
                tx.put_binding(&next)?;
                Ok(next)
            },
            |_, _| {},
        )
        .await
    }

    /// Resolves the given PENDING reservations and RELEASING unbinds of this app (those of Binds
    /// still running here are skipped). Returns how many remain open (the platform could not be
    /// asked).
    ///
    /// `open` was read before, and a binding may have moved on since: one no longer PENDING or
    /// RELEASING is left alone, and an unbind is retried only while its binding is still
    /// RELEASING when the retry's first write finds it (an ACTIVE binding taken for an open one
    /// was once released here, though nobody had unbound it).
    pub(in crate::lifecycle) async fn recover(&self, open: Vec<BindingRecord>) -> usize {
        let running = self.inflight.reservations();
        let open: Vec<BindingRecord> = open
            .into_iter()
            .filter(|b| !running.contains(&b.id))
            .collect();
        let mut left = 0;
        for rec in open {
            let id = rec.id;
            let result = match rec.state {
                BindingState::Pending => self.resolve(rec).await.map(|_| ()),
                BindingState::Releasing => {
                    let past_deadline = rec.expires_at_ms.is_some_and(|t| t <= self.clock.now_ms());
                    let to = if past_deadline {
                        BindingState::Expired
                    } else {
                        BindingState::Released
                    };
                    let still_releasing = |b: &BindingRecord| b.state == BindingState::Releasing;
                    let finished = self.release_if(&rec, to, still_releasing).await;
                    match finished {
                        Ok((_, true)) => Ok(()),
                        Ok((_, false)) => continue,
                        Err(e) => Err(e),
                    }
                }
                _ => continue,
            };
            match result {
                Ok(()) => tracing::info!(app = %self.name, %id, "resolved an open binding"),
                // Resolved as "the platform never made it": nothing left open.
                Err(e) if e.is_retryable() && !self.is_open(&id) => {}
                Err(e) if e.is_store_unavailable() => left += 1,
                Err(e) => {
                    left += 1;
                    tracing::warn!(app = %self.name, %id, error = %e, "binding still unresolved");
                }
            }
        }
        left
    }

    fn is_open(&self, id: &BindingId) -> bool {
        matches!(self.store.get_binding(id), Ok(Some(b)) if matches!(b.state, BindingState::Pending | BindingState::Releasing))
    }
}
