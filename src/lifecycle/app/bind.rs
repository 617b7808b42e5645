//! The two-phase Bind: reserve durably, call the platform with no lock held, record the answer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::AppPool;
use crate::alloc::{AreaRule, ExtChoice, Index, MAX_XS_PER_A, NoPick, Pick, area_order};
use crate::lifecycle::error::{PoolError, Reason, quoted};
use crate::lifecycle::inflight::{self, Joined};
use crate::lifecycle::params::BindParams;
use crate::lifecycle::records;
use crate::lifecycle::upstream_calls::{self, Bound};
use crate::platform::Mode;
use crate::store::{
    BindingId, BindingRecord, BindingState, Lane, RequestLookup, Staged, StoreError,
};
use crate::upstream::{CallOpts, ErrorClass, UpstreamError};

/// How many numbers a Bind tries when the platform says the chosen one is taken.
const MAX_ATTEMPTS: usize = 3;

/// What an earlier Bind with the same request id left.
enum Earlier {
    /// Its binding, in the state it is in.
    Live(Box<BindingRecord>),
    /// The id of its binding, which has ended and been deleted by retention while the request
    /// id is still remembered: the Bind it came with was carried out.
    Ended(BindingId),
}

impl AppPool {
    /// Binds per the app's rules. With a request_id, a repeated or concurrent Bind returns the
    /// same binding without a second platform call.
    pub(in crate::lifecycle) async fn bind(
        self: &Arc<Self>,
        p: BindParams,
        max_wait: Duration,
    ) -> Result<BindingRecord, PoolError> {
        let mut p = p;
        // From here on the request carries the options in force.
        p.call_options = p.check(&self.name, &self.rules, &self.index(), &self.call_defaults)?;
        let Some(request_id) = p.request_id.clone() else {
            return self.bind_new(&p, max_wait).await;
        };
        let stored = || self.by_request(&request_id);
        let sender = match self.inflight.join(&request_id, stored)? {
            Joined::Wait(rx) => return inflight::wait(rx).await,
            Joined::Existing(earlier) => {
                return match earlier.await? {
                    Earlier::Live(existing) => self.settle_existing(*existing, &p).await,
                    Earlier::Ended(id) => Err(PoolError::refused(
                        Reason::RequestIdConflict,
                        format!(
                            "request_id {} was used for binding {id}, which has ended and been \
                             deleted; use a new request_id",
                            quoted(&request_id)
                        ),
                    )
                    .with("app", &self.name)
                    .with("request_id", &request_id)
                    .with("binding_id", id)),
                };
            }
            Joined::First(tx) => tx,
        };
        let result = self.bind_new(&p, max_wait).await;
        self.inflight.finish(&request_id, sender, &result);
        result
    }

    /// What an earlier Bind with this app's `request_id` left, if there was one, read in a
    /// transaction: it sees every write answered so far, also one that sled does not hold yet
    /// (a plain read would wait for that). Durable once awaited: nothing is answered from a
    /// write that could still be lost.
    ///
    /// The local lane in cluster mode too: it reads what this replica's copy of etcd holds,
    /// as a plain read does, and not a leader's writes still on their way to etcd. Reading
    /// those would make every Bind with a request id wait for the etcd commits in flight
    /// (a record without changes, queued behind them); a retry that arrives while its first
    /// Bind's write is in flight is refused by the reservation instead, as a conflict.
    fn by_request(&self, request_id: &str) -> Result<Option<Staged<Earlier>>, PoolError> {
        let staged = self.store.stage_in(Lane::Local, |tx| {
            Ok::<_, StoreError>(match tx.request_lookup(&self.name, request_id)? {
                RequestLookup::Unknown => None,
                RequestLookup::Live(existing) => Some(Earlier::Live(existing)),
                RequestLookup::Ended(id) => Some(Earlier::Ended(id)),
            })
        })?;
        Ok(staged.transpose())
    }

