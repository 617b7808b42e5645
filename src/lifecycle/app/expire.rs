//! Taking one binding out of service at its deadline, and moving deadlines (UpdateBinding).

use std::sync::Arc;

use super::AppPool;
use crate::lifecycle::error::{PoolError, Reason};
use crate::platform::Mode;
use crate::platform::wire::{AxbModifyRequest, AxeModifyRequest, TimeUnit};
use crate::store::{BindingId, BindingRecord, BindingState};

impl AppPool {
    /// Takes one ACTIVE binding past its deadline out of service.
    pub(in crate::lifecycle) async fn expire(
        self: &Arc<Self>,
        rec: BindingRecord,
        defensive_unbind: bool,
    ) -> Result<(), PoolError> {
        if rec.mode == Mode::Ax {
            // The platform never expires AX bindings: unbind it ourselves.
            self.release(&rec, BindingState::Expired).await?;
            return Ok(());
        }
        let only_yb = self.shares_subscription(&rec);
        let expired = self
            .transition(&rec.id, BindingState::Expired, |_| {})
            .await?;
        if defensive_unbind && let Some(client) = &self.client {
            // Best effort: the platform has expired it already, or will; "not found" is success.
            self.cleanup.push(&self.name, client, expired, only_yb);
        }
        Ok(())
    }

    /// Gives an ACTIVE binding a new lifetime counted from now (0 = none), on the platform where
    /// the mode allows it, and moves its deadline in the store.
    pub(in crate::lifecycle) async fn update_ttl(
        &self,
        id: BindingId,
        ttl_seconds: u64,
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
        self.rules
            .check_ttl(ttl_seconds)
            .map_err(|why| PoolError::invalid("ttl", why))?;
        if let (Some(client), Some(sub)) = (&self.client, rec.subscription_id.clone()) {
            let result = match rec.mode {
                Mode::Axb => {
                    let req = AxbModifyRequest {
                        subscription_id: sub,
                        duration: Some(ttl_seconds),
                        ..Default::default()
                    };
                    client.axb_modify(&req).await
                }
                Mode::Axe => {
                    let req = AxeModifyRequest {
                        subscription_id: Some(sub),
                        time_unit: Some(TimeUnit::Minutes),
                        bind_expired_time: Some(ttl_seconds / 60),
                        ..Default::default()
                    };
                    client.axe_modify(&req).await
                }
                // AX bindings have no lifetime on the platform: the deadline is ours alone.
                _ => Ok(()),
            };
            result.map_err(|e| self.upstream_error(&e))?;
        }
        let now = self.clock.now_ms();
        let updated = self
            .transition_in_place(&id, |b| {
                b.ttl_seconds = ttl_seconds;
                b.expires_at_ms =
                    (ttl_seconds > 0).then(|| now.saturating_add(ttl_seconds as i64 * 1000));
            })
            .await?;
        self.deadlines.notify_one();
        Ok(updated)
    }
}
