//! pve-sim: a simulated pveproxy serving the Proxmox VE network API with
//! Perl's conventions (or, as the `rust` flavour, the shape of the Rust port),
//! used by the gateway's tests, benchmarks and demo.

pub mod auth;
pub mod respond;
pub mod server;
mod ws;

pub use server::{Flavor, SimConfig, SimHandle, start};
