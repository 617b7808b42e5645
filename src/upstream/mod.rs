//! The PrivateNumber client: signs every request, paces each app with its own rate limiter,
//! stops an app at once when its credentials are rejected, and classifies every result.
//!
//! `AppClient` holds one app's settings, limiter and circuit; `ops` adds one typed method per
//! platform operation; `result` decides what each result code means for the caller. How a call
//! waits for the limiter (priority, longest wait, a slot taken ahead) is a [`CallOpts`] value
//! given to [`AppClient::with_opts`], never ambient task state.

mod breaker;
mod client;
mod error;
pub mod limiter;
mod ops;
pub mod result;
mod secret;

pub use breaker::Circuit;
pub use client::{AppClient, AppSettings, CallOpts, IP_BLACKLIST, Slot, http_client};
pub use error::UpstreamError;
pub use limiter::Priority;
pub use result::ErrorClass;
pub use secret::Secret;
