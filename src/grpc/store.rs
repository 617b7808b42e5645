//! `xpool.v1.StoreService`: a consistent copy of the store while the daemon serves.

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::access;
use super::pb;
use super::pb::store_service_server::StoreService;
use crate::auth::Access;
use crate::lifecycle::{PoolError, Reason};
use crate::store::{Store, StoreError};

#[derive(Debug)]
pub struct StoreAdmin {
    store: Arc<Store>,
}

impl StoreAdmin {
    pub fn new(store: Arc<Store>) -> Self {
        StoreAdmin { store }
    }
}

#[tonic::async_trait]
impl StoreService for StoreAdmin {
    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        access::require(&req, Access::Admin)?;
        let dir = PathBuf::from(req.into_inner().dir);
        if !dir.is_absolute() {
            return Err(
                PoolError::invalid("dir", "an absolute path on the daemon's machine").into(),
            );
        }
        let info = self.store.backup(&dir).await.map_err(|e| match e {
            StoreError::Conflict(why) => PoolError::refused(Reason::BackupRefused, why),
            e @ StoreError::Unavailable { .. } => PoolError::from(e),
            other => {
                tracing::error!(dir = %dir.display(), error = %other, "backup failed");
                PoolError::internal(format!("backup failed: {other}"))
            }
        })?;
        tracing::info!(dir = %info.path.display(), last_record = info.last_record, bindings = info.bindings, "store backed up");
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Response::new(pb::BackupResponse {
            dir: info.path.display().to_string(),
            last_record: i64::try_from(info.last_record).unwrap_or(i64::MAX),
            bindings: count(info.bindings),
            numbers: count(info.numbers),
        }))
    }
}
