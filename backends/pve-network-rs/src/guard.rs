//! Defence in depth: the backend refuses a real write the node's phase does
//! not give to Rust, whatever sent it.
//!
//! The gateway decides which backend serves a request; it sends the Rust
//! backend an unmarked (not `X-PVE-Dry-Run: 1`) write only in
//! `rust-basic-write` (configuration writes) and `rust-full` (apply as well).
//! A gateway bug, or a client talking to port 8016 directly, must not make
//! the Rust side change a node whose operators have not promoted it. So the
//! backend reads the same files as the gateway:
//!
//! * `/etc/pve/network/migration.toml`: `phase` (cluster default) and
//!   `[nodes.NAME] phase` for this node, `state_dir`
//!   (default `/var/lib/pve-network-migration`);
//! * `STATE_DIR/trip.json`: present while the node is tripped; its
//!   `effective_phase` caps the configured one.
//!
//! Both are read again when they change. Without `migration.toml` the node
//! is not being migrated and nothing is restricted (stand-alone use, the
//! oracle replay); a file that cannot be read or understood refuses every
//! unmarked write (fail closed) with the reason in the answer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

pub use pve_migration_phase::Phase;
use pve_network_core::Operation;

use crate::paths::HostPaths;

/// The lowest phase in which Rust carries out `op` for real.
pub fn needed_for(op: Operation) -> Option<Phase> {
    match op {
        Operation::List | Operation::Get => None,
        Operation::Apply => Some(Phase::RustFull),
        _ => Some(Phase::RustBasicWrite),
    }
}

/// What the files say about this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// No `migration.toml`: not being migrated.
    NotMigrating,
    /// The node's effective phase (configured, capped by a trip).
    Phase {
        /// Configured for this node.
        configured: Phase,
        /// After the trip, if any.
        effective: Phase,
    },
    /// The files could not be read or understood.
    Unknown(String),
}

type Stamp = Option<(u64, u32, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((t.as_secs(), t.subsec_nanos(), m.len()))
}

#[derive(Debug, Default)]
struct Seen {
    config: Stamp,
    trip: Stamp,
    trip_path: Option<PathBuf>,
    standing: Option<Standing>,
}

/// Reads the node's phase and refuses writes it does not allow.
#[derive(Debug)]
pub struct PhaseGuard {
    node: String,
    paths: HostPaths,
    seen: Mutex<Seen>,
}

/// The default `state_dir` of the gateway.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pve-network-migration";

