//! UpdateBinding: a new lifetime and changed call options, on the platform first (where the
//! mode allows it), then durable here.

use super::AppPool;
use crate::lifecycle::error::{PoolError, Reason};
use crate::lifecycle::options;
use crate::lifecycle::params::BindingUpdate;
use crate::lifecycle::upstream_calls::{self, Modify};
use crate::platform::Mode;
use crate::platform::options::CallOptions;
use crate::store::{BindingId, BindingRecord, BindingState};
use crate::upstream::CallOpts;

impl AppPool {
    /// Changes an ACTIVE binding: a new lifetime counted from now (0 = none) and call options
    /// (named ones back to the app's default when unset). The platform is asked first; only
    /// what it accepted is written here. Nothing changes when nothing would.
    pub(in crate::lifecycle) async fn update(
        &self,
        id: BindingId,
        update: &BindingUpdate,
    ) -> Result<BindingRecord, PoolError> {
        let rec = self
            .store
            .get_binding(&id)?
            .ok_or_else(|| PoolError::binding_not_found(id))?;
        if rec.state != BindingState::Active {
            let state = format!("{:?}", rec.state).to_uppercase();
            return Err(PoolError::refused(
                Reason::BindingNotActive,
                format!("binding {id} is {}, not active", state.to_lowercase()),
            )
            .with("binding_id", id)
            .with("state", state));
        }
        if rec.mode == Mode::Axyb {
            return Err(PoolError::refused(
                Reason::ModeUnsupported,
                "AXYB bindings cannot be modified on the platform; unbind and bind again",
            )
            .with("mode", rec.mode));
        }
        if let Some(ttl) = update.ttl_seconds {
            self.rules
                .check_ttl(ttl)
                .map_err(|why| PoolError::invalid("ttl", why))?;
        }
        let current = CallOptions::from(rec.call_options.clone());
        let (next, changed) = options::changed(
            &current,
            &update.call_options,
            &self.call_defaults,
            rec.mode,
        )?;
        if update.ttl_seconds.is_none() && changed.is_empty() {
            return Ok(rec);
        }
        if let (Some(client), Some(sub)) = (&self.client, rec.subscription_id.clone()) {
            let modify = Modify {
                subscription_id: sub,
                ttl_seconds: update.ttl_seconds,
                options: &next,
                changed: &changed,
            };
            upstream_calls::modify(client, rec.mode, &modify, CallOpts::default())
                .await
                .map_err(|e| self.upstream_error(&e))?;
        }
        let now = self.clock.now_ms();
        let ttl = update.ttl_seconds;
        let updated = self
            .transition_in_place(&id, |b| {
                if let Some(ttl) = ttl {
                    b.ttl_seconds = ttl;
                    b.expires_at_ms = (ttl > 0).then(|| now.saturating_add(ttl as i64 * 1000));
                }
                // Only the options changed here: a concurrent update of others stays.
                let mut options = CallOptions::from(b.call_options.clone());
                for field in changed {
                    options.copy_field(field, &next);
                }
                b.call_options = options.into();
            })
            .await?;
        if ttl.is_some() {
            self.deadlines.notify_one();
        }
        Ok(updated)
    }
}
