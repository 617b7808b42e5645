//! `xpool.v1.PoolService`: the admin view of each app's numbers.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, number_state};
use super::pb;
use super::pb::pool_service_server::PoolService;
use crate::lifecycle::Pool;

/// The pool admin API.
#[derive(Debug)]
pub struct Numbers {
    pool: Arc<Pool>,
}

impl Numbers {
    pub fn new(pool: Arc<Pool>) -> Self {
        Numbers { pool }
    }
}

fn required(field: &'static str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field}: required")))
    } else {
        Ok(())
    }
}

#[tonic::async_trait]
impl PoolService for Numbers {
    async fn add_numbers(
        &self,
        req: Request<pb::AddNumbersRequest>,
    ) -> Result<Response<pb::AddNumbersResponse>, Status> {
        let pb::AddNumbersRequest { app, numbers } = req.into_inner();
        required("app", &app)?;
        if numbers.is_empty() {
            return Err(Status::invalid_argument("numbers: required"));
        }
        let numbers: Vec<(String, String)> = numbers
            .into_iter()
            .map(|pb::NumberSpec { number, area_code }| (number, area_code))
            .collect();
        let (added, updated) = self.pool.app(&app)?.add_numbers(&numbers).await?;
        Ok(Response::new(pb::AddNumbersResponse { added, updated }))
    }

    async fn drain_numbers(
        &self,
        req: Request<pb::DrainNumbersRequest>,
    ) -> Result<Response<pb::DrainNumbersResponse>, Status> {
        let pb::DrainNumbersRequest { app, numbers } = req.into_inner();
        required("app", &app)?;
        let drained = self.pool.app(&app)?.drain_numbers(&numbers).await?;
        Ok(Response::new(pb::DrainNumbersResponse { drained }))
    }

    async fn remove_numbers(
        &self,
        req: Request<pb::RemoveNumbersRequest>,
    ) -> Result<Response<pb::RemoveNumbersResponse>, Status> {
        let pb::RemoveNumbersRequest { app, numbers } = req.into_inner();
        required("app", &app)?;
        let removed = self.pool.app(&app)?.remove_numbers(&numbers).await?;
        Ok(Response::new(pb::RemoveNumbersResponse { removed }))
    }

    async fn list_numbers(
        &self,
        req: Request<pb::ListNumbersRequest>,
    ) -> Result<Response<pb::ListNumbersResponse>, Status> {
        let pb::ListNumbersRequest {
            app,
            area_code,
            page_size,
            page_token,
        } = req.into_inner();
        required("app", &app)?;
        let limit = convert::page_size(page_size)?;
        let all = self
            .pool
            .app(&app)?
            .list_numbers((!area_code.is_empty()).then_some(area_code.as_str()));
        let page: Vec<_> = all
            .iter()
            .filter(|n| page_token.is_empty() || n.number > page_token)
            .take(limit + 1)
            .collect();
        let next = if page.len() > limit {
            page[limit - 1].number.clone()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNumbersResponse {
            numbers: page
                .into_iter()
                .take(limit)
                .map(|n| pb::NumberInfo {
                    number: n.number.clone(),
                    area_code: n.area_code.clone(),
                    state: number_state(n.state).into(),
                    bindings: n.bindings,
                    free_extensions: n.free_extensions.min(u64::from(u32::MAX)) as u32,
                    cooling: n.cooling.min(u64::from(u32::MAX)) as u32,
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn get_pool_stats(
        &self,
        req: Request<pb::GetPoolStatsRequest>,
    ) -> Result<Response<pb::GetPoolStatsResponse>, Status> {
        let pb::GetPoolStatsRequest { app } = req.into_inner();
        required("app", &app)?;
        let areas = self.pool.app(&app)?.stats();
        Ok(Response::new(pb::GetPoolStatsResponse {
            app,
            areas: areas
                .into_iter()
                .map(|a| pb::AreaStats {
                    area_code: a.area_code,
                    total: a.total,
                    bound: a.bound,
                    free: a.free,
                    cooling_down: a.cooling_down,
                    draining: a.draining,
                    free_extensions: a.free_extensions,
                })
                .collect(),
        }))
    }
}
