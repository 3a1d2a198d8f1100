//! Comparison rules for the PVE network API migration gateway.
//!
//! The gateway in front of pveproxy sends migrated requests (node network
//! API, SDN API) to both the Perl and the Rust backend. This crate decides
//!
//! * whether a request is migrated at all, and which endpoint it is
//!   ([`RuleSet::route`]);
//! * what a difference between the two answers is ([`RuleSet::compare`]):
//!   a [`Comparison`] with a [`Verdict`], an RFC 6902 patch, a stable
//!   fingerprint and the list of representation-only differences;
//! * which differences are mere Perl nondeterminism ([`NoiseModel`]).
//!
//! Rules come from TOML files: shipped defaults (embedded at build time)
//! plus operator files layered on top. See the crate README for the format.
//! The crate is pure logic: no I/O besides the optional rule-file loader, no
//! async runtime.
//!
//! ```
//! use pve_migration_rules::{Exchange, RuleSet, Verdict};
//!
//! let rules = RuleSet::with_defaults();
//! let m = rules.route("GET", "/api2/json/nodes/pve1/network/vmbr0").unwrap();
//! assert_eq!(m.endpoint().id(), "node.network.iface.get");
//! assert_eq!(m.param("iface"), Some("vmbr0"));
//!
//! let ct = [("Content-Type", "application/json;charset=UTF-8")];
//! let perl = Exchange::new(200, br#"{"data":{"iface":"vmbr0","mtu":"9000","autostart":1}}"#)
//!     .with_headers(&ct);
//! let rust = Exchange::new(200, br#"{"data":{"autostart":true,"mtu":9000,"iface":"vmbr0"}}"#)
//!     .with_headers(&ct);
//! let cmp = rules.compare(m.endpoint(), m.format(), &perl, &rust, None);
//! assert_eq!(cmp.verdict, Verdict::TypeOnly);
//! assert!(cmp.patch.is_empty());
//! assert_eq!(cmp.type_only.len(), 2);
//! ```

mod bodyrules;
mod compare;
mod config;
mod diff;
mod doc;
mod endpoint;
mod error;
pub mod fingerprint;
mod noise;
pub mod normalise;
mod pairwalk;
mod patterns;
mod pointer;
mod route;

use std::collections::HashMap;
use std::path::Path;

pub use compare::{Comparison, CriticalKind, Exchange, SkipReason, Verdict};
pub use endpoint::{Endpoint, EndpointClass, Method, PatternKind, PatternRule, SortRule};
pub use error::{Error, RuleError};
pub use json_patch::{Patch, PatchOperation};
pub use noise::NoiseModel;
pub use normalise::{PairReport, TypeOnlyHit, TypeOnlyKind};
pub use pointer::{PointerError, PointerPattern};
pub use route::{ApiFormat, MAX_PARAMS, MAX_SEGMENTS, Params, RouteMatch};

/// The shipped default rule files, in load order: `(name, contents)`.
pub const DEFAULT_FILES: &[(&str, &str)] = &[
    (
        "defaults/node-network.toml",
        include_str!("../defaults/node-network.toml"),
    ),
    ("defaults/sdn.toml", include_str!("../defaults/sdn.toml")),
];

/// The routing table and comparison rules. Immutable once built; `Send +
/// Sync`, share it with an `Arc`.
#[derive(Debug)]
pub struct RuleSet {
    endpoints: Vec<Endpoint>,
    by_id: HashMap<String, usize>,
    router: route::Router,
}

impl RuleSet {
    /// The shipped defaults only.
    pub fn with_defaults() -> Self {
        match Self::load_without_defaults(DEFAULT_FILES) {
            Ok(rules) => rules,
            // The defaults are validated by the test suite.
            Err(e) => panic!("embedded default rules are invalid: {e}"),
        }
    }

    /// The shipped defaults with operator files layered on top, in order.
    /// Each layer is `(file name used in errors, TOML text)`.
    ///
    /// # Errors
    /// Returns the first problem found in a layer (syntax, unknown key, bad
    /// pointer, regex, method, path or class, duplicate id in one file,
    /// route conflict), naming the file, endpoint and key.
    pub fn load(layers: &[(&str, &str)]) -> Result<Self, RuleError> {
        let mut files = DEFAULT_FILES.to_vec();
        files.extend_from_slice(layers);
        Self::load_without_defaults(&files)
    }

    /// Only the given files, without the shipped defaults.
    ///
    /// # Errors
    /// As [`RuleSet::load`].
    pub fn load_without_defaults(files: &[(&str, &str)]) -> Result<Self, RuleError> {
        let (endpoints, router) = config::build(files)?;
        let by_id = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Ok(Self {
            endpoints,
            by_id,
            router,
        })
    }

    /// The shipped defaults with the rule files at `paths` layered on top.
    ///
    /// # Errors
    /// Fails when a file cannot be read or is invalid (see [`RuleSet::load`]).
    pub fn from_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self, Error> {
        let mut texts = Vec::with_capacity(paths.len());
        for p in paths {
            let p = p.as_ref();
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.to_owned(),
                source,
            })?;
            texts.push((p.display().to_string(), text));
        }
        let layers: Vec<(&str, &str)> = texts
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        Ok(Self::load(&layers)?)
    }

    /// Routes a request. `path` is the request path without the query
    /// string (a query is ignored anyway). Returns `None` when the request
    /// is not migrated. Allocation-free.
    pub fn route<'a>(&'a self, method: &str, path: &'a str) -> Option<RouteMatch<'a>> {
        let (index, format, values) = self.router.lookup(method, path)?;
        Some(route::make_match(&self.endpoints[index], format, values))
    }

    /// The endpoint with id `id` (enabled or not).
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.by_id.get(id).map(|&i| &self.endpoints[i])
    }

    /// All endpoints, in definition order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter()
    }

    /// Compares the Perl and Rust exchanges of one request to `endpoint`.
    /// `noise` classifies differences at learned nondeterministic pointers.
    /// Never panics, whatever the bodies contain.
    pub fn compare(
        &self,
        endpoint: &Endpoint,
        format: ApiFormat,
        perl: &Exchange<'_>,
        rust: &Exchange<'_>,
        noise: Option<&NoiseModel>,
    ) -> Comparison {
        endpoint.compare(format, perl, rust, noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<RuleSet>();
        check::<NoiseModel>();
        check::<Comparison>();
    }
}
