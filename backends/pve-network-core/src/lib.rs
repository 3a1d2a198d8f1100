//! The Proxmox VE node network model as a library: `/etc/network/interfaces`
//! read and written the way PVE does, and the `/nodes/{node}/network` API
//! operations as pure functions answering in PVE's wire format.
//!
//! * [`parse`](mod@parse) / [`write`](mod@write): read and write the interfaces file exactly like
//!   PVE (`PVE::Network::Interfaces`), into a Perl-shaped [`model`].
//! * [`links`]: the kernel's view (`ip -details -json link show`): which NICs
//!   exist, which links are up, altnames; what the parser needs for `exists`
//!   and `active`, and what the post-apply verification compares against.
//! * [`diff`]: the `changes` text (`diff -b -N -u` of the file and its pending
//!   copy `interfaces.new`).
//! * [`schema`]: PVE's JSON-schema parameter checks and their messages.
//! * [`verify`]: the kernel compared with the configuration after an apply.
//! * [`api`]: the API operations (list/get/create/update/delete/revert/apply)
//!   as pure functions over the two files' contents, with PVE's validation and
//!   messages, returning the answer and the file change to make.
//! * [`wire`]: the one canonical rendering of answers and errors in Perl's
//!   wire format (`{"data":…}`, strings where Perl gives strings, flags `1`,
//!   extjs envelopes, reason phrases).
//! * [`params`]: request parameters from the query string and a form or JSON
//!   body, merged the way pveproxy merges them.
//! * `fs` (cargo feature `fs`): the network lock, reading the files, atomic
//!   replace with fsync and backups on a real (or `--root`ed) host.
//!
//! # Why the model is a property map
//!
//! PVE keeps a parsed file as a hash of hashes and its API hands those hashes
//! out almost unchanged; whether a value went out as `"9000"` or `9000`
//! depends on how Perl stored it, and `PUT` may set any property of the
//! schema. The model therefore keeps, per interface, a map from property name
//! to a [`Value`] that remembers Perl's scalar type. Everything with a fixed
//! vocabulary around it is typed: [`api::Operation`], [`wire::Format`],
//! [`links::Link`], [`api::Host`], the schema.
//!
//! # Wiring it to HTTP
//!
//! Keep a [`NetworkFiles`] (in memory or read from disk) and a [`Host`], call
//! the operation for the request, then either render the [`Outcome`] (status
//! 200) and carry out its [`FileEffect`], or render the [`ApiError`] (its
//! `status`, `message` as reason phrase and `errors` in the body).
//!
//! ```
//! use pve_network_core::{
//!     FileTime, Format, Host, HostState, MutateOptions, NetworkFiles, Params, api, wire,
//! };
//!
//! let host = Host::new("pve", HostState::with_physical(["eno1"], ["lo", "eno1"]));
//! let mut files = NetworkFiles::new(
//!     "auto lo\niface lo inet loopback\n\niface eno1 inet manual\n",
//!     FileTime::from_secs(1_700_000_000),
//! );
//! let params: Params = [
//!     ("iface", "vmbr0"),
//!     ("type", "bridge"),
//!     ("bridge_ports", "eno1"),
//!     ("cidr", "192.0.2.10/24"),
//!     ("autostart", "1"),
//! ]
//! .into_iter()
//! .map(|(k, v)| (k.to_string(), v.to_string()))
//! .collect();
//!
//! // POST /nodes/pve/network
//! let created = api::create(&files, &host, &params, MutateOptions::default()).unwrap();
//! assert_eq!(wire::success(Format::Json, &created).body, r#"{"data":null}"#);
//! assert!(files.commit(&created, FileTime::from_secs(1_700_000_060)));
//!
//! // GET /nodes/pve/network: the pending file is read, `changes` is the diff
//! let listed = api::list(&files, &host, &Params::new()).unwrap();
//! assert!(listed.changes.as_deref().unwrap().contains("+auto vmbr0\n"));
//! let body = wire::success(Format::Json, &listed).body;
//! assert!(body.contains(r#""bridge_fd":"0""#) && body.contains(r#""netmask":"24""#));
//!
//! // GET /nodes/pve/network/vmbr9
//! let err = api::get(&files, &host, "vmbr9", &Params::new()).unwrap_err();
//! let answer = wire::error(Format::Json, &err);
//! assert_eq!((answer.status, answer.reason.as_str()), (400, "Parameter verification failed."));
//! assert_eq!(
//!     answer.body,
//!     r#"{"data":null,"errors":{"iface":"interface does not exist"},"message":"Parameter verification failed.\n"}"#
//! );
//! ```

pub mod api;
pub mod diff;
#[cfg(feature = "fs")]
pub mod fs;
pub mod links;
pub mod model;
pub mod params;
pub mod parse;
pub mod schema;
pub mod verify;
pub mod wire;
pub mod write;

pub use api::{
    ApiError, ApplyRequest, FileEffect, FileState, Host, Links, MutateOptions, NetworkFiles,
    Operation, Outcome, Params, ResponseData, TaskInfo,
};
pub use diff::{FileTime, interfaces_changes, unified_diff, utc_civil};
pub use links::{HostState, Link, LinksError};
pub use model::{Config, Iface, Value};
pub use parse::parse_interfaces;
pub use wire::{Format, WireResponse};
pub use write::{WriteError, WriteOptions, write_interfaces};
