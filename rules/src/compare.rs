//! Comparison of the Perl and the Rust answer to one request.
//!
//! Both exchanges are turned into envelopes and normalised (see
//! [`crate::normalise`]), then diffed from the normalised Perl envelope to
//! the normalised Rust envelope; the patch is the one `json_patch::diff`
//! gives for these two documents. Patch paths
//! therefore read `/status`, `/reason`, `/headers/content-type`,
//! `/body/data/0/mtu` or `/body_raw/sha256`.
//!
//! Verdict precedence: `critical` > `mismatch` > `noise` (every patch
//! operation lies under a learned noisy pointer) > `type_only` > `match`.

use std::collections::BTreeSet;
use std::fmt;

use json_patch::Patch;
use serde::{Deserialize, Serialize};

use crate::doc::Node;
use crate::endpoint::{Endpoint, EndpointClass};
use crate::fingerprint;
use crate::noise::NoiseModel;
use crate::normalise::{TypeOnlyHit, is_false_flag};
use crate::pairwalk;
use crate::route::ApiFormat;

/// One side's answer, with a buffered body.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// HTTP status code.
    pub status: u16,
    /// HTTP reason phrase, when the client exposes it. pveproxy puts the
    /// error message there (`400 Parameter verification failed.`). Compared
    /// (after trimming trailing whitespace) only when both sides have one.
    pub reason: Option<&'a str>,
    /// Response headers (any case); only those the endpoint lists are compared.
    pub headers: &'a [(&'a str, &'a str)],
    /// The complete body.
    pub body: &'a [u8],
}

impl<'a> Exchange<'a> {
    /// An exchange with no reason phrase and no headers.
    pub fn new(status: u16, body: &'a [u8]) -> Self {
        Self {
            status,
            reason: None,
            headers: &[],
            body,
        }
    }

    /// Sets the reason phrase.
    pub fn with_reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }
}

/// Why a request was not compared (decided by the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A body exceeded the comparison size limit.
    TooLarge,
    /// A backend did not answer in time.
    Timeout,
    /// The comparison queue was full.
    Overloaded,
    /// The method may not be sent to both backends.
    UnsafeMethod,
    /// Not selected by sampling.
    SampledOut,
    /// A backend failed without an HTTP answer (connection error…).
    BackendError,
    /// A write's dry-run copy was not answered before the real write had to
    /// go (`shadow.write_order_ms`): the two saw different states.
    Raced,
}

impl SkipReason {
    /// snake_case name (`"too_large"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::UnsafeMethod => "unsafe_method",
            Self::SampledOut => "sampled_out",
            Self::BackendError => "backend_error",
            Self::Raced => "raced",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a difference between the two answers is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Identical after normalisation.
    Match,
    /// Identical except for Perl scalar representations (listed).
    TypeOnly,
    /// A real difference.
    Mismatch,
    /// Authorisation divergence, or success vs server error on a write/apply.
    Critical,
    /// Differences only at pointers learned to be nondeterministic.
    Noise,
    /// Not compared.
    Skipped(SkipReason),
}

impl Verdict {
    /// snake_case name (`"match"`, `"type_only"`, …, `"skipped"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::TypeOnly => "type_only",
            Self::Mismatch => "mismatch",
            Self::Critical => "critical",
            Self::Noise => "noise",
            Self::Skipped(_) => "skipped",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skipped(r) => write!(f, "skipped ({r})"),
            v => f.write_str(v.as_str()),
        }
    }
}

/// Why a comparison is critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticalKind {
    /// One side succeeded (2xx), the other refused (401/403).
    AuthDivergence,
    /// On a write/apply endpoint one side succeeded, the other failed (5xx).
    WriteServerError,
}

impl CriticalKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthDivergence => "auth_divergence",
            Self::WriteServerError => "write_server_error",
        }
    }
}

