//! Every binding operation of every mode (binding-api.md §2), typed.

use reqwest::Method;
use serde::Serialize;
use serde::de::IgnoredAny;

use super::client::{AppClient, Call};
use super::error::UpstreamError;
use crate::platform::paths;
use crate::platform::wire::*;

type Result<T> = std::result::Result<T, UpstreamError>;

/// A call without a body.
fn bare(op: &'static str, method: Method, path: &'static str, query: Query) -> Call<'static, ()> {
    Call {
        op,
        method,
        path,
        query,
        body: None,
    }
}

fn with_body<'a, B>(
    op: &'static str,
    method: Method,
    path: &'static str,
    body: &'a B,
) -> Call<'a, B> {
    Call {
        op,
        method,
        path,
        query: Vec::new(),
        body: Some(body),
    }
}

impl AppClient {
    /// A call made for its effect: whatever its answer carries is dropped.
    async fn perform<B: Serialize>(&self, call: Call<'_, B>) -> Result<()> {
        let _: IgnoredAny = self.call(call).await?;
        Ok(())
    }

    // AXB ---------------------------------------------------------------------------------

    pub async fn axb_bind(&self, req: &AxbBindRequest) -> Result<AxbBindResponse> {
        self.call(with_body("axb.bind", Method::POST, paths::AXB, req))
            .await
    }

    /// Unbinds one binding, or every binding on an X.
    pub async fn axb_unbind(&self, which: &AxbUnbind) -> Result<()> {
        self.perform(bare(
            "axb.unbind",
            Method::DELETE,
            paths::AXB,
            which.query(),
        ))
        .await
    }

    pub async fn axb_modify(&self, req: &AxbModifyRequest) -> Result<()> {
        self.perform(with_body("axb.modify", Method::PUT, paths::AXB, req))
            .await
    }

    /// Queries bindings; "no binding" comes back as a `NotFound` error (1012007).
    pub async fn axb_query(&self, which: &AxbQuery) -> Result<AxbQueryResponse> {
        self.call(bare("axb.query", Method::GET, paths::AXB, which.query()))
            .await
    }

    // AX ----------------------------------------------------------------------------------

    pub async fn ax_bind(&self, req: &AxBindRequest) -> Result<AxBindResponse> {
        self.call(with_body("ax.bind", Method::POST, paths::AX, req))
            .await
    }

    /// Unbinds by subscription or by X (`AxSelector::OrigNum` is not a valid unbind selector
    /// on the platform, which ignores origNum).
    pub async fn ax_unbind(&self, which: &AxSelector) -> Result<()> {
        self.perform(bare("ax.unbind", Method::DELETE, paths::AX, which.query()))
            .await
    }

    pub async fn ax_modify(&self, req: &AxModifyRequest) -> Result<()> {
        self.perform(with_body("ax.modify", Method::PUT, paths::AX, req))
            .await
    }

    pub async fn ax_query(&self, which: &AxSelector) -> Result<AxQueryResponse> {
        self.call(bare("ax.query", Method::GET, paths::AX, which.query()))
            .await
    }

    /// Sets the party A reaches when A dials X, for a while.
    pub async fn ax_set_callee(&self, req: &AxSetCalleeRequest) -> Result<()> {
        let call = with_body("ax.set_callee", Method::PUT, paths::AX_CALLEE, req);
        self.perform(call).await
    }

    // AXE ---------------------------------------------------------------------------------

    pub async fn axe_bind(&self, req: &AxeBindRequest) -> Result<AxeBindResponse> {
        self.call(with_body("axe.bind", Method::POST, paths::AXE, req))
            .await
    }

    pub async fn axe_unbind(&self, which: &AxeSelector) -> Result<()> {
        self.perform(bare(
            "axe.unbind",
            Method::DELETE,
            paths::AXE,
            which.query(),
        ))
        .await
    }

    pub async fn axe_modify(&self, req: &AxeModifyRequest) -> Result<()> {
        self.perform(with_body("axe.modify", Method::PUT, paths::AXE, req))
            .await
    }

    /// The v1 query: one binding, with its bind-time lifetime fields.
    pub async fn axe_query_v1(&self, which: &AxeSelector) -> Result<AxeRecord> {
        let resp: AxeQueryV1Response = self
            .call(bare("axe.query_v1", Method::GET, paths::AXE, which.query()))
            .await?;
        Ok(resp.record)
    }

    /// The v2 query: one binding, or one cursor page of every binding on an X.
    pub async fn axe_query_v2(&self, which: &AxeQueryV2) -> Result<AxeQueryV2Response> {
        self.call(bare(
            "axe.query_v2",
            Method::GET,
            paths::AXE_V2,
            which.query(),
        ))
        .await
    }

    /// How many bindings one X, or each X page by page, carries.
    pub async fn axe_binding_count(&self, which: &AxeCountQuery) -> Result<AxeCountResponse> {
        self.call(bare(
            "axe.count",
            Method::GET,
            paths::AXE_COUNT,
            which.query(),
        ))
        .await
    }

    // AXYB (every call also carries app_key in the query string) --------------------------

    fn with_app_key(&self, mut query: Query) -> Query {
        query.insert(0, ("app_key", self.app_key().to_owned()));
        query
    }

    /// Step 1: A gets an X the platform picks.
    pub async fn axyb_bind_ax(&self, req: &AxybAxRequest) -> Result<AxybBindResponse> {
        let mut call = with_body("axyb.bind_ax", Method::POST, paths::AXYB, req);
        call.query = self.with_app_key(Vec::new());
        self.call(call).await
    }

    /// Step 2: B gets a Y under the AX binding.
    pub async fn axyb_bind_yb(&self, req: &AxybYbRequest) -> Result<AxybBindResponse> {
        let mut call = with_body("axyb.bind_yb", Method::POST, paths::AXYB, req);
        call.query = self.with_app_key(Vec::new());
        self.call(call).await
    }

    pub async fn axyb_unbind(&self, which: &AxybUnbind) -> Result<()> {
        let query = self.with_app_key(which.query());
        self.perform(bare("axyb.unbind", Method::DELETE, paths::AXYB, query))
            .await
    }

    pub async fn axyb_query(&self, which: &AxybQuery) -> Result<AxybQueryResponse> {
        let query = self.with_app_key(which.query());
        self.call(bare("axyb.query", Method::GET, paths::AXYB, query))
            .await
    }
}
