//! docs/design.md's phase table as a function: who serves a migrated request, who is
//! mirrored, and whether the mirror gets a dry-run.

use pve_migration_rules::EndpointClass;

use crate::phase::Phase;

/// How one migrated request is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Perl serves; Rust is not contacted.
    Perl,
    /// Perl serves; Rust gets a mirrored copy off the request path,
    /// with `X-PVE-Dry-Run: 1` when the request mutates.
    PerlWithShadow {
        /// The mirror is a dry-run (writes and apply).
        dry_run: bool,
    },
    /// Rust serves a read; Perl answers the same read as the fallback and the
    /// reference the answer is compared with.
    RustRead,
    /// Rust serves a write or an apply alone; Perl is re-sent the request only
    /// when Rust provably never received it; afterwards both are read and compared.
    RustWrite,
}

impl Plan {
    /// The plan for a request of `class` in `phase`.
    pub fn for_request(phase: Phase, class: EndpointClass) -> Plan {
        use EndpointClass::{Apply, Read, Write};
        match (phase, class) {
            (Phase::PerlOnly, _) => Plan::Perl,
            (Phase::Shadow, Read) => Plan::PerlWithShadow { dry_run: false },
            (Phase::Shadow, Write | Apply) => Plan::PerlWithShadow { dry_run: true },
            (Phase::RustReadOnly | Phase::RustBasicWrite | Phase::RustFull, Read) => Plan::RustRead,
            (Phase::RustReadOnly, Write) => Plan::PerlWithShadow { dry_run: true },
            (Phase::RustReadOnly | Phase::RustBasicWrite, Apply) => Plan::Perl,
            (Phase::RustBasicWrite | Phase::RustFull, Write) => Plan::RustWrite,
            (Phase::RustFull, Apply) => Plan::RustWrite,
        }
    }

    /// Which backend answers the client.
    pub fn primary(self) -> &'static str {
        match self {
            Plan::Perl | Plan::PerlWithShadow { .. } => "perl",
            Plan::RustRead | Plan::RustWrite => "rust",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EndpointClass::{Apply, Read, Write};

    /// The phase table of docs/design.md, row by row.
    #[test]
    fn design_table() {
        let rows = [
            (Phase::PerlOnly, [Plan::Perl, Plan::Perl, Plan::Perl]),
            (
                Phase::Shadow,
                [
                    Plan::PerlWithShadow { dry_run: false },
                    Plan::PerlWithShadow { dry_run: true },
                    Plan::PerlWithShadow { dry_run: true },
                ],
            ),
            (
                Phase::RustReadOnly,
                [
                    Plan::RustRead,
                    Plan::PerlWithShadow { dry_run: true },
                    Plan::Perl,
                ],
            ),
            (
                Phase::RustBasicWrite,
                [Plan::RustRead, Plan::RustWrite, Plan::Perl],
            ),
            (
                Phase::RustFull,
                [Plan::RustRead, Plan::RustWrite, Plan::RustWrite],
            ),
        ];
        for (phase, plans) in rows {
            for (class, plan) in [Read, Write, Apply].into_iter().zip(plans) {
                assert_eq!(Plan::for_request(phase, class), plan, "{phase} {class:?}");
            }
        }
    }

    /// Invariant 1 at the planning level: a mutating mirror is always a dry-run.
    #[test]
    fn mutating_mirrors_are_dry_runs() {
        for phase in Phase::ALL {
            for class in [Write, Apply] {
                if let Plan::PerlWithShadow { dry_run } = Plan::for_request(phase, class) {
                    assert!(dry_run, "{phase} {class:?}");
                }
            }
        }
    }
}
