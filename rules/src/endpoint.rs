//! Endpoints: one migrated API method with its route and comparison rules.
//!
//! An [`Endpoint`] is what a rule file's `[[endpoint]]` entry becomes after
//! validation and layering: an id, an HTTP method, a path template, a class
//! and the normalisation rules applied before the Perl and Rust answers are
//! compared.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pointer::PointerPattern;

/// HTTP methods served by pveproxy's REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl Method {
    /// All methods, in a fixed order.
    pub const ALL: [Method; 4] = [Method::Get, Method::Post, Method::Put, Method::Delete];

    /// Parses an upper-case method name; other methods (HEAD, PATCH, …) are
    /// not part of the PVE API and give `None`.
    pub fn parse(method: &str) -> Option<Self> {
        match method {
            "GET" => Some(Self::Get),
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The method name (`"GET"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an endpoint does, which decides how severe a divergence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointClass {
    /// Reads state; safe to send to both backends.
    Read,
    /// Changes configuration (create, update, delete, revert, lock…).
    Write,
    /// Applies pending configuration (network reload, SDN apply).
    Apply,
}

impl EndpointClass {
    /// `"read"`, `"write"` or `"apply"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Apply => "apply",
        }
    }

    /// True for `write` and `apply`.
    pub fn is_mutating(self) -> bool {
        !matches!(self, Self::Read)
    }
}

impl fmt::Display for EndpointClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sort the array(s) at `pointer`, by the member `by` of each element when
/// given, else by the elements themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortRule {
    /// Where the arrays are (wildcards allowed).
    pub pointer: PointerPattern,
    /// Object member used as the sort key.
    pub by: Option<String>,
}

/// How a nondeterministic value is compared: by shape instead of by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternKind {
    /// Task ids `UPID:node:PID:PSTART:STARTTIME:type:id:user:`; both must be
    /// well formed, node/type/id/user must be equal, the hex fields may differ.
    Upid,
    /// Unified diff text (`changes`): equal once the timestamps on the
    /// `---`/`+++` header lines are masked.
    UnifiedDiff,
    /// Digests: both non-empty hexadecimal strings of the same length.
    Digest,
    /// Both well-formed UUIDs (SDN lock tokens).
    Uuid,
    /// Any two values, as long as both sides have one.
    Present,
    /// Both strings match the rule's `regex`.
    Regex,
}

impl PatternKind {
    /// The name used in rule files (`"upid"`, `"unified-diff"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upid => "upid",
            Self::UnifiedDiff => "unified-diff",
            Self::Digest => "digest",
            Self::Uuid => "uuid",
            Self::Present => "present",
            Self::Regex => "regex",
        }
    }
}

/// A `(pointer, pattern-kind)` rule.
#[derive(Debug, Clone)]
pub struct PatternRule {
    /// Where the values are (wildcards allowed).
    pub pointer: PointerPattern,
    /// How they are compared.
    pub kind: PatternKind,
    pub(crate) regex: Option<regex_lite::Regex>,
}

impl PatternRule {
    /// The regular expression of a `regex` rule.
    pub fn regex(&self) -> Option<&str> {
        self.regex.as_ref().map(regex_lite::Regex::as_str)
    }
}

/// Normalisation settings of an endpoint (see the crate README for the
/// rule-file keys they come from).
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) headers: Vec<String>,
    pub(crate) perl_scalars: bool,
    pub(crate) flags: BTreeSet<String>,
    pub(crate) ignore: Vec<PointerPattern>,
    pub(crate) sort: Vec<SortRule>,
    pub(crate) patterns: Vec<PatternRule>,
    pub(crate) trim: Vec<PointerPattern>,
    /// `ignore`, `trim` and `sort` compiled for use while parsing.
    pub(crate) body: crate::bodyrules::BodyRules,
}

/// One migrated API method: route, class and comparison rules.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub(crate) id: String,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) param_names: Vec<String>,
    pub(crate) class: EndpointClass,
    pub(crate) enabled: bool,
    pub(crate) source: String,
    pub(crate) settings: Settings,
}

impl Endpoint {
    /// Unique id, e.g. `node.network.iface.get`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// HTTP method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Path template below `/api2/{format}`, e.g. `/nodes/{node}/network/{iface}`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Names of the template's parameters, in path order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.param_names.iter().map(String::as_str)
    }

    /// `read`, `write` or `apply`.
    pub fn class(&self) -> EndpointClass {
        self.class
    }

    /// False when a rule file disabled the endpoint (it is then never routed).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Name of the rule file that last defined or changed this endpoint.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Lower-case names of the response headers that are compared.
    pub fn headers(&self) -> &[String] {
        &self.settings.headers
    }

    /// Whether the Perl scalar equivalence is applied.
    pub fn perl_scalars(&self) -> bool {
        self.settings.perl_scalars
    }

    /// Object keys treated as boolean flags (absent ≡ false).
    pub fn flags(&self) -> impl Iterator<Item = &str> {
        self.settings.flags.iter().map(String::as_str)
    }

    /// Body pointers removed before comparison.
    pub fn ignore(&self) -> &[PointerPattern] {
        &self.settings.ignore
    }

    /// Array sort rules.
    pub fn sort_rules(&self) -> &[SortRule] {
        &self.settings.sort
    }

    /// Pattern rules for nondeterministic values.
    pub fn patterns(&self) -> &[PatternRule] {
        &self.settings.patterns
    }

    /// Body pointers whose string values lose trailing whitespace.
    pub fn trim(&self) -> &[PointerPattern] {
        &self.settings.trim
    }
}
