//! `xpool.v1.CallService`: thin handlers over the call log — call records, call events and
//! SMS, each listing filtered and paged alike.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::access;
use super::convert_calls::{CallPage, event_position, next_event_cursor};
use super::pb;
use super::pb::call_service_server::CallService;
use crate::auth::{Access, Caller};
use crate::calls::{CallFilter, CallId, CallLog, EventCursor};
use crate::lifecycle::{Pool, PoolError};

/// The call log's read API.
#[derive(Debug)]
pub struct Calls {
    calls: Arc<CallLog>,
    /// Knows the configured apps: a filter naming another is NOT_FOUND.
    pool: Arc<Pool>,
}

impl Calls {
    pub fn new(calls: Arc<CallLog>, pool: Arc<Pool>) -> Self {
        Calls { calls, pool }
    }

    /// Refuses a filter on an app that is not configured (its listing would be empty
    /// forever), and a caller who may not read the app (without an app filter: every app).
    fn check_app(&self, caller: &Caller, filter: &CallFilter) -> Result<(), PoolError> {
        match &filter.app {
            Some(app) => {
                // Any replica lists any app's records from its copy (cluster mode).
                self.pool.check_configured(app)?;
                caller.require(Access::Read(app))
            }
            None => caller.require(Access::ReadAll),
        }
    }
}

#[tonic::async_trait]
impl CallService for Calls {
    async fn list_call_records(
        &self,
        req: Request<pb::ListCallRecordsRequest>,
    ) -> Result<Response<pb::ListCallRecordsResponse>, Status> {
        let caller = access::caller(&req)?;
        let CallPage {
            filter,
            after,
            limit,
            filters,
        } = CallPage::<CallId>::try_from(req.into_inner())?;
        self.check_app(&caller, &filter)?;
        let (page, more) = self.calls.list_calls(&filter, after, limit)?;
        let next_page_token = match page.last() {
            Some(last) if more => filters.token(&last.id.to_string()),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCallRecordsResponse {
            call_records: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn list_call_events(
        &self,
        req: Request<pb::ListCallEventsRequest>,
    ) -> Result<Response<pb::ListCallEventsResponse>, Status> {
        let caller = access::caller(&req)?;
        let CallPage {
            filter,
            after,
            limit,
            filters,
        } = CallPage::<EventCursor>::try_from(req.into_inner())?;
        self.check_app(&caller, &filter)?;
        let (page, more) = self.calls.list_events(&filter, after, limit)?;
        let next_page_token = match next_event_cursor(after, &page) {
            Some(cursor) if more => filters.token(&event_position(&cursor)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCallEventsResponse {
            call_events: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn list_messages(
        &self,
        req: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let caller = access::caller(&req)?;
        let CallPage {
            filter,
            after,
            limit,
            filters,
        } = CallPage::<CallId>::try_from(req.into_inner())?;
        self.check_app(&caller, &filter)?;
        let (page, more) = self.calls.list_messages(&filter, after, limit)?;
        let next_page_token = match page.last() {
            Some(last) if more => filters.token(&last.id.to_string()),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListMessagesResponse {
            messages: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}
