//! What a `numStatus` push changed in an app's pool.

/// What one `numStatus` push changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub changed: u32,
    pub unchanged: u32,
    /// Numbers that are not the app's, or codes the contract does not list.
    pub skipped: u32,
}
