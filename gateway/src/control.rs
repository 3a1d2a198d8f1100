//! The running configuration and everything operators change or ask about
//! while the gateway runs: reload (SIGHUP and a changed file), health, phase
//! get/set, trip status/reset, the evidence summary.
//!
//! A reload validates the new file completely before anything changes; an
//! invalid file is reported (log, `health`, `pve_network_config_reloads_total
//! {result="error"}`) and the last good configuration stays in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pve_migration_certs::reload::ReloadingCertResolver;
use serde::{Deserialize, Serialize};

use crate::access::AccessPolicy;
use crate::config::{Config, ConfigError, Overrides, digest_of};
use crate::engine::{Engine, Routing, TripState};
use crate::metrics::ResultLabels;
use crate::phase::Phase;
use crate::upstream::{Backend, Upstream};

/// The outcome of the last reload attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// When, RFC 3339 (empty before the first reload).
    pub at: String,
    /// `ok` or `error`.
    pub result: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Changed settings that take effect only after a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

/// One backend's reachability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// `https://host:port`.
    pub url: String,
    /// Whether it answered HTTP at all.
    pub reachable: bool,
    /// Time to the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `migration-ctl health` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `true` when something needs an operator.
    pub degraded: bool,
    /// Why degraded, one line each.
    pub problems: Vec<String>,
    /// This node.
    pub node: String,
    /// Configured phase.
    pub configured_phase: String,
    /// Effective phase (after a trip).
    pub effective_phase: String,
    /// The trip, if tripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip: Option<crate::engine::TripRecord>,
    /// pveproxy.
    pub perl: BackendHealth,
    /// The Rust backend, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<BackendHealth>,
    /// Configuration digest in force.
    pub config_digest: String,
    /// Configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// Last reload.
    pub last_reload: ReloadStatus,
    /// Served certificate subject.
    pub certificate_subject: String,
    /// Its end of validity, RFC 3339.
    pub certificate_not_after: String,
    /// Days until it expires (negative: expired).
    pub certificate_days_left: i64,
    /// Fallbacks in the last 15 minutes.
    pub fallbacks_15m: usize,
    /// Mismatches (including critical) in the last 15 minutes.
    pub mismatches_15m: usize,
}

/// The phase view of `migration-ctl phase get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseView {
    /// This node.
    pub node: String,
    /// Cluster-wide default phase.
    pub cluster_default: String,
    /// Per-node phases from the file.
    pub nodes: BTreeMap<String, String>,
    /// This node's configured phase.
    pub configured: String,
    /// This node's effective phase.
    pub effective: String,
    /// Digest of the configuration file's text (for `phase set`'s concurrency check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_digest: Option<String>,
}

/// Why a `phase set` was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum PhaseSetError {
    /// There is no configuration file to edit (flags only).
    #[error("the gateway runs without a configuration file; phases come from --phase")]
    NoFile,
    /// Another edit happened since the file was read.
    #[error("{} changed since it was read (expected digest {expected}, found {found}); read it again and retry", path.display())]
    Conflict {
        /// The file.
        path: PathBuf,
        /// Digest the caller saw.
        expected: String,
        /// Digest now.
        found: String,
    },
    /// The node name or phase is invalid, or the edited file does not validate.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The live configuration and the operations on it.
#[derive(Debug)]
pub struct Control {
    config_path: Option<PathBuf>,
    overrides: Overrides,
    config: ArcSwap<Config>,
    engine: Arc<Engine>,
    access: Arc<ArcSwap<AccessPolicy>>,
    certs: Arc<ReloadingCertResolver>,
    status: Mutex<ReloadStatus>,
    /// Digest of the file text last loaded (detects changes when polling).
    seen: Mutex<Option<String>>,
    reload_lock: tokio::sync::Mutex<()>,
    reloaded: tokio::sync::Notify,
}

fn file_digest(text: &str) -> String {
    digest_of(text)
}

