//! URI paths of the binding endpoints (binding-api.md §2.0).

pub const AXB: &str = "/rest/caas/relationnumber/partners/v1.0";
pub const AX: &str = "/rest/provision/caas/privatenumber/v1.0";
pub const AX_CALLEE: &str = "/rest/caas/privatenumber/calleenumber/v1.0";
pub const AXE: &str = "/rest/caas/extendnumber/v1.0";
pub const AXE_V2: &str = "/rest/caas/extendnumber/v2.0";
pub const AXE_COUNT: &str = "/rest/caas/virtualnumber/v1.0";
pub const AXYB: &str = "/rest/omp/xyrelationnumber/v1.0";
