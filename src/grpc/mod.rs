//! The gRPC API: generated types and one file per service, with thin handlers.

mod access;
pub mod binding;
pub mod calls;
mod convert;
mod convert_calls;
mod convert_watch;
mod decode;
mod page;
pub mod pool;
pub mod reconcile;
mod requests;
mod resume;
mod status;
pub mod store;
pub mod watch;

/// Types and service stubs generated from `proto/xpool/v1/`. Their docs are the proto's
/// comments, written for API readers (`call_options.<field>`), not as rustdoc markup.
#[allow(clippy::all, missing_debug_implementations, rustdoc::invalid_html_tags)]
pub mod pb {
    tonic::include_proto!("xpool.v1");

    /// Descriptor set of the API, served by the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("xpool_descriptor");
}

pub use convert::MAX_CALL_MINUTES;
pub use decode::DecodeErrors;
pub use requests::{millis, ttl};
pub use status::reason_of;
