//! Migration phases: the shared vocabulary of `pve-migration-phase`.

pub use pve_migration_phase::{Phase, UnknownPhase};