    /// A Bind whose request_id is already known: the same request returns the same binding; a
    /// different one is refused.
    async fn settle_existing(
        &self,
        existing: BindingRecord,
        p: &BindParams,
    ) -> Result<BindingRecord, PoolError> {
        let same = existing.party_a == p.party_a && existing.party_b == p.party_b;
        if !same {
            let request_id = p.request_id.as_deref().unwrap_or_default();
            return Err(PoolError::refused(
                Reason::RequestIdConflict,
                format!(
                    "request_id {} was already used for binding {} with other parties",
                    quoted(request_id),
                    existing.id
                ),
            )
            .with("request_id", request_id)
            .with("binding_id", existing.id));
        }
        if existing.state == BindingState::Pending {
            return self.resolve(existing).await;
        }
        Ok(existing)
    }

    async fn bind_new(
        &self,
        p: &BindParams,
        max_wait: Duration,
    ) -> Result<BindingRecord, PoolError> {
        let mut exclude = HashSet::new();
        for _ in 0..MAX_ATTEMPTS {
            // Listed as in flight before the reservation exists, so the background resolver
            // never mistakes it for one whose answer was lost.
            let id = BindingId::new();
            let _running = self.inflight.running(id);
            let Some(client) = self.client.clone() else {
                // X mode: the binding lives only here, so it is ACTIVE as soon as it is durable.
                let rec = self.reserve(p, &exclude, id, BindingState::Active).await?;
                if rec.expires_at_ms.is_some() {
                    self.deadlines.notify_one();
                }
                return Ok(rec);
            };
            // Wait for the app's rate limit before reserving anything, so a Bind that cannot get
            // a slot in time costs no write.
            let slot = client
                .with_opts(CallOpts::max_wait(max_wait))
                .take_slot()
                .await
                .map_err(|e| self.upstream_error(&e))?;
            let rec = self.reserve(p, &exclude, id, BindingState::Pending).await?;
            let turn = self.platform_turn(&rec).await;
            let outcome = upstream_calls::bind(&client, &rec, CallOpts::prepaid(slot)).await;
            match outcome {
                // Recorded before the turn passes: a search of the same party that comes next
                // knows this subscription as this binding's (see `axyb_steps`).
                Ok(bound) => return self.activate(rec, Some(bound)).await,
                Err(e) if e.outcome_unknown() => {
                    drop(turn);
                    return self.resolve(rec).await;
                }
                Err(e) if retry_elsewhere(&e) && !rec.x.is_empty() => {
                    drop(turn);
                    self.drop_reservation(&rec).await?;
                    self.flag_number(&rec.x, &e).await;
                    if p.x_number.is_some() {
                        return Err(self.upstream_error(&e).with("number", &rec.x));
                    }
                    exclude.insert(rec.x.clone());
                }
                Err(e) => {
                    drop(turn);
                    self.drop_reservation(&rec).await?;
                    return Err(self.upstream_error(&e));
                }
            }
        }
        Err(PoolError::refused(
            Reason::PoolOutOfSync,
            format!(
                "the platform refused {MAX_ATTEMPTS} numbers the index believed free; they are set aside for reconciliation"
            ),
        ))
    }

    /// Picks a slot and writes the reservation in `state`, durably, under `id`, minted for it
    /// ([`BindingId::new`]).
    async fn reserve(
        &self,
        p: &BindParams,
        exclude: &HashSet<String>,
        id: BindingId,
        state: BindingState,
    ) -> Result<BindingRecord, PoolError> {
        let now = self.clock.now_ms();
        self.write(
            |tx, index| {
                let rec = self.reservation(index, p, exclude, id, state, now)?;
                match tx.insert_new_binding(&rec) {
                    Ok(()) => Ok(rec),
                    // Another Bind with the same request_id reserved first.
                    Err(StoreError::Conflict(why)) => {
                        Err(PoolError::refused(Reason::RequestIdConflict, why))
                    }
                    Err(e) => Err(e.into()),
                }
            },
            |index, rec| index.occupy(&records::occupant(rec), now),
        )
        .await
    }

