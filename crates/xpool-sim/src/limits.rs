//! Limits the platform applies in more than one mode.

/// Most AX relations one A may hold (AX and AXYB).
pub(crate) const MAX_X_PER_A: usize = 5;
/// Longest call a binding may allow, minutes (AX and AXB `maxDuration`).
pub(crate) const MAX_CALL_MINUTES: u64 = 1440;
/// Longest binding lifetime, seconds: 90 days (AXB and AXYB `duration`).
pub(crate) const MAX_DURATION_SECONDS: u64 = 7_776_000;
