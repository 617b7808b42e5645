//! Reconciling one app with the platform, one X at a time (see `lifecycle::reconciler` for the
//! runs and what they report).
//!
//! For each X the platform's bindings on it are queried (paged) and compared with the local
//! bindings holding a slot on it: a platform-only binding (orphan) that a second query still
//! finds is adopted, or released by policy; a local-only binding (ghost) is freed only when it
//! is older than the grace window and a second query confirms it is gone; differing fields
//! take the platform's value; a platform binding that a PENDING reservation asked for
//! completes that reservation (its request_id kept) before anything is called an orphan, and
//! the other PENDING reservations are looked up. A binding created while its X is being
//! reconciled is young, so it is never freed. Progress is kept in the store, so an interrupted
//! run resumes.

use super::AppPool;
use crate::lifecycle::error::PoolError;
use crate::lifecycle::error::describe;
use crate::lifecycle::reconciler::{
    OrphanPolicy, Progress, ReconcileOptions, ReconcileReport, RunError,
};
use crate::lifecycle::records;
use crate::lifecycle::upstream_calls::{self, Bound, Remote};
use crate::platform::Mode;
use crate::store::{BindingId, BindingRecord, BindingState, NumberRecord, NumberState};
use crate::upstream::{AppClient, CallOpts, ErrorClass, Priority, UpstreamError};

fn progress_key(app: &str) -> String {
    format!("reconcile/{app}")
}

/// Why one X could not be reconciled: for callers, with the platform's result code when the
/// platform refused a call.
#[derive(Debug)]
struct Failed {
    message: String,
    code: Option<String>,
}

impl From<PoolError> for Failed {
    fn from(e: PoolError) -> Failed {
        Failed {
            message: e.to_string(),
            code: None,
        }
    }
}

impl From<crate::store::StoreError> for Failed {
    fn from(e: crate::store::StoreError) -> Failed {
        PoolError::from(e).into()
    }
}

impl AppPool {
    /// The Xs a reconciliation of this app covers, in order: the numbers `opts` names, or every
    /// number — after the last one an interrupted full run finished.
    pub(in crate::lifecycle) fn reconcile_plan(
        &self,
        opts: &ReconcileOptions,
    ) -> Result<Vec<String>, PoolError> {
        if !opts.numbers.is_empty() {
            return Ok(opts.numbers.clone());
        }
        // Only the numbers, in order (resume compares with the last one done).
        let mut xs: Vec<String> = self.index().numbers().map(|(x, _)| x.clone()).collect();
        xs.sort();
        if !opts.dry_run
            && let Some(done) = self.store.get_meta(&progress_key(&self.name))?
        {
            let done = String::from_utf8_lossy(&done).into_owned();
            xs.retain(|x| *x > done);
        }
        Ok(xs)
    }

    /// Reconciles `xs` (from [`AppPool::reconcile_plan`]) one by one, reporting each X's counts
    /// and errors to `progress`.
    pub(in crate::lifecycle) async fn reconcile(
        &self,
        xs: Vec<String>,
        opts: &ReconcileOptions,
        progress: Progress<'_>,
    ) -> Result<(), PoolError> {
        let whole_pool = opts.numbers.is_empty();
        for x in xs {
            let mut delta = ReconcileReport::default();
            if let Err(failed) = self.reconcile_x(&x, opts, &mut delta).await {
                delta.push_error(self.run_error(&x, None, failed.code, failed.message));
            }
            delta.xs_checked = 1;
            progress(delta);
            if whole_pool && !opts.dry_run {
                // Only a hint where to resume: it becomes durable with the next write that is
                // awaited (this run's, or anyone's), and losing it redoes a few numbers.
                let progress = self.store.stage_in(self.lane(), |tx| {
                    tx.put_meta(&progress_key(&self.name), x.as_bytes())
                })?;
                drop(progress);
            }
        }
        if whole_pool && !opts.dry_run {
            let key = progress_key(&self.name);
            self.store
                .commit_in(self.lane(), |tx| tx.delete_meta(&key))
                .await?;
        }
        Ok(())
    }

    /// An error of this app's reconciliation on `x` (and `binding`).
    fn run_error(
        &self,
        x: &str,
        binding: Option<BindingId>,
        platform_code: Option<String>,
        message: String,
    ) -> RunError {
        RunError {
            app: self.name.clone(),
            number: Some(x.to_owned()),
            binding_id: binding.map(Into::into),
            platform_code,
            message,
        }
    }