impl PhaseGuard {
    /// A guard for `node` on the host `paths`.
    pub fn new(node: impl Into<String>, paths: HostPaths) -> Self {
        Self {
            node: node.into(),
            paths,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn read(&self, config_text: Option<String>) -> (Standing, Option<PathBuf>) {
        let file = "/etc/pve/network/migration.toml";
        let Some(text) = config_text else {
            return (Standing::NotMigrating, None);
        };
        let doc: toml::Table = match text.parse() {
            Ok(d) => d,
            Err(e) => {
                return (
                    Standing::Unknown(format!("{file} is not valid TOML: {}", e.message())),
                    None,
                );
            }
        };
        let phase_at = |v: Option<&toml::Value>, key: &str| -> Result<Option<Phase>, String> {
            match v {
                None => Ok(None),
                Some(toml::Value::String(s)) => s
                    .parse::<Phase>()
                    .map(Some)
                    .map_err(|_| format!("{file}: {key} = '{s}' is not a phase")),
                Some(_) => Err(format!("{file}: {key} must be a string")),
            }
        };
        let node_key = format!("nodes.{}.phase", self.node);
        let node_phase = doc
            .get("nodes")
            .and_then(|n| n.get(&self.node))
            .and_then(|n| n.get("phase"));
        let configured = match (
            phase_at(node_phase, &node_key),
            phase_at(doc.get("phase"), "phase"),
        ) {
            (Err(e), _) | (_, Err(e)) => return (Standing::Unknown(e), None),
            (Ok(Some(p)), _) | (Ok(None), Ok(Some(p))) => p,
            (Ok(None), Ok(None)) => Phase::PerlOnly,
        };
        let state_dir = match doc.get("state_dir") {
            None => DEFAULT_STATE_DIR.to_string(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => {
                return (
                    Standing::Unknown(format!("{file}: state_dir must be a string")),
                    None,
                );
            }
        };
        let trip_path = self.paths.host(&state_dir).join("trip.json");
        let effective = match std::fs::read(&trip_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => configured,
            Err(e) => {
                return (
                    Standing::Unknown(format!("{state_dir}/trip.json: {e}")),
                    Some(trip_path),
                );
            }
            Ok(bytes) => {
                let tripped = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("effective_phase")?.as_str()?.parse::<Phase>().ok());
                match tripped {
                    Some(p) => p.min(configured),
                    None => {
                        return (
                            Standing::Unknown(format!(
                                "{state_dir}/trip.json has no valid effective_phase"
                            )),
                            Some(trip_path),
                        );
                    }
                }
            }
        };
        (
            Standing::Phase {
                configured,
                effective,
            },
            Some(trip_path),
        )
    }

    /// The node's standing now (files re-read when they changed).
    pub fn standing(&self) -> Standing {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let config_path = self.paths.migration_toml();
        let config = stamp(&config_path);
        let trip = seen.trip_path.as_deref().and_then(stamp);
        if let Some(s) = &seen.standing
            && seen.config == config
            && seen.trip == trip
            && config.is_some() == !matches!(s, Standing::NotMigrating)
        {
            return s.clone();
        }
        let text = match std::fs::read_to_string(&config_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let s = Standing::Unknown(format!("/etc/pve/network/migration.toml: {e}"));
                seen.standing = Some(s.clone());
                return s;
            }
        };
        let (standing, trip_path) = self.read(text);
        seen.config = config;
        seen.trip = trip_path.as_deref().and_then(stamp);
        seen.trip_path = trip_path;
        seen.standing = Some(standing.clone());
        standing
    }

    /// Whether a real (unmarked) `op` may be carried out; the error is the
    /// reason for the `403`.
    ///
    /// # Errors
    ///
    /// When the node's phase does not give `op` to Rust, or it cannot be
    /// told.
    pub fn allow(&self, op: Operation) -> Result<(), String> {
        let Some(needed) = needed_for(op) else {
            return Ok(());
        };
        match self.standing() {
            Standing::NotMigrating => Ok(()),
            Standing::Phase { effective, .. } if effective >= needed => Ok(()),
            Standing::Phase {
                configured,
                effective,
            } => {
                let held = if effective < configured {
                    format!(" (tripped from '{}')", configured.as_str())
                } else {
                    String::new()
                };
                Err(format!(
                    "Permission check failed (node '{}' is in phase '{}'{held}; the Rust backend carries out {} only from phase '{}')",
                    self.node,
                    effective.as_str(),
                    if op == Operation::Apply {
                        "apply"
                    } else {
                        "configuration writes"
                    },
                    needed.as_str()
                ))
            }
            Standing::Unknown(why) => Err(format!(
                "Permission check failed (the node's migration phase cannot be read: {why})"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> (tempfile::TempDir, PhaseGuard) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/pve/network")).unwrap();
        let g = PhaseGuard::new("pve1", HostPaths::new(dir.path()));
        (dir, g)
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn phases_decide_writes() {
        let (dir, g) = guard();
        assert_eq!(g.standing(), Standing::NotMigrating);
        assert!(g.allow(Operation::Create).is_ok());

        write(
            dir.path(),
            "etc/pve/network/migration.toml",
            "phase = \"shadow\"\n",
        );
        assert_eq!(
            g.allow(Operation::Update).unwrap_err(),
            "Permission check failed (node 'pve1' is in phase 'shadow'; the Rust backend carries out configuration writes only from phase 'rust-basic-write')"
        );
        assert!(g.allow(Operation::List).is_ok());

        write(
            dir.path(),
            "etc/pve/network/migration.toml",
            "phase = \"shadow\"\n[nodes.pve1]\nphase = \"rust-basic-write\"\n[nodes.pve2]\nphase = \"rust-full\"\n",
        );
        assert!(g.allow(Operation::Delete).is_ok());
        assert!(
            g.allow(Operation::Apply)
                .unwrap_err()
                .contains("only from phase 'rust-full'")
        );
    }

    #[test]
    fn a_trip_caps_the_phase_and_bad_files_fail_closed() {
        let (dir, g) = guard();
        write(
            dir.path(),
            "etc/pve/network/migration.toml",
            "state_dir = \"/state\"\n[nodes.pve1]\nphase = \"rust-full\"\n",
        );
        assert!(g.allow(Operation::Apply).is_ok());
        write(
            dir.path(),
            "state/trip.json",
            r#"{"effective_phase":"perl-only"}"#,
        );
        assert_eq!(
            g.standing(),
            Standing::Phase {
                configured: Phase::RustFull,
                effective: Phase::PerlOnly
            }
        );
        assert!(
            g.allow(Operation::Create)
                .unwrap_err()
                .contains("is in phase 'perl-only' (tripped from 'rust-full')")
        );
        std::fs::remove_file(dir.path().join("state/trip.json")).unwrap();
        assert!(g.allow(Operation::Create).is_ok());

        write(
            dir.path(),
            "etc/pve/network/migration.toml",
            "phase = \"fast\"\n",
        );
        assert_eq!(
            g.allow(Operation::Create).unwrap_err(),
            "Permission check failed (the node's migration phase cannot be read: /etc/pve/network/migration.toml: phase = 'fast' is not a phase)"
        );
        write(dir.path(), "etc/pve/network/migration.toml", "phase = [\n");
        assert!(
            g.allow(Operation::Create)
                .unwrap_err()
                .contains("is not valid TOML")
        );
    }
}
