//! The SDN core of the simulator: PVE's `/etc/pve/sdn` configuration and the
//! `/cluster/sdn` API, without HTTP.
//!
//! * [`section`]: the section config files (`zones.cfg`, `vnets.cfg`,
//!   `subnets.cfg`, `controllers.cfg`, `ipams.cfg`, `dns.cfg`) and
//!   `.running-config`, read and written like PVE;
//! * [`schema`]: which properties each object type has;
//! * [`api`]: the operations with PVE's checks and messages, pending vs
//!   running views included;
//! * [`render`]: the answers in the Perl and the Rust flavour.
//!
//! # Wiring it to HTTP
//!
//! Read the directory into [`SdnFiles`], call the operation, render the
//! outcome's [`Out`] and write its files (unless it is a dry run) — or render
//! the [`ApiError`](crate::network::ApiError) like the network API's.
//!
//! ```
//! use pve_sim::network::{Flavour, MutateOptions};
//! use pve_sim::sdn::{SdnFiles, api};
//!
//! let mut files = SdnFiles::default();
//! let p = |kv: &[(&str, &str)]| -> api::SdnParams {
//!     kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
//! };
//!
//! // POST /cluster/sdn/zones
//! let created = api::zone_create(
//!     &files,
//!     &p(&[("zone", "lab"), ("type", "vlan"), ("bridge", "vmbr0")]),
//!     MutateOptions::default(),
//! )
//! .unwrap();
//! assert!(files.commit(&created));
//!
//! // POST /cluster/sdn/vnets
//! let vnet = api::vnet_create(
//!     &files,
//!     &p(&[("vnet", "v10"), ("zone", "lab"), ("tag", "10"), ("vlanaware", "1")]),
//!     MutateOptions::default(),
//! )
//! .unwrap();
//! files.commit(&vnet);
//!
//! // GET /cluster/sdn/vnets?pending=1: not applied yet
//! let listed = api::vnets_list(&files, &p(&[("pending", "1")])).unwrap();
//! let rust = listed.data.render(&Flavour::rust());
//! assert!(rust.contains(r#""state":"new""#) && rust.contains(r#""vlanaware":true"#));
//! let perl = listed.data.render(&Flavour::perl(1));
//! assert!(perl.contains(r#""vlanaware":1"#));
//!
//! // a second zone with the same id
//! let err = api::zone_create(
//!     &files,
//!     &p(&[("zone", "lab"), ("type", "simple")]),
//!     MutateOptions::default(),
//! )
//! .unwrap_err();
//! assert_eq!(err.status, 500);
//! assert_eq!(
//!     err.message,
//!     "create sdn zone object failed: error during cfs-locked 'file-sdn__running-config' \
//!      operation: sdn zone object ID 'lab' already defined"
//! );
//! ```

pub mod api;
pub mod render;
pub mod schema;
pub mod section;

pub use api::{SdnFile, SdnFiles, SdnOutcome, SdnParams};
pub use render::Out;
pub use schema::Section;
pub use section::{RunningConfig, SdnObject, SdnValue, SectionConfig};