    async fn reconcile_x(
        &self,
        x: &str,
        opts: &ReconcileOptions,
        report: &mut ReconcileReport,
    ) -> Result<(), Failed> {
        let client = self
            .client
            .clone()
            .ok_or_else(|| PoolError::internal("no platform client"))?;
        let background = || CallOpts::priority(Priority::Background);
        let remote = match upstream_calls::list_on(&client, self.rules.mode, x, background()).await
        {
            Ok(remote) => remote,
            Err(e) if e.class() == ErrorClass::NumberUnusable => {
                report.numbers_removed += 1;
                if !opts.dry_run {
                    self.retire_number(x).await?;
                }
                return Ok(());
            }
            Err(e) => return Err(self.unreachable(&e)),
        };
        // Read local state after the platform's answer, so a bind that finished in between is
        // seen on both sides.
        let local = self.store.bindings_on(&self.name, x)?;
        let now = self.clock.now_ms();
        let pending = self.pending_for(x, &local)?;
        self.settle_pending(x, &remote, &local, &pending, opts, report)
            .await?;

        let mut unknown = Vec::new();
        for r in &remote {
            match local.iter().find(|b| same_binding(b, r)) {
                Some(b) => {
                    if let Some(fixed) = corrected(b, r) {
                        report.fields_corrected += 1;
                        if !opts.dry_run {
                            self.correct(b, &fixed).await?;
                        }
                    }
                }
                // Made by a PENDING reservation of the same party (perhaps half of an AXYB bind
                // whose second step is still to come): not an orphan.
                None if pending.iter().any(|p| p.party_a == r.a) => {}
                None => unknown.push(r),
            }
        }
        for r in self.still_there(&client, x, unknown).await? {
            match opts.orphan_policy {
                OrphanPolicy::Adopt => {
                    report.orphans_adopted += 1;
                    if !opts.dry_run {
                        self.adopt(x, &r, now).await?;
                    }
                }
                OrphanPolicy::Release => {
                    report.orphans_released += 1;
                    if !opts.dry_run {
                        let stray = self.orphan_record(x, &r, now);
                        upstream_calls::unbind(&client, &stray, false, background())
                            .await
                            .map_err(|e| self.unreachable(&e))?;
                    }
                }
            }
        }

        for b in &local {
            let on_platform = remote.iter().any(|r| same_binding(b, r));
            if on_platform || !matches!(b.state, BindingState::Active | BindingState::Releasing) {
                continue;
            }
            let young = b.created_at_ms.max(b.updated_at_ms) > now - opts.grace_ms;
            if young {
                continue;
            }
            // Ask again about this one binding before freeing anything.
            let found = {
                let _turn = self.platform_turn(b).await;
                let theirs = self.subscriptions_held_besides(b, &[])?;
                upstream_calls::find(&client, b, &[], &theirs, background()).await
            };
            let gone = match found {
                Ok(found) => {
                    found.is_none_or(|f| Some(&f.subscription_id) != b.subscription_id.as_ref())
                }
                Err(e) => {
                    tracing::warn!(app = %self.name, id = %b.id, error = %e, "second check failed");
                    let why = format!("second check failed: {}", describe(&e));
                    let code = e.code().map(str::to_owned);
                    report.push_error(self.run_error(x, Some(b.id), code, why));
                    false
                }
            };
            if gone {
                report.ghosts_freed += 1;
                if !opts.dry_run {
                    let past_deadline = b.expires_at_ms.is_some_and(|t| t <= now);
                    let to = if past_deadline {
                        BindingState::Expired
                    } else {
                        BindingState::Released
                    };
                    self.transition(&b.id, to, |_| {}).await?;
                }
            }
        }
        if !opts.dry_run {
            self.clear_flag(x).await?;
        }
        Ok(())
    }

    /// The number agrees with the platform again: back into rotation if it was set aside.
    async fn clear_flag(&self, x: &str) -> Result<(), PoolError> {
        let now = self.clock.now_ms();
        self.write(
            |tx, _| {
                let Some(r) = tx.get_number(&self.name, x)?.filter(|r| r.needs_reconcile) else {
                    return Ok(None);
                };
                let record = NumberRecord {
                    needs_reconcile: false,
                    updated_at_ms: now,
                    ..r
                };
                tx.put_number(&record)?;
                Ok(Some(record))
            },
            |index, record| {
                if let Some(record) = record {
                    index.upsert_number(&records::number(record), now);
                }
            },
        )
        .await?;
        Ok(())
    }

