//! `xpool.v1.PoolService`: the admin view of each app's numbers.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{NewNumbers, NumberPage, required};
use super::pb;
use super::pb::pool_service_server::PoolService;
use crate::lifecycle::{AppPool, Pool, PoolError};

/// The pool admin API.
#[derive(Debug)]
pub struct Numbers {
    pool: Arc<Pool>,
}

impl Numbers {
    pub fn new(pool: Arc<Pool>) -> Self {
        Numbers { pool }
    }

    /// The pool of the app a request names.
    fn app(&self, app: &str) -> Result<&Arc<AppPool>, PoolError> {
        required("app", app)?;
        self.pool.app(app)
    }
}

#[tonic::async_trait]
impl PoolService for Numbers {
    async fn add_numbers(
        &self,
        req: Request<pb::AddNumbersRequest>,
    ) -> Result<Response<pb::AddNumbersResponse>, Status> {
        let NewNumbers { app, numbers } = NewNumbers::try_from(req.into_inner())?;
        let (added, updated) = self.pool.add_numbers(&app, &numbers).await?;
        Ok(Response::new(pb::AddNumbersResponse { added, updated }))
    }

    async fn drain_numbers(
        &self,
        req: Request<pb::DrainNumbersRequest>,
    ) -> Result<Response<pb::DrainNumbersResponse>, Status> {
        let pb::DrainNumbersRequest { app, numbers } = req.into_inner();
        let drained = self.app(&app)?.drain_numbers(&numbers).await?;
        Ok(Response::new(pb::DrainNumbersResponse { drained }))
    }

    async fn remove_numbers(
        &self,
        req: Request<pb::RemoveNumbersRequest>,
    ) -> Result<Response<pb::RemoveNumbersResponse>, Status> {
        let pb::RemoveNumbersRequest { app, numbers } = req.into_inner();
        let removed = self.app(&app)?.remove_numbers(&numbers).await?;
        Ok(Response::new(pb::RemoveNumbersResponse { removed }))
    }

    async fn list_numbers(
        &self,
        req: Request<pb::ListNumbersRequest>,
    ) -> Result<Response<pb::ListNumbersResponse>, Status> {
        let NumberPage {
            app,
            area_code,
            after,
            limit,
        } = NumberPage::try_from(req.into_inner())?;
        let all = self.pool.app(&app)?.list_numbers(area_code.as_deref());
        let page: Vec<_> = all
            .iter()
            .filter(|n| after.is_empty() || n.number > after)
            .take(limit + 1)
            .collect();
        let next = if page.len() > limit {
            page[limit - 1].number.clone()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNumbersResponse {
            numbers: page.into_iter().take(limit).map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn get_pool_stats(
        &self,
        req: Request<pb::GetPoolStatsRequest>,
    ) -> Result<Response<pb::GetPoolStatsResponse>, Status> {
        let pb::GetPoolStatsRequest { app } = req.into_inner();
        let areas = self.app(&app)?.stats();
        Ok(Response::new(pb::GetPoolStatsResponse {
            app,
            areas: areas.into_iter().map(Into::into).collect(),
        }))
    }
}