impl Control {
    /// Wraps the configuration the gateway started with.
    pub fn new(
        config: Config,
        engine: Arc<Engine>,
        access: Arc<ArcSwap<AccessPolicy>>,
        certs: Arc<ReloadingCertResolver>,
    ) -> Self {
        let seen = config
            .source
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| file_digest(&t));
        Self {
            config_path: config.source.clone(),
            overrides: config.overrides.clone(),
            config: ArcSwap::from_pointee(config),
            engine,
            access,
            certs,
            status: Mutex::new(ReloadStatus::default()),
            seen: Mutex::new(seen),
            reload_lock: tokio::sync::Mutex::new(()),
            reloaded: tokio::sync::Notify::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The last reload's outcome.
    pub fn reload_status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads when the file's contents changed since they were last loaded
    /// (polling: pmxcfs is FUSE, inotify alone is unreliable there).
    pub async fn reload_if_changed(&self) -> Option<ReloadStatus> {
        let path = self.config_path.clone()?;
        let text = tokio::fs::read_to_string(&path).await.ok()?;
        let digest = file_digest(&text);
        if self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            == Some(digest.as_str())
        {
            return None;
        }
        Some(self.reload().await)
    }

    /// Re-reads the configuration file and the access policy; applies what
    /// changed, or keeps everything as it was when anything is invalid.
    pub async fn reload(&self) -> ReloadStatus {
        let _one_at_a_time = self.reload_lock.lock().await;
        let status = match self.try_reload().await {
            Ok(needs_restart) => {
                for what in &needs_restart {
                    tracing::warn!(setting = %what, "changed setting takes effect after a restart");
                }
                tracing::info!(digest = %self.config().digest, "configuration reloaded");
                ReloadStatus {
                    at: crate::evidence::now_rfc3339(),
                    result: "ok".into(),
                    error: None,
                    needs_restart,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed, keeping the last good configuration");
                ReloadStatus {
                    at: crate::evidence::now_rfc3339(),
                    result: "error".into(),
                    error: Some(e),
                    needs_restart: Vec::new(),
                }
            }
        };
        self.engine
            .metrics()
            .config_reloads
            .get_or_create(&ResultLabels {
                result: status.result.clone(),
            })
            .inc();
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status.clone();
        self.reloaded.notify_waiters();
        status
    }

    /// Notified after every reload attempt (lets tests wait for the file poller).
    pub fn reloaded(&self) -> &tokio::sync::Notify {
        &self.reloaded
    }

    async fn try_reload(&self) -> Result<Vec<String>, String> {
        let old = self.config();
        let new = match &self.config_path {
            Some(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                // Mark the text as seen even when invalid: it is reported once,
                // not on every poll, until the file changes again.
                *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(file_digest(&text));
                Config::from_toml(&text, Some(path), &self.overrides)
                    .map_err(|e: ConfigError| e.to_string())?
            }
            None => Config::from_overrides(&self.overrides).map_err(|e| e.to_string())?,
        };
        let access = {
            let path = new.access_file.clone();
            tokio::task::spawn_blocking(move || AccessPolicy::from_file(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let routing =
            if new.perl != old.perl || new.rust != old.rust || new.rule_files != old.rule_files {
                Some(build_routing(&new)?)
            } else {
                None
            };

        // Everything validated: apply.
        let mut needs_restart = Vec::new();
        for (changed, what) in [
            (
                new.listen.addresses != old.listen.addresses,
                "listen.addresses",
            ),
            (
                new.listen.cert != old.listen.cert,
                "listen.tls_cert/tls_key/cert_dir",
            ),
            (new.limits != old.limits, "limits"),
            (new.evidence != old.evidence, "evidence"),
            (new.migration_log != old.migration_log, "log.migration_log"),
            (new.state_dir != old.state_dir, "state_dir"),
            (new.node != old.node, "node"),
            (
                new.shadow.max_in_flight != old.shadow.max_in_flight,
                "shadow.max_in_flight",
            ),
        ] {
            if changed {
                needs_restart.push(what.to_owned());
            }
        }
        self.access.store(Arc::new(access));
        if let Some(r) = routing {
            self.engine.set_routing(r);
        }
        self.engine.apply_settings(&new);
        self.config.store(Arc::new(new));
        Ok(needs_restart)
    }

    /// Probes a backend: any HTTP answer to `GET /` counts as reachable.
    async fn probe(upstream: &Upstream) -> BackendHealth {
        let url = format!("https://{}", upstream.addr());
        let req = http::Request::get(upstream.uri_for("/api2/json/version"))
            .header("host", upstream.addr())
            .body(crate::body::empty())
            .expect("valid request");
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(3), upstream.send(req)).await {
            Ok(Ok(_)) => BackendHealth {
                url,
                reachable: true,
                latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                error: None,
            },
            Ok(Err(e)) => BackendHealth {
                url,
                reachable: false,
                latency_ms: None,
                error: Some(e.to_string()),
            },
            Err(_) => BackendHealth {
                url,
                reachable: false,
                latency_ms: None,
                error: Some("no answer within 3 s".into()),
            },
        }
    }

    /// Everything `migration-ctl health` reports.
    pub async fn health(&self) -> Health {
        let config = self.config();
        let routing = self.engine.routing();
        let (perl, rust) = tokio::join!(Self::probe(&routing.perl), async {
            match &routing.rust {
                Some(r) => Some(Self::probe(r).await),
                None => None,
            }
        });
        let (configured, effective) = self.engine.phases();
        let trip = match self.engine.trip().state() {
            TripState::Tripped(r) => Some(r),
            TripState::Armed => None,
        };
        let cert = self.certs.current();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let days_left = (cert.not_after - now).div_euclid(86_400);
        let (fallbacks, mismatches) = self.engine.recent_counts();
        let last_reload = self.reload_status();

        let mut problems = Vec::new();
        if let Some(t) = &trip {
            problems.push(format!(
                "tripped to {} at {}: {}",
                t.effective_phase, t.at, t.reason
            ));
        }
        if !perl.reachable {
            problems.push(format!(
                "perl backend unreachable: {}",
                perl.error.clone().unwrap_or_default()
            ));
        }
        if let Some(r) = &rust
            && !r.reachable
            && configured > Phase::PerlOnly
        {
            problems.push(format!(
                "rust backend unreachable: {}",
                r.error.clone().unwrap_or_default()
            ));
        }
        if last_reload.result == "error" {
            problems.push(format!(
                "last configuration reload failed ({}): {}",
                last_reload.at,
                last_reload.error.clone().unwrap_or_default()
            ));
        }
        if days_left < 14 {
            problems.push(format!(
                "certificate {} expires in {days_left} days",
                cert.subject
            ));
        }
        if fallbacks > 0 {
            problems.push(format!("{fallbacks} fallback(s) in the last 15 minutes"));
        }
        let not_after = time::OffsetDateTime::from_unix_timestamp(cert.not_after)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Health {
            degraded: !problems.is_empty(),
            problems,
            node: config.node.clone(),
            configured_phase: configured.to_string(),
            effective_phase: effective.to_string(),
            trip,
            perl,
            rust,
            config_digest: config.digest.clone(),
            config_file: config.source.as_ref().map(|p| p.display().to_string()),
            last_reload,
            certificate_subject: cert.subject,
            certificate_not_after: not_after,
            certificate_days_left: days_left,
            fallbacks_15m: fallbacks,
            mismatches_15m: mismatches,
        }
    }

    /// The phases as configured and in force.
    pub fn phase_view(&self) -> PhaseView {
        let config = self.config();
        let (configured, effective) = self.engine.phases();
        PhaseView {
            node: config.node.clone(),
            cluster_default: config.phase.to_string(),
            nodes: config
                .node_phases
                .iter()
                .map(|(n, p)| (n.clone(), p.to_string()))
                .collect(),
            configured: configured.to_string(),
            effective: effective.to_string(),
            file_digest: self
                .config_path
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| file_digest(&t)),
        }
    }

    /// Sets a node's phase (`[nodes.NODE] phase`, or the cluster default when
    /// `node` is `None`) in the configuration file, keeping its comments and
    /// layout, written atomically; refused when the file's digest is not
    /// `expect_digest`. The change is applied at once (reload).
    ///
    /// # Errors
    /// See [`PhaseSetError`].
    pub async fn set_phase(
        &self,
        phase: &str,
        node: Option<&str>,
        expect_digest: Option<&str>,
    ) -> Result<PhaseView, PhaseSetError> {
        let path = self.config_path.clone().ok_or(PhaseSetError::NoFile)?;
        let phase: Phase = phase
            .parse()
            .map_err(|e: crate::phase::UnknownPhase| PhaseSetError::Invalid(e.to_string()))?;
        let io = |source| PhaseSetError::Io {
            path: path.clone(),
            source,
        };
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let found = file_digest(&text);
        if let Some(expected) = expect_digest
            && expected != found
        {
            return Err(PhaseSetError::Conflict {
                path,
                expected: expected.to_owned(),
                found,
            });
        }
        let edited = edit_phase(&text, phase, node).map_err(PhaseSetError::Invalid)?;
        // The edited file must validate as a whole before it replaces the old one.
        Config::from_toml(&edited, Some(&path), &Overrides::default())
            .or_else(|e| match e {
                // A file without listen addresses is valid when flags give them.
                ConfigError::Invalid { key, .. } if key == "listen.addresses" => {
                    Config::from_toml(&edited, Some(&path), &self.overrides)
                }
                other => Err(other),
            })
            .map_err(|e| PhaseSetError::Invalid(e.to_string()))?;
        let now = std::fs::read_to_string(&path).map_err(io)?;
        if file_digest(&now) != found {
            return Err(PhaseSetError::Conflict {
                path,
                expected: found,
                found: file_digest(&now),
            });
        }
        write_beside(&path, edited.as_bytes()).map_err(io)?;
        tracing::info!(node = node.unwrap_or("(cluster default)"), %phase, file = %path.display(), "phase set");
        let status = self.reload().await;
        if let Some(e) = status.error {
            return Err(PhaseSetError::Invalid(e));
        }
        Ok(self.phase_view())
    }
}

/// Edits the phase with toml_edit, keeping comments, order and formatting.
fn edit_phase(text: &str, phase: Phase, node: Option<&str>) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("cannot edit the file: {e}"))?;
    /// Sets a string value, keeping the old value's comments and spacing.
    fn set(item: &mut toml_edit::Item, new: &str) {
        match item.as_value_mut() {
            Some(v) => {
                let decor = v.decor().clone();
                *v = new.into();
                *v.decor_mut() = decor;
            }
            None => *item = toml_edit::value(new),
        }
    }
    match node {
        None => set(&mut doc["phase"], phase.as_str()),
        Some(node) => {
            if node.is_empty() || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("'{node}' is not a valid node name"));
            }
            if !doc.contains_key("nodes") {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                doc["nodes"] = toml_edit::Item::Table(t);
            }
            let nodes = doc["nodes"]
                .as_table_mut()
                .ok_or("'nodes' is not a table")?;
            if !nodes.contains_key(node) {
                nodes.insert(node, toml_edit::Item::Table(toml_edit::Table::new()));
            }
            set(&mut nodes[node]["phase"], phase.as_str());
        }
    }
    Ok(doc.to_string())
}