    /// Of the platform bindings on `x` that the listing had and nothing here knows, those the
    /// platform still has when asked again, as it has them now.
    ///
    /// The local bindings are read after the listing, so a binding that left both sides in
    /// between is in the listing and in no record here: an AXYB bind whose YB step was refused
    /// takes its AX step back and then drops its reservation; an Unbind lands on the platform
    /// and then releases the binding here. A listing made after the local read no longer has
    /// it, while a binding that really is the platform's alone is in both.
    async fn still_there(
        &self,
        client: &AppClient,
        x: &str,
        unknown: Vec<&Remote>,
    ) -> Result<Vec<Remote>, Failed> {
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let opts = CallOpts::priority(Priority::Background);
        let listed = upstream_calls::list_on(client, self.rules.mode, x, opts)
            .await
            .map_err(|e| self.unreachable(&e))?;
        Ok(listed
            .into_iter()
            .filter(|r| {
                unknown
                    .iter()
                    .any(|u| u.subscription_id == r.subscription_id && u.y == r.y)
            })
            .collect())
    }

    /// A platform call of the reconciliation failed: the caller learns why (and the platform's
    /// result code), the log the details.
    fn unreachable(&self, e: &UpstreamError) -> Failed {
        tracing::warn!(app = %self.name, error = %e, "platform call of a reconciliation failed");
        Failed {
            message: describe(e),
            code: e.code().map(str::to_owned),
        }
    }

