//! The network core the simulator serves: [`pve_network_core`] (PVE's
//! interfaces handling and the `/nodes/{node}/network` operations in Perl's
//! wire format) plus the simulator's own renderings ([`crate::render`]): the
//! Perl flavour is the core's rendering in a seeded hash order, the typed
//! Rust flavour and its named divergences live only here.
//!
//! The simulated kernel follows the applied file
//! ([`pve_network_core::Links::FromApplied`]).

pub use crate::render::{
    Divergence, Divergences, Flavour, NetworkInterface, RenderError, RenderOutcome, RenderedError,
    UnknownDivergence, render_interface,
};
pub use pve_network_core::*;

#[cfg(test)]
mod tests;
