//! `xpool.v1.PoolService`: the admin view of each app's numbers. Changes need the `admin`
//! scope; ListNumbers and GetPoolStats need `read:<app>` (or `bind:<app>`), and ListApps lists
//! the apps the caller may read.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::access;
use super::convert::{NewNumbers, NumberPage, required};
use super::page::{self, Filters};
use super::pb;
use super::pb::pool_service_server::PoolService;
use crate::auth::Access;
use crate::lifecycle::{AddedNumbers, AppPool, NumberView, Pool, PoolError};

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
    fn app(&self, app: &str) -> Result<Arc<AppPool>, PoolError> {
        required("app", app)?;
        self.pool.app(app)
    }
}

fn infos(views: Vec<NumberView>) -> Vec<pb::NumberInfo> {
    views.into_iter().map(Into::into).collect()
}

#[tonic::async_trait]
impl PoolService for Numbers {
    async fn list_apps(
        &self,
        req: Request<pb::ListAppsRequest>,
    ) -> Result<Response<pb::ListAppsResponse>, Status> {
        let caller = access::caller(&req)?;
        let pb::ListAppsRequest {
            page_size,
            page_token,
        } = req.into_inner();
        let filters = Filters::new("ListApps", &[]);
        let after = filters.position(&page_token)?;
        let limit = page::page_size(page_size)?;
        let mut apps: Vec<_> = self
            .pool
            .app_infos()?
            .into_iter()
            .filter(|a| after.as_deref().is_none_or(|after| a.name.as_str() > after))
            .filter(|a| caller.may(&Access::Read(&a.name)))
            .collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let next_page_token = if apps.len() > limit {
            apps.truncate(limit);
            filters.token(&apps[limit - 1].name)
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAppsResponse {
            apps: apps.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn add_numbers(
        &self,
        req: Request<pb::AddNumbersRequest>,
    ) -> Result<Response<pb::AddNumbersResponse>, Status> {
        access::require(&req, Access::Admin)?;
        let NewNumbers { app, numbers } = NewNumbers::try_from(req.into_inner())?;
        let AddedNumbers {
            added,
            updated,
            unchanged,
        } = self.pool.add_numbers(&app, &numbers).await?;
        Ok(Response::new(pb::AddNumbersResponse {
            added: infos(added),
            updated: infos(updated),
            unchanged: infos(unchanged),
        }))
    }

    async fn drain_numbers(
        &self,
        req: Request<pb::DrainNumbersRequest>,
    ) -> Result<Response<pb::DrainNumbersResponse>, Status> {
        access::require(&req, Access::Admin)?;
        let pb::DrainNumbersRequest { app, numbers } = req.into_inner();
        let app = self.app(&app)?;
        let numbers = app.drain_numbers(&numbers).await?;
        Ok(Response::new(pb::DrainNumbersResponse {
            numbers: infos(numbers),
        }))
    }

    async fn undrain_numbers(
        &self,
        req: Request<pb::UndrainNumbersRequest>,
    ) -> Result<Response<pb::UndrainNumbersResponse>, Status> {
        access::require(&req, Access::Admin)?;
        let pb::UndrainNumbersRequest { app, numbers } = req.into_inner();
        let app = self.app(&app)?;
        let numbers = app.undrain_numbers(&numbers).await?;
        Ok(Response::new(pb::UndrainNumbersResponse {
            numbers: infos(numbers),
        }))
    }

    async fn remove_numbers(
        &self,
        req: Request<pb::RemoveNumbersRequest>,
    ) -> Result<Response<pb::RemoveNumbersResponse>, Status> {
        access::require(&req, Access::Admin)?;
        let pb::RemoveNumbersRequest { app, numbers } = req.into_inner();
        let app = self.app(&app)?;
        let removed = app.remove_numbers(&numbers).await?;
        Ok(Response::new(pb::RemoveNumbersResponse {
            removed: i32::try_from(removed).unwrap_or(i32::MAX),
        }))
    }

    async fn list_numbers(
        &self,
        req: Request<pb::ListNumbersRequest>,
    ) -> Result<Response<pb::ListNumbersResponse>, Status> {
        let caller = access::caller(&req)?;
        let NumberPage {
            app,
            area_code,
            after,
            limit,
            filters,
        } = NumberPage::try_from(req.into_inner())?;
        let pool = self.app(&app)?;
        caller.require(Access::Read(&app))?;
        let (page, more) = pool.list_numbers(area_code.as_deref(), after.as_deref(), limit);
        let next_page_token = match page.last() {
            Some(last) if more => filters.token(&last.number),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListNumbersResponse {
            numbers: infos(page),
            next_page_token,
        }))
    }

    async fn get_pool_stats(
        &self,
        req: Request<pb::GetPoolStatsRequest>,
    ) -> Result<Response<pb::GetPoolStatsResponse>, Status> {
        let caller = access::caller(&req)?;
        let pb::GetPoolStatsRequest { app } = req.into_inner();
        let pool = self.app(&app)?;
        caller.require(Access::Read(&app))?;
        let areas = pool.stats();
        Ok(Response::new(pb::GetPoolStatsResponse {
            app,
            areas: areas.into_iter().map(Into::into).collect(),
        }))
    }
}
