//! pve-network-rs: the Rust implementation of a Proxmox VE node's network
//! API, a drop-in for the Perl one at wire parity.
//!
//! * [`api`]: one request the way pveproxy handles it, step by step, on top
//!   of the network model of [`pve_network_core`];
//! * [`auth`]: tickets, CSRF tokens, API tokens and ACLs from `/etc/pve`;
//! * [`guard`]: the node's migration phase decides which real writes the
//!   backend carries out (defence in depth behind the gateway);
//! * [`apply`], [`worker`], [`task`]: apply as a PVE task in a process of its
//!   own — backup, rename, `ifreload -a`, kernel check — with PVE's UPID,
//!   task log and task lists;
//! * [`server`]: HTTPS (HTTP/1.1 and h2) with pveproxy's response framing;
//! * [`config`]: the daemon's flags and configuration file;
//! * [`paths`], [`links`], [`diff`], [`snapshot`]: the host's files (under
//!   `--root`), the kernel's links, the pending-changes diff, and the parse
//!   kept until the files change.

pub mod api;
pub mod apply;
pub mod auth;
pub mod config;
pub mod diff;
pub mod guard;
pub mod links;
pub mod paths;
pub mod server;
pub mod snapshot;
pub mod task;
pub mod worker;
