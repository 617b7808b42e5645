//! Allocation: which slot (X, extension) a new binding gets, by the app's rules.
//!
//! Pure and synchronous: no store, no platform, no clock of its own (every call takes `now_ms`).
//! `lifecycle` owns an [`Index`] per app, feeds it what the store holds at start-up and every
//! change after, and asks it for a [`Pick`].
//!
//! - `index`: the per-app index — numbers by area, picking without scanning the pool.
//! - `ext`: the extension space of one AXE number, with its cool-down.
//! - `parties`: which Xs each party holds, packed small.
//! - `rules`: an app's allocation rules, the area chain, the lifetime rules.
//! - `stats`: per-number and per-area views for the admin API.

mod ext;
mod index;
mod parties;
mod rules;
mod stats;
mod status;

pub use ext::{ExtChoice, ExtSpace};
pub use index::{Index, MAX_XS_PER_A, NoPick, Num, Pick};
pub use parties::{Holder, pack_number};
pub use rules::{AreaRule, MAX_TTL_SECONDS, Rules, area_order};
pub use stats::{AreaStats, NumberView};
pub use status::NumberStatus;

/// Whether a number may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberState {
    Active,
    /// No new bindings; existing ones live on.
    Draining,
    /// The platform reports it frozen or blacklisted.
    Frozen,
    /// No longer the app's.
    Removed,
}

/// A number as the index is told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Number<'a> {
    pub number: &'a str,
    pub area_code: &'a str,
    pub state: NumberState,
    /// The platform contradicted the index about it: out of rotation until reconciled.
    pub suspect: bool,
    /// What the platform's status pushes last said of it; out of rotation unless normal.
    pub status: NumberStatus,
}

/// The slot a binding holds (or held), as the index sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupant<'a> {
    /// Empty for an AXYB reservation before the platform chose X.
    pub x: &'a str,
    pub extension: Option<&'a str>,
    /// AXYB: the Y the platform chose for B.
    pub y: Option<&'a str>,
    pub party_a: &'a str,
    pub party_b: Option<&'a str>,
    /// The binding holding it (the store's id). X mode keeps it, to route calls by it.
    pub binding: Holder,
}

#[cfg(test)]
mod tests;