/// The result of comparing two exchanges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Endpoint id.
    pub endpoint: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Set when the verdict is `critical`.
    pub critical: Option<CriticalKind>,
    /// Effective Perl status (for extjs failures: the body's `status`).
    pub perl_status: u16,
    /// Effective Rust status.
    pub rust_status: u16,
    /// RFC 6902 patch from the normalised Perl envelope to the normalised
    /// Rust envelope.
    pub patch: Patch,
    /// 16 hex digits identifying "the same difference" (see [`crate::fingerprint`]).
    pub fingerprint: String,
    /// Representation-only differences (not in the patch).
    pub type_only: Vec<TypeOnlyHit>,
    /// Paths of patch operations covered by learned noise.
    pub noise: Vec<String>,
    /// Pointers where pattern rules found different but equivalent values.
    pub masked: Vec<String>,
}

impl Comparison {
    /// A comparison that was not made.
    pub fn skipped(endpoint: &str, reason: SkipReason) -> Self {
        let line = format!("skipped {}", reason.as_str());
        Self {
            endpoint: endpoint.to_owned(),
            verdict: Verdict::Skipped(reason),
            critical: None,
            perl_status: 0,
            rust_status: 0,
            patch: Patch::default(),
            fingerprint: fingerprint::hash_lines(endpoint, std::iter::once(line)),
            type_only: Vec::new(),
            noise: Vec::new(),
            masked: Vec::new(),
        }
    }
}

/// Status used for classification: for extjs the HTTP status is 200 even
/// on failure, and the real one is in the body (`success: 0, status: N`).
fn effective_status(format: ApiFormat, status: u16, body: Option<&Node<'_>>) -> u16 {
    if format == ApiFormat::Extjs
        && status == 200
        && let Some(body) = body
        && body.get("success").is_some_and(is_false_flag)
        && let Some(Node::Number(s)) = body.get("status")
        && let Some(s) = s.as_u64().filter(|s| (100..600).contains(s))
    {
        return s as u16;
    }
    status
}

fn critical(class: EndpointClass, perl: u16, rust: u16) -> Option<CriticalKind> {
    let ok = |s: u16| (200..300).contains(&s);
    let denied = |s: u16| s == 401 || s == 403;
    let server = |s: u16| (500..600).contains(&s);
    if (ok(perl) && denied(rust)) || (ok(rust) && denied(perl)) {
        Some(CriticalKind::AuthDivergence)
    } else if class.is_mutating() && ((ok(perl) && server(rust)) || (ok(rust) && server(perl))) {
        Some(CriticalKind::WriteServerError)
    } else {
        None
    }
}

impl Endpoint {
    /// Compares the Perl and the Rust exchange of one request. Never panics.
    pub fn compare(
        &self,
        format: ApiFormat,
        perl: &Exchange<'_>,
        rust: &Exchange<'_>,
        noise: Option<&NoiseModel>,
    ) -> Comparison {
        let (mut a, mut b) = self.envelope_nodes(perl, rust);
        let perl_status = effective_status(format, perl.status, a.get("body"));
        let rust_status = effective_status(format, rust.status, b.get("body"));
        let mut lines = BTreeSet::new();
        let out = pairwalk::walk(&self.settings, &mut a, &mut b, Some(&mut lines), true);
        drop((a, b));
        let (report, patch, general) = (out.report, out.diff.patch, out.diff.general);

        let noise: Vec<String> = match noise {
            Some(model) => patch
                .iter()
                .zip(&general)
                .filter(|(_, g)| model.is_noisy(&self.id, g))
                .map(|(op, _)| op.path().to_string())
                .collect(),
            None => Vec::new(),
        };
        for (op, g) in patch.iter().zip(&general) {
            lines.insert(format!("{} {g}", fingerprint::op_name(op)));
        }
        let fingerprint = fingerprint::hash_lines(&self.id, lines.into_iter());

        let critical = critical(self.class, perl_status, rust_status);
        let verdict = if critical.is_some() {
            Verdict::Critical
        } else if !patch.is_empty() {
            if noise.len() == patch.len() {
                Verdict::Noise
            } else {
                Verdict::Mismatch
            }
        } else if !report.type_only.is_empty() {
            Verdict::TypeOnly
        } else {
            Verdict::Match
        };

        Comparison {
            endpoint: self.id.clone(),
            verdict,
            critical,
            perl_status,
            rust_status,
            patch,
            fingerprint,
            type_only: report.type_only,
            noise,
            masked: report.masked,
        }
    }
}