/// Atomic replace in the same directory (pmxcfs supports rename within a directory).
fn write_beside(path: &Path, data: &[u8]) -> std::io::Result<()> {
    crate::evidence::write_atomic(path, data)
}

/// Backends and rules for a configuration.
///
/// # Errors
/// When an upstream cannot be set up or a rule file is invalid.
pub fn build_routing(config: &Config) -> Result<Routing, String> {
    let perl =
        Upstream::new(Backend::Perl, &config.perl, &config.limits).map_err(|e| e.to_string())?;
    let rust = match &config.rust {
        Some(r) => {
            Some(Upstream::new(Backend::Rust, r, &config.limits).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let rules = crate::server::load_rules(&config.rule_files).map_err(|e| e.to_string())?;
    Ok(Routing {
        rules: Arc::new(rules),
        perl,
        rust,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_edits_keep_comments_and_other_nodes() {
        let text = "# cluster file\nnode = \"pve1\"\nphase = \"perl-only\" # default\n\n[nodes.pve2]\n# the canary\nphase = \"shadow\"\n\n[nodes.pve3]\nphase = \"perl-only\"\n";
        let out = edit_phase(text, Phase::RustReadOnly, Some("pve2")).unwrap();
        assert!(
            out.contains("# the canary\nphase = \"rust-read-only\""),
            "{out}"
        );
        assert!(out.contains("[nodes.pve3]\nphase = \"perl-only\""), "{out}");
        assert!(
            out.contains("# cluster file") && out.contains("# default"),
            "{out}"
        );
        let out = edit_phase(text, Phase::Shadow, Some("pve9")).unwrap();
        assert!(out.contains("[nodes.pve9]\nphase = \"shadow\""), "{out}");
        let out = edit_phase(text, Phase::Shadow, None).unwrap();
        assert!(out.contains("phase = \"shadow\" # default"), "{out}");
        assert!(edit_phase(text, Phase::Shadow, Some("../x")).is_err());
    }
}
