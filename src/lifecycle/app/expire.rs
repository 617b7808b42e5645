//! Taking one binding out of service at its deadline.

use std::sync::Arc;

use super::AppPool;
use crate::lifecycle::error::PoolError;
use crate::platform::Mode;
use crate::store::{BindingRecord, BindingState};

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
}