    /// Settles the PENDING reservations that may have made a binding on `x` (Binds still
    /// running here are left to finish): a platform binding that one of them asked for (same X,
    /// same parties) activates it, request_id and all, and is thus no orphan; the others are
    /// looked up on the platform.
    async fn settle_pending(
        &self,
        x: &str,
        remote: &[Remote],
        local: &[BindingRecord],
        pending: &[BindingRecord],
        opts: &ReconcileOptions,
        report: &mut ReconcileReport,
    ) -> Result<(), PoolError> {
        let running = self.inflight.reservations();
        let mut claimed = Vec::new();
        for r in remote
            .iter()
            .filter(|r| !local.iter().any(|b| same_binding(b, r)))
        {
            let Some(p) = pending
                .iter()
                .find(|p| is_bind_of(p, x, r) && !claimed.contains(&p.id))
            else {
                continue;
            };
            claimed.push(p.id);
            if running.contains(&p.id) {
                continue;
            }
            report.pending_resolved += 1;
            if !opts.dry_run {
                let bound = Bound {
                    subscription_id: r.subscription_id.clone(),
                    x: x.to_owned(),
                    y: r.y.clone(),
                };
                self.activate(p.clone(), Some(bound)).await?;
            }
        }
        for rec in pending
            .iter()
            .filter(|p| !claimed.contains(&p.id) && !running.contains(&p.id))
        {
            report.pending_resolved += 1;
            if !opts.dry_run {
                // Resolution failing leaves it pending: an error for this X.
                if let Err(e) = self.resolve(rec.clone()).await
                    && (!e.is_retryable() || self.still_pending(&rec.id))
                {
                    report.push_error(self.run_error(x, Some(rec.id), None, e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// The PENDING reservations that may have made a platform binding on `x`: those on `x`
    /// among `local`, and for AXYB those of the same area whose X the platform has not named
    /// yet.
    fn pending_for(
        &self,
        x: &str,
        local: &[BindingRecord],
    ) -> Result<Vec<BindingRecord>, PoolError> {
        let mut pending: Vec<BindingRecord> = local
            .iter()
            .filter(|b| b.state == BindingState::Pending)
            .cloned()
            .collect();
        if self.rules.mode == Mode::Axyb {
            let area = self.index().number(x).map(|n| n.area.clone());
            pending.extend(self.store.open_bindings()?.into_iter().filter(|b| {
                b.app == self.name
                    && b.state == BindingState::Pending
                    && b.x.is_empty()
                    && Some(&b.area_code) == area.as_ref()
            }));
        }
        Ok(pending)
    }

    fn still_pending(&self, id: &BindingId) -> bool {
        matches!(self.store.get_binding(id), Ok(Some(b)) if b.state == BindingState::Pending)
    }

    /// The record of a binding found only on the platform.
    fn orphan_record(&self, x: &str, r: &Remote, now: i64) -> BindingRecord {
        let area = self
            .index()
            .number(x)
            .map(|n| n.area.clone())
            .unwrap_or_default();
        BindingRecord {
            id: BindingId::new(),
            app: self.name.clone(),
            mode: self.rules.mode,
            state: BindingState::Active,
            x: x.to_owned(),
            extension: r.extension.clone(),
            y: r.y.clone(),
            party_a: r.a.clone(),
            party_b: r.b.clone(),
            area_code: area,
            subscription_id: Some(r.subscription_id.clone()),
            request_id: None,
            created_at_ms: now,
            updated_at_ms: now,
            expires_at_ms: r.expires_at_ms,
            released_at_ms: None,
            ttl_seconds: r
                .expires_at_ms
                .map_or(0, |t| ((t - now).max(0) / 1000) as u64),
            call_options: Default::default(),
            user_data: None,
            reason: super::super::feed::ADOPTED.into(),
        }
    }

    async fn adopt(&self, x: &str, r: &Remote, now: i64) -> Result<(), PoolError> {
        let rec = self.orphan_record(x, r, now);
        self.write(
            |tx, _| Ok(tx.insert_binding(&rec)?),
            |index, ()| index.occupy(&records::occupant(&rec), now),
        )
        .await?;
        if rec.expires_at_ms.is_some() {
            self.deadlines.notify_one();
        }
        Ok(())
    }

    /// Applies the platform's values to a local binding, re-filing its slot if parties moved.
    async fn correct(&self, b: &BindingRecord, fixed: &BindingRecord) -> Result<(), PoolError> {
        let now = self.clock.now_ms();
        self.write(
            |tx, _| {
                if tx.get_binding(&b.id)?.as_ref() != Some(b) {
                    return Ok(false); // changed meanwhile; the next run looks again
                }
                tx.put_binding(fixed)?;
                Ok(b.state.holds_slot())
            },
            |index, &refile| {
                if refile {
                    index.vacate(&records::occupant(b), None, now);
                    index.occupy(&records::occupant(fixed), now);
                }
            },
        )
        .await?;
        Ok(())
    }

    /// A number the platform says is not the app's: out of rotation for good, its local
    /// bindings freed (they cannot exist upstream).
    async fn retire_number(&self, x: &str) -> Result<(), PoolError> {
        tracing::warn!(app = %self.name, number = x, "the platform does not know this number; marking it removed");
        for b in self.store.bindings_on(&self.name, x)? {
            self.transition(&b.id, BindingState::Released, |_| {})
                .await?;
        }
        let now = self.clock.now_ms();
        self.write(
            |tx, _| {
                if let Some(r) = tx.get_number(&self.name, x)? {
                    tx.put_number(&NumberRecord {
                        state: NumberState::Removed,
                        updated_at_ms: now,
                        ..r
                    })?;
                }
                Ok(())
            },
            |index, ()| index.remove_number(x),
        )
        .await
    }
}

/// Whether a local binding is this platform binding: the same subscription, and for AXYB the
/// same Y too (one AX subscription can carry several YB relations, each a binding here).
fn same_binding(b: &BindingRecord, r: &Remote) -> bool {
    b.subscription_id.as_deref() == Some(r.subscription_id.as_str())
        && (b.mode != Mode::Axyb || b.y == r.y)
}

/// Whether platform binding `r` on `x` is what PENDING reservation `p` asked for: the same X
/// (an AXYB reservation has none until the platform names it), parties and extension.
fn is_bind_of(p: &BindingRecord, x: &str, r: &Remote) -> bool {
    (p.x == x || (p.mode == Mode::Axyb && p.x.is_empty()))
        && p.party_a == r.a
        && p.party_b == r.b
        && p.extension == r.extension
}

/// The local record with the platform's parties, extension, Y and deadline, if any differ.
fn corrected(b: &BindingRecord, r: &Remote) -> Option<BindingRecord> {
    let mut fixed = b.clone();
    fixed.party_a = r.a.clone();
    if r.b.is_some() {
        fixed.party_b = r.b.clone();
    }
    if r.extension.is_some() {
        fixed.extension = r.extension.clone();
    }
    if r.y.is_some() {
        fixed.y = r.y.clone();
    }
    if let Some(t) = r.expires_at_ms {
        // subscribeTime has whole seconds: only a real difference counts.
        if b.expires_at_ms
            .is_none_or(|local| (local - t).abs() > 1_500)
        {
            fixed.expires_at_ms = Some(t);
        }
    }
    (fixed != *b).then_some(fixed)
}