    /// The reservation a Bind would make now: the slot the rules pick, not yet written.
    fn reservation(
        &self,
        index: &mut Index,
        p: &BindParams,
        exclude: &HashSet<String>,
        id: BindingId,
        state: BindingState,
        now: i64,
    ) -> Result<BindingRecord, PoolError> {
        let (pick, reason) = match &p.x_number {
            Some(x) => {
                let pick = index
                    .pinned(
                        x,
                        p.extension.as_deref(),
                        &p.party_a,
                        p.party_b.as_deref(),
                        now,
                    )
                    .map_err(|e| no_pick(e, &self.name, x, 0))?;
                (pick, "pinned x_number".to_owned())
            }
            None => {
                let all = index.area_names();
                let order =
                    area_order(&self.rules, p.area_code.as_deref(), p.any_area, &all, |a| {
                        index.eligible_in(a, now)
                    });
                let names: Vec<String> = order.iter().map(|(a, _)| a.clone()).collect();
                if self.rules.mode == Mode::Axyb {
                    self.axyb_area(index, &order, now)
                        .map_err(|e| unknown_area(index, p).unwrap_or(e))?
                } else {
                    match index.pick(&names, &p.party_a, p.party_b.as_deref(), exclude, now) {
                        Ok((pick, i)) => {
                            let reason = describe(self.rules.mode, &pick, order[i].1);
                            (pick, reason)
                        }
                        Err(e) => {
                            let elsewhere = all
                                .iter()
                                .filter(|a| !names.contains(a))
                                .map(|a| index.eligible_in(a, now) as u64)
                                .sum();
                            let refused = no_pick(e, &self.name, "", elsewhere);
                            return Err(unknown_area(index, p).unwrap_or(refused));
                        }
                    }
                }
            }
        };
        let rec = BindingRecord {
            id,
            app: self.name.clone(),
            mode: self.rules.mode,
            state,
            x: pick.x,
            extension: pick.extension,
            y: None,
            party_a: p.party_a.clone(),
            party_b: p.party_b.clone(),
            area_code: pick.area,
            subscription_id: None,
            request_id: p.request_id.clone(),
            created_at_ms: now,
            updated_at_ms: now,
            expires_at_ms: (p.ttl_seconds > 0)
                .then(|| now.saturating_add(p.ttl_seconds as i64 * 1000)),
            released_at_ms: None,
            ttl_seconds: p.ttl_seconds,
            call_options: p.call_options.clone().into(),
            user_data: p.user_data.clone(),
            reason,
        };
        Ok(rec)
    }

    /// AXYB: the platform picks X in an area; choose the first area with headroom.
    fn axyb_area(
        &self,
        index: &mut Index,
        order: &[(String, AreaRule)],
        now: i64,
    ) -> Result<(Pick, String), PoolError> {
        for (area, rule) in order {
            if index.eligible_in(area, now) > 0 {
                let pick = Pick {
                    x: String::new(),
                    area: area.clone(),
                    extension: None,
                    ext_choice: None,
                };
                return Ok((
                    pick,
                    format!("platform-chosen X in {}", rule.describe(area)),
                ));
            }
        }
        let tried: Vec<String> = order.iter().map(|(a, _)| a.clone()).collect();
        Err(PoolError::exhausted(&tried, 0))
    }

    /// Records the platform's success: ACTIVE, durable. Only a binding still PENDING is
    /// activated: if a concurrent Unbind or resolution got there first, its outcome stands and
    /// is returned (a late answer never resurrects a released binding).
    pub(super) async fn activate(
        &self,
        rec: BindingRecord,
        bound: Option<Bound>,
    ) -> Result<BindingRecord, PoolError> {
        let now = self.clock.now_ms();
        let (binding, activated) = self
            .write(
                |tx, index| {
                    let current = tx
                        .get_binding(&rec.id)?
                        .ok_or_else(|| PoolError::binding_not_found(rec.id))?;
                    if current.state != BindingState::Pending {
                        return Ok((current, None));
                    }
                    let mut active = BindingRecord {
                        state: BindingState::Active,
                        updated_at_ms: now,
                        ..current
                    };
                    let mut late_slot = false;
                    if let Some(b) = bound {
                        late_slot = active.x.is_empty();
                        active.subscription_id =
                            (!b.subscription_id.is_empty()).then_some(b.subscription_id);
                        active.x = b.x;
                        active.y = b.y;
                        if late_slot && let Some(num) = index.number(&active.x) {
                            active.area_code = num.area.clone();
                        }
                    }
                    tx.put_binding(&active)?;
                    Ok((active, Some(late_slot)))
                },
                |index, (active, activated)| {
                    // AXYB: the platform chose the numbers; they count as used from now on.
                    if *activated == Some(true) {
                        index.occupy(&records::occupant(active), now);
                    }
                },
            )
            .await?;
        self.inflight.settled(&rec.id);
        if activated.is_some() && binding.expires_at_ms.is_some() {
            self.deadlines.notify_one();
        }
        Ok(binding)
    }

