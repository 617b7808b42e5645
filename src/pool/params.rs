//! The pool's requests, already checked for shape by the gRPC layer; mode-specific checks are in
//! `AppPool::validate`.

use crate::store::{BindingId, BindingState};

/// A request for a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindParams {
    pub app: String,
    pub party_a: String,
    pub party_b: Option<String>,
    pub area_code: Option<String>,
    pub any_area: bool,
    /// 0 = never expires.
    pub ttl_seconds: u64,
    pub request_id: Option<String>,
    pub x_number: Option<String>,
    pub extension: Option<String>,
    /// The platform's callDirection: 0 both ways, 1 only A calls B, 2 only B calls A.
    pub call_direction: u8,
    pub record: bool,
    pub max_call_minutes: u32,
    pub user_data: Option<String>,
}

/// How a caller names a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingKey {
    Id(BindingId),
    Request { app: String, request_id: String },
}

/// ListBindings filters; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub app: Option<String>,
    /// Matches party A or B.
    pub party: Option<String>,
    pub x_number: Option<String>,
    pub state: Option<BindingState>,
}

/// Per-area counts of an app's pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AreaStats {
    pub area_code: String,
    pub total: u32,
    /// Numbers carrying at least one live binding.
    pub bound: u32,
    /// Numbers a Bind could get now.
    pub free: u32,
    pub cooling_down: u32,
    pub draining: u32,
    /// AXE: extensions free now across the area's active numbers.
    pub free_extensions: u64,
}

/// One number with its live state, for ListNumbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberView {
    pub number: String,
    pub area_code: String,
    pub state: crate::store::NumberState,
    pub bindings: u32,
    pub free_extensions: u64,
    pub cooling: u64,
}
