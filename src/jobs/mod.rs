//! Background work. Every job has the same shape: `run(self, cancel)` loops on
//! `select! { cancel, tick }`, a failed round logs and continues.

mod expiry;
mod reconcile;
mod resolver;
mod retention;

pub use expiry::Expiry;
pub use reconcile::{ReconcileWorker, ScheduledReconcile};
pub use resolver::Resolver;
pub use retention::{CallLogRetention, Retention};
