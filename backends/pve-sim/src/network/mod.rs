//! The node network core of the simulator: PVE's `/etc/network/interfaces`
//! handling and the `/nodes/{node}/network` API, without HTTP.
//!
//! * [`parse`](mod@parse) / [`write`](mod@write): read and write the interfaces file exactly like
//!   PVE (`PVE::Network::Interfaces`), into a Perl-shaped [`model`].
//! * [`diff`]: the `changes` text (`diff -b -N -u` of the file and its pending
//!   copy `interfaces.new`).
//! * [`api`]: the API operations (list/get/create/update/delete/revert/apply)
//!   as pure functions over the two files' contents, with PVE's validation and
//!   messages.
//! * [`render`]: the JSON bodies in the Perl flavour (pveproxy) and the Rust
//!   flavour (a careful port), the latter with optional named divergences.
//!
//! The simulator's kernel is derived from the applied file: see
//! [`model::HostState`] for which NICs exist and which links are active.
//!
//! # Wiring it to HTTP
//!
//! Keep a [`NetworkFiles`] (in memory or read from disk) and a [`SimHost`],
//! call the operation for the request, then either render the [`Outcome`]
//! (status 200) and [`NetworkFiles::commit`] it, or render the [`ApiError`]
//! (its `status`, `message` as reason phrase and `errors` in the body).
//! Parameters are strings as in a form body; JSON booleans should be passed
//! as `1`/`0` (what PVE's schema accepts).
//!
//! ```
//! use pve_sim::network::{
//!     FileTime, Flavour, MutateOptions, NetworkFiles, Params, SimHost, api,
//! };
//!
//! let host = SimHost::default();
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
//! assert_eq!(created.render(&Flavour::perl(1)), r#"{"data":null}"#);
//! assert!(files.commit(&created, FileTime::from_secs(1_700_000_060)));
//!
//! // GET /nodes/pve/network: the pending file is read, `changes` is the diff
//! let listed = api::list(&files, &host, &Params::new()).unwrap();
//! assert!(listed.changes.as_deref().unwrap().contains("+auto vmbr0\n"));
//! let perl = listed.render(&Flavour::perl(7));
//! assert!(perl.contains(r#""bridge_fd":"0""#) && perl.contains(r#""netmask":"24""#));
//! let rust = listed.render(&Flavour::rust());
//! assert!(rust.contains(r#""bridge_fd":0"#) && rust.contains(r#""netmask":24"#));
//!
//! // GET /nodes/pve/network/vmbr9
//! let err = api::get(&files, &host, "vmbr9", &Params::new()).unwrap_err();
//! let rendered = err.render(&Flavour::rust());
//! assert_eq!((rendered.status, rendered.reason.as_str()), (400, "Parameter verification failed."));
//! assert_eq!(rendered.body, r#"{"data":null,"errors":{"iface":"interface does not exist"}}"#);
//! ```

pub mod api;
pub mod diff;
pub mod model;
pub mod parse;
pub mod render;
pub(crate) mod schema;
pub mod write;

pub use api::{
    ApiError, FileEffect, FileState, MutateOptions, NetworkFiles, Outcome, Params, ResponseData,
    SimHost, TaskInfo,
};
pub use diff::{FileTime, interfaces_changes, unified_diff};
pub use model::{Config, HostState, Iface, Value};
pub use parse::parse_interfaces;
pub use render::{
    Divergence, Divergences, Flavour, NetworkInterface, RenderedError, UnknownDivergence,
    render_interface,
};
pub use write::{WriteError, WriteOptions, write_interfaces};
