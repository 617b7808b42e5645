//! What the binary adds to the daemon library: `serve` (signals, and the embedded default's
//! in-process simulator), the `bench` load generator, the `store` tools and the `reconcile`
//! client.

pub mod bench;
pub mod embedded;
pub mod health;
pub mod reconcile;
pub mod serve;
pub mod store;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// Adds `authorization: Bearer <token>` to every call of a client, when a token is given
/// (`--token` / `XPOOL_TOKEN`).
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// `None` when no token is given; an error if the token cannot be sent as metadata.
    pub fn new(token: Option<&str>) -> anyhow::Result<Bearer> {
        let value = token
            .map(|token| {
                format!("Bearer {}", token.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| anyhow::anyhow!("the token has characters metadata cannot carry"))
            })
            .transpose()?;
        Ok(Bearer(value))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}
