//! The PrivateNumber platform's wire contract (binding-api.md, notifications.md): authentication
//! digests, result codes, number formats, the JSON bodies of every binding endpoint, and the
//! bodies the platform pushes to the customer ([`push`]).
//!
//! Both sides of the wire use this module: the client in `upstream` signs requests and decodes
//! responses with it, and the simulator in `sim` verifies and answers with it. It holds no state
//! and knows nothing of either side.

pub mod auth;
pub mod codes;
mod de;
pub mod number;
pub mod options;
pub mod paths;
pub mod push;
pub mod time;
pub mod wire;

use serde::{Deserialize, Serialize};

/// The binding mode of a platform application; an app can only call its own mode's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    Ax,
    Axb,
    Axe,
    Axyb,
    /// The platform stores no bindings in X mode; it asks the customer on each call.
    X,
}

impl Mode {
    pub const ALL: [Mode; 5] = [Mode::Ax, Mode::Axb, Mode::Axe, Mode::Axyb, Mode::X];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ax => "AX",
            Mode::Axb => "AXB",
            Mode::Axe => "AXE",
            Mode::Axyb => "AXYB",
            Mode::X => "X",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown mode {s:?} (expected AX, AXB, AXE, AXYB or X)"))
    }
}