    /// Drops a reservation the platform definitely did not carry out, if it is still PENDING
    /// (a concurrent Unbind may have settled it already).
    pub(super) async fn drop_reservation(&self, rec: &BindingRecord) -> Result<(), PoolError> {
        let now = self.clock.now_ms();
        self.write(
            |tx, _| {
                let Some(current) = tx.get_binding(&rec.id)? else {
                    return Ok(None);
                };
                let dropped =
                    current.state == BindingState::Pending && tx.delete_binding(&rec.id)?;
                Ok(dropped.then_some(current))
            },
            |index, dropped| {
                if let Some(current) = dropped
                    && !current.x.is_empty()
                {
                    index.vacate(&records::occupant(current), None, now);
                }
            },
        )
        .await?;
        self.inflight.settled(&rec.id);
        Ok(())
    }

    /// A bind whose answer never came: ask the platform. Found → ACTIVE; absent, and still
    /// absent when asked again `pending_recheck` later → dropped; until then, or while the
    /// platform cannot be asked, it stays PENDING (its slot and request_id held).
    ///
    /// A platform binding whose subscription another binding here holds is not this one's,
    /// however alike their parties: each bind makes a subscription of its own. The party's turn
    /// (`axyb_steps`) is held from before the look-up until what it found is recorded, and
    /// every bind of the party records its answer before passing the turn on, so the
    /// subscriptions known here are all those of the party's settled binds.
    pub(super) async fn resolve(&self, rec: BindingRecord) -> Result<BindingRecord, PoolError> {
        let Some(client) = self.client.clone() else {
            return self.activate(rec, None).await;
        };
        let turn = self.platform_turn(&rec).await;
        let candidates = self.axyb_candidates(&rec);
        let theirs = self.subscriptions_held_besides(&rec, &candidates)?;
        let asked_ms = self.clock.now_ms();
        let absent =
            match upstream_calls::find(&client, &rec, &candidates, &theirs, CallOpts::default())
                .await
            {
                Ok(Some(bound)) => return self.activate(rec, Some(bound)).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
        drop(turn);
        match absent {
            Ok(()) => {
                let answered_ms = self.clock.now_ms();
                let recheck = self.pending_recheck_ms;
                if !self.inflight.absent(rec.id, asked_ms, answered_ms, recheck) {
                    tracing::info!(app = %self.name, id = %rec.id, "the platform does not have a bind whose answer was lost, yet; asking again later");
                    return Err(PoolError::refused(
                        Reason::OutcomeUnknown,
                        format!(
                            "the platform has not answered the bind and has no record of it yet; binding {} stays pending until it is asked again",
                            rec.id
                        ),
                    )
                    .with("binding_id", rec.id)
                    .retry_in(Some(Duration::from_millis(recheck.max(1000) as u64))));
                }
                tracing::info!(app = %self.name, id = %rec.id, "the platform confirms it never made a bind whose answer was lost; reservation dropped");
                self.drop_reservation(&rec).await?;
                Err(PoolError::refused(
                    Reason::PlatformUnavailable,
                    "the platform did not answer the bind and does not have it; try again",
                ))
            }
            Err(e) => {
                tracing::warn!(app = %self.name, id = %rec.id, error = %e, "bind outcome unknown; the reservation stays pending");
                Err(PoolError::refused(
                    Reason::OutcomeUnknown,
                    format!(
                        "the platform's answer was lost and it cannot be asked now; binding {} stays pending until resolved",
                        rec.id
                    ),
                )
                .with("binding_id", rec.id)
                .retry_in(e.retry_after()))
            }
        }
    }

    /// AXYB: the subscriptions that bindings here other than `rec` hold on `rec`'s X and on
    /// `candidates` (`rec`'s own excepted: an adopted AX with several YB relations is several
    /// bindings here on one subscription). A platform binding with one of them is not `rec`'s.
    ///
    /// Other modes name the slot in the bind, and a slot held here (RELEASING included) is never
    /// reserved again, so a look-up there cannot meet another binding of the same parties:
    /// nothing to read.
    pub(super) fn subscriptions_held_besides(
        &self,
        rec: &BindingRecord,
        candidates: &[String],
    ) -> Result<HashSet<String>, PoolError> {
        let mut held = HashSet::new();
        if rec.mode != Mode::Axyb {
            return Ok(held);
        }
        let xs = candidates
            .iter()
            .map(String::as_str)
            .chain((!rec.x.is_empty()).then_some(rec.x.as_str()));
        for x in xs {
            for b in self.store.bindings_on(&self.name, x)? {
                if b.id != rec.id && b.subscription_id != rec.subscription_id {
                    held.extend(b.subscription_id);
                }
            }
        }
        Ok(held)
    }

    /// The Xs an AXYB bind whose answer was lost may have landed on (the platform picks X):
    /// those of its area the index holds free, and those held here only by bindings in doubt
    /// (PENDING, RELEASING), which the platform may already have freed and given to it.
    fn axyb_candidates(&self, rec: &BindingRecord) -> Vec<String> {
        if rec.mode != Mode::Axyb || !rec.x.is_empty() {
            return Vec::new();
        }
        let in_area: Vec<(String, u32)> = self
            .index()
            .numbers()
            .filter(|(_, n)| n.area == rec.area_code)
            .map(|(x, n)| (x.clone(), n.load))
            .collect();
        let in_doubt = |x: &str| {
            self.store.bindings_on(&self.name, x).is_ok_and(|held| {
                held.iter()
                    .all(|b| b.id == rec.id || b.state != BindingState::Active)
            })
        };
        in_area
            .into_iter()
            .filter(|(x, load)| *load == 0 || in_doubt(x))
            .map(|(x, _)| x)
            .collect()
    }
}

/// Whether another number may succeed where this one failed.
fn retry_elsewhere(e: &UpstreamError) -> bool {
    matches!(
        e.class(),
        ErrorClass::Taken | ErrorClass::PartyConflict | ErrorClass::NumberUnusable
    )
}

fn describe(mode: Mode, pick: &Pick, rule: AreaRule) -> String {
    let place = rule.describe(&pick.area);
    match (mode, pick.ext_choice) {
        (Mode::Ax, _) => format!("longest-free X in {place}"),
        (Mode::Axe, Some(ExtChoice::Fresh)) => {
            format!("least-loaded X in {place}, never-used extension")
        }
        (Mode::Axe, _) => format!("least-loaded X in {place}, longest-released extension"),
        _ => format!("least-loaded X in {place}"),
    }
}

/// Why nothing could be picked for app `app`; `x` is the pinned number, if any.
fn no_pick(e: NoPick, app: &str, x: &str, free_elsewhere: u64) -> PoolError {
    match e {
        NoPick::Exhausted { tried } => PoolError::exhausted(&tried, free_elsewhere),
        NoPick::PartyLimit(a) => PoolError::refused(
            Reason::PartyAtLimit,
            format!(
                "party_a {a} already holds {MAX_XS_PER_A} numbers, the most the platform allows"
            ),
        )
        .with("limit", MAX_XS_PER_A),
        NoPick::Unknown => PoolError::number_not_in_pool("x_number", app, x),
        NoPick::Pinned(why) => PoolError::refused(Reason::NumberUnavailable, why).with("number", x),
    }
}

/// A request for an area the app has no numbers in at all: a configuration error, not an
/// exhausted pool. `None` when the request names no area or a known one.
fn unknown_area(index: &Index, p: &BindParams) -> Option<PoolError> {
    let area = p.area_code.as_deref()?;
    if index.has_area(area) {
        return None;
    }
    Some(
        PoolError::refused(
            Reason::UnknownArea,
            format!("app {} has no numbers in area {area}", quoted(&p.app)),
        )
        .with("area", area),
    )
}
