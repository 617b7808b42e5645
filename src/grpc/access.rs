//! The caller of a gRPC call, as the authentication layer ([`crate::auth::layer`]) left it in
//! the request, and the check each handler makes once it knows the app the call is about.

use std::sync::Arc;

use tonic::Request;

use crate::auth::{Access, Caller};
use crate::lifecycle::{PoolError, Reason};

/// The caller of `req`. Without one (the layer did not run) nothing is allowed.
pub fn caller<T>(req: &Request<T>) -> Result<Arc<Caller>, PoolError> {
    req.extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| {
            PoolError::refused(Reason::Unauthenticated, "the call was not authenticated")
        })
}

/// `Ok` with the caller if it may make a call needing `access`.
pub fn require<T>(req: &Request<T>, access: Access<'_>) -> Result<Arc<Caller>, PoolError> {
    let caller = caller(req)?;
    caller.require(access)?;
    Ok(caller)
}
