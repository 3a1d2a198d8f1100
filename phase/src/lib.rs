//! Migration phases, ordered from "Perl does everything" to "Rust does everything":
//! the vocabulary the gateway and the Rust backend share (docs/operators-guide.md,
//! "Phases").

use std::fmt;
use std::str::FromStr;

/// How far a node's network API has moved to the Rust backend.
///
/// The order is meaningful: `phase >= Phase::RustBasicWrite` means Rust serves
/// configuration writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Perl serves everything; the Rust backend is not contacted.
    PerlOnly,
    /// Perl serves; reads are mirrored to Rust and writes sent to it as dry-runs.
    Shadow,
    /// Rust serves reads (Perl as fallback and mirror); Perl serves writes.
    RustReadOnly,
    /// Rust serves reads and configuration writes; Perl applies.
    RustBasicWrite,
    /// Rust serves everything, including apply.
    RustFull,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::PerlOnly,
        Phase::Shadow,
        Phase::RustReadOnly,
        Phase::RustBasicWrite,
        Phase::RustFull,
    ];

    /// The name used in configuration, flags, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PerlOnly => "perl-only",
            Phase::Shadow => "shadow",
            Phase::RustReadOnly => "rust-read-only",
            Phase::RustBasicWrite => "rust-basic-write",
            Phase::RustFull => "rust-full",
        }
    }

    /// One level down (`previous` trip target); `perl-only` stays `perl-only`.
    pub fn previous(self) -> Phase {
        match self {
            Phase::PerlOnly | Phase::Shadow => Phase::PerlOnly,
            Phase::RustReadOnly => Phase::Shadow,
            Phase::RustBasicWrite => Phase::RustReadOnly,
            Phase::RustFull => Phase::RustBasicWrite,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown phase '{0}' (expected one of: perl-only, shadow, rust-read-only, rust-basic-write, rust-full)"
)]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_holds() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), p);
        }
        assert!(Phase::RustFull > Phase::RustBasicWrite);
        assert_eq!(Phase::RustReadOnly.previous(), Phase::Shadow);
        let err = "rust".parse::<Phase>().unwrap_err();
        assert!(err.to_string().contains("rust-read-only"));
    }
}
