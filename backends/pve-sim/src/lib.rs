//! pve-sim: a simulated pveproxy serving the Proxmox VE network API with
//! Perl's conventions (or, as the `rust` flavour, the shape of the Rust port),
//! used by the gateway's tests, benchmarks and demo.
//!
//! * [`network`]: the interfaces file and the network API as pure functions
//!   (the `pve-network-core` library) with the simulator's renderings;
//! * [`sdn`]: the SDN configuration (`/etc/pve/sdn`) and the `/cluster/sdn`
//!   API as pure functions;
//! * [`server`]: the TLS listener, routing, request log and counters;
//! * [`faults`]: misbehaviour on command (latency, errors, resets, …), set
//!   at start, through [`SimHandle::set_faults`] or the [`control`] endpoint;
//! * [`auth`]: tickets, CSRF tokens and API tokens;
//! * [`respond`]: pveproxy's response format (headers, envelopes, reason phrases).
//!
//! The simulator plays the Perl backend ([`Flavor::Perl`], default) or the
//! Rust port ([`Flavor::Rust`]): the same data and checks, different JSON
//! (types, key order) and the Rust side honours `X-PVE-Dry-Run: 1`.

pub mod auth;
mod conn;
pub mod control;
pub mod faults;
mod netapi;
pub mod network;
mod render;
pub mod respond;
pub mod sdn;
mod sdnapi;
pub mod server;
mod ws;

pub use faults::{Fault, FaultKind, FaultScope};
pub use server::{Flavor, SimConfig, SimHandle, start};

/// A small but realistic node: two NICs, a bond, a VLAN-aware bridge, a VLAN.
pub const EXAMPLE_INTERFACES: &str = "\
auto lo
iface lo inet loopback

iface eno1 inet manual

iface eno2 inet manual

auto bond0
iface bond0 inet manual
\tbond-slaves eno1 eno2
\tbond-miimon 100
\tbond-mode 802.3ad
\tbond-xmit-hash-policy layer3+4

auto vmbr0
iface vmbr0 inet static
\taddress 192.168.200.134/24
\tgateway 192.168.200.2
\tbridge-ports bond0
\tbridge-stp off
\tbridge-fd 0
\tbridge-vlan-aware yes
\tbridge-vids 2-4094

auto vmbr0.50
iface vmbr0.50 inet static
\taddress 10.50.0.2/24

source /etc/network/interfaces.d/*
";
