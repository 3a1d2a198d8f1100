//! pve-network-migration: an HTTPS gateway in front of pveproxy that moves the
//! Proxmox VE network API from Perl to Rust one node at a time.
//!
//! The request path is documented stage by stage in [`stack`]; the
//! configuration in [`config`]; the listener and connection handling in
//! [`server`].

pub mod access;
pub mod admin;
pub mod body;
pub mod client;
pub mod config;
pub mod contract;
pub mod control;
pub mod demo;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod listen;
pub mod logfmt;
pub mod metrics;
pub mod phase;
pub mod proxy;
pub mod redact;
pub mod server;
pub mod stack;
pub mod telemetry;
pub mod trace;
pub mod upstream;

pub use config::{Config, ConfigError, Overrides};
pub use phase::Phase;
pub use server::{Gateway, StartError};
