//! `migration.toml`: the raw file (serde, unknown keys rejected) and the
//! validated [`Config`] the gateway runs with.
//!
//! Command-line flags of `serve` override file values before validation, so
//! one set of rules checks both; an error names the key and where the value
//! came from (the file, with a line for syntax and unknown keys, or the flag).
//! A reload validates a new file completely before anything is swapped: a bad
//! file never replaces a good config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use pve_migration_certs::reload::CertSource;
use pve_migration_certs::upstream::{UpstreamTrust, parse_fingerprint};
use serde::Deserialize;

use crate::phase::Phase;

/// Where the shared cluster configuration lives (pmxcfs).
pub const DEFAULT_CONFIG: &str = "/etc/pve/network/migration.toml";
/// Default state directory (trip state survives restarts here).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pve-network-migration";
/// The admin socket `migration-ctl` talks to.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/pve-network-migration/control.sock";
/// Where migration decisions are logged.
pub const DEFAULT_MIGRATION_LOG: &str = "/var/log/pve-network/migration.log";
/// pveproxy after the move to loopback.
pub const DEFAULT_PERL_URL: &str = "https://127.0.0.1:8006";

/// A configuration problem, always naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown key (the message carries line and column).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// The file name, or the flag the value came from.
        origin: String,
        /// Dotted key, e.g. `backends.rust.url`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Option<String>,
    phase: Option<String>,
    log_migration_decisions: Option<bool>,
    perl_api_base_url: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    backends: RawBackends,
    #[serde(default)]
    nodes: BTreeMap<String, RawNode>,
    #[serde(default)]
    access: RawAccess,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    shadow: RawShadow,
    #[serde(default)]
    trip: RawTrip,
    #[serde(default)]
    evidence: RawEvidence,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: Option<PathBuf>,
    config_check_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    metrics_listen: Option<String>,
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadow {
    max_in_flight: Option<usize>,
    timeout_ms: Option<u64>,
    write_order_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    sample: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrip {
    fallback_rate_threshold: Option<f64>,
    window_s: Option<u64>,
    trip_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    dir: Option<PathBuf>,
    max_bytes: Option<u64>,
    segment_bytes: Option<u64>,
    store_bodies: Option<String>,
    exemplars_per_fingerprint: Option<usize>,
    queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    migration_log: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    files: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    addresses: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    cert_check_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackends {
    #[serde(default)]
    perl: RawBackend,
    rust: Option<RawBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    url: Option<String>,
    ca: Option<PathBuf>,
    fingerprint: Option<String>,
    insecure_skip_verify: Option<bool>,
    server_name: Option<String>,
    connect_timeout_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    phase: Option<String>,
    listen: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    pveproxy_defaults: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    handshake_timeout_ms: Option<u64>,
    header_timeout_ms: Option<u64>,
    max_header_bytes: Option<usize>,
    upstream_idle_timeout_ms: Option<u64>,
    upstream_max_idle_per_backend: Option<usize>,
    upstream_max_connections_per_backend: Option<usize>,
    upstream_queue_timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
}

/// Values given on the `serve` command line; each wins over the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` (repeatable).
    pub listen: Vec<String>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--perl-url`.
    pub perl_url: Option<String>,
    /// `--perl-ca`.
    pub perl_ca: Option<PathBuf>,
    /// `--rust-url`.
    pub rust_url: Option<String>,
    /// `--rust-ca`.
    pub rust_ca: Option<PathBuf>,
    /// `--phase`.
    pub phase: Option<String>,
    /// `--node`.
    pub node: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--admin-socket`.
    pub admin_socket: Option<PathBuf>,
}

/// How an upstream backend is reached and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `https://host:port`, no path.
    pub url: Uri,
    /// Certificate verification.
    pub trust: UpstreamTrust,
    /// TLS server name to verify, when it differs from the URL's host.
    pub server_name: Option<String>,
    /// Time allowed for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Time allowed for a complete answer when this backend is a migrated
    /// request's primary (a Rust read falls back to Perl after it).
    pub timeout: Duration,
}

/// `[shadow]`: bounds on mirrored work (docs/design.md, invariant 2).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    /// Mirrored calls in flight at once; beyond it they are skipped (`overloaded`).
    pub max_in_flight: usize,
    /// A mirrored call (or the Perl reference answer of a Rust-served read)
    /// not answered within this is skipped (`timeout`).
    pub timeout: Duration,
    /// Request or response bodies larger than this are not compared (`too_large`).
    pub max_body_bytes: usize,
    /// Fraction of migrated requests mirrored, 0.0–1.0 (`sampled_out`).
    pub sample: f64,
    /// How long a write waits for its dry-run copy's answer before it goes
    /// to Perl anyway; past it the comparison is skipped (`raced`). The one
    /// delay shadow work may add to a primary request.
    pub write_order: Duration,
}

/// Where a tripped node goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripTo {
    /// A fixed phase (default `perl-only`).
    Phase(Phase),
    /// One level below the configured phase.
    Previous,
}

/// `[trip]`: when the node gives up on Rust by itself (docs/design.md, Fallback and trip).
#[derive(Debug, Clone, PartialEq)]
pub struct TripConfig {
    /// The node trips when failures / Rust-served requests in the window exceed this.
    pub fallback_rate_threshold: f64,
    /// The sliding window.
    pub window: Duration,
    /// Where it trips to.
    pub trip_to: TripTo,
}

/// Whether evidence keeps (redacted) bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBodies {
    /// Never store bodies, only their SHA-256.
    Never,
    /// Store redacted request and response bodies of mismatching exchanges.
    OnMismatch,
}

/// `[evidence]`: the contract evidence store (docs/design.md, Comparison and evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceConfig {
    /// Directory of the JSON Lines segments.
    pub dir: PathBuf,
    /// Total size kept; the oldest segments are deleted beyond it.
    pub max_bytes: u64,
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
    /// Body storage policy.
    pub store_bodies: StoreBodies,
    /// Records per fingerprint that carry the full patch.
    pub exemplars_per_fingerprint: usize,
    /// Records waiting to be written; beyond it they are dropped and counted.
    pub queue: usize,
}

/// Listener settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// Addresses to bind (the node's own addresses, port 8006).
    pub addresses: Vec<SocketAddr>,
    /// The served certificate.
    pub cert: CertSource,
    /// How often the certificate files are checked for changes.
    pub cert_check_interval: Duration,
}

/// Resource limits and timeouts of the front end and the upstream pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; beyond it, accepting pauses (as pveproxy does).
    pub max_connections: usize,
    /// Time from accept to a finished TLS handshake (or plain-HTTP request head).
    pub handshake_timeout: Duration,
    /// Time allowed for a complete request head, counted from connection start or
    /// from the end of the previous response; it is therefore also the
    /// keep-alive idle limit of HTTP/1.1 connections. HTTP/2 connections
    /// without a request for this long are sent a GOAWAY.
    pub header_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// How long an idle upstream connection is kept for reuse.
    pub upstream_idle_timeout: Duration,
    /// Idle upstream connections kept per backend.
    pub upstream_max_idle: usize,
    /// Open connections per backend (busy, idle and upgraded ones).
    pub upstream_max_connections: usize,
    /// How long a request waits for a connection when all are open and busy;
    /// then it is answered 503.
    pub upstream_queue_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests.
    pub shutdown_grace: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// This gateway's node name.
    pub node: String,
    /// Cluster-wide default phase.
    pub phase: Phase,
    /// Per-node phase overrides (`[nodes.NAME]`).
    pub node_phases: BTreeMap<String, Phase>,
    /// Log every migration decision, not only fallbacks and trips.
    pub log_migration_decisions: bool,
    /// Listener settings.
    pub listen: ListenConfig,
    /// pveproxy.
    pub perl: BackendConfig,
    /// The Rust backend, when configured.
    pub rust: Option<BackendConfig>,
    /// pveproxy defaults file with ALLOW_FROM / DENY_FROM / POLICY.
    pub access_file: PathBuf,
    /// Limits and timeouts.
    pub limits: Limits,
    /// State directory.
    pub state_dir: PathBuf,
    /// Shadow bounds.
    pub shadow: ShadowConfig,
    /// Trip rules.
    pub trip: TripConfig,
    /// Evidence store.
    pub evidence: EvidenceConfig,
    /// `migration.log` (logfmt).
    pub migration_log: PathBuf,
    /// Operator rule files layered over the shipped defaults, in order.
    pub rule_files: Vec<PathBuf>,
    /// The admin socket (`migration-ctl`).
    pub admin_socket: PathBuf,
    /// How often the configuration file is checked for changes.
    pub config_check_interval: Duration,
    /// Telemetry endpoints.
    pub telemetry: TelemetryConfig,
    /// The command-line flags this configuration was built with (re-applied on reload).
    pub overrides: Overrides,
    /// SHA-256 of the configuration, stamped on every evidence record.
    pub digest: String,
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// A plain-HTTP listener for Prometheus (loopback unless the operator says otherwise).
    pub metrics_listen: Option<SocketAddr>,
    /// OTLP/HTTP collector base URL (`http://127.0.0.1:4318`).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Config {
    /// The phase configured for this node (before any trip).
    pub fn configured_phase(&self) -> Phase {
        self.node_phases
            .get(&self.node)
            .copied()
            .unwrap_or(self.phase)
    }

    /// Reads and validates a file, applying command-line overrides.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, Some(path), overrides)
    }

    /// Validates a configuration given as TOML text (`path` only names it in errors).
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn from_toml(
        text: &str,
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path
                .map(Path::to_owned)
                .unwrap_or_else(|| "<config>".into()),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Validator::new(path, overrides).validate(raw)
    }

    /// Builds a configuration from command-line flags alone.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn from_overrides(overrides: &Overrides) -> Result<Config, ConfigError> {
        Validator::new(None, overrides).validate(RawConfig::default())
    }
}

/// Applies overrides and checks values, remembering which key came from which flag.
struct Validator<'a> {
    file: String,
    overrides: &'a Overrides,
    from_flag: BTreeMap<&'static str, &'static str>,
}

impl<'a> Validator<'a> {
    fn new(path: Option<&Path>, overrides: &'a Overrides) -> Self {
        Self {
            file: path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<config>".into()),
            overrides,
            from_flag: BTreeMap::new(),
        }
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let origin = match self.from_flag.get(key) {
            Some(flag) => format!("command line {flag}"),
            None => self.file.clone(),
        };
        ConfigError::Invalid {
            origin,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn apply_overrides(&mut self, raw: &mut RawConfig) {
        let o = self.overrides;
        let mut set = |key, flag| {
            self.from_flag.insert(key, flag);
        };
        if !o.listen.is_empty() {
            raw.listen.addresses = Some(o.listen.clone());
            set("listen.addresses", "--listen");
        }
        if let Some(v) = &o.tls_cert {
            raw.listen.tls_cert = Some(v.clone());
            set("listen.tls_cert", "--tls-cert");
        }
        if let Some(v) = &o.tls_key {
            raw.listen.tls_key = Some(v.clone());
            set("listen.tls_key", "--tls-key");
        }
        if let Some(v) = &o.perl_url {
            raw.perl_api_base_url = Some(v.clone());
            set("perl_api_base_url", "--perl-url");
        }
        if let Some(v) = &o.perl_ca {
            raw.backends.perl.ca = Some(v.clone());
            set("backends.perl.ca", "--perl-ca");
        }
        if o.rust_url.is_some() || o.rust_ca.is_some() {
            let rust = raw.backends.rust.get_or_insert_with(RawBackend::default);
            if let Some(v) = &o.rust_url {
                rust.url = Some(v.clone());
                set("backends.rust.url", "--rust-url");
            }
            if let Some(v) = &o.rust_ca {
                rust.ca = Some(v.clone());
                set("backends.rust.ca", "--rust-ca");
            }
        }
        if let Some(v) = &o.phase {
            raw.phase = Some(v.clone());
            set("phase", "--phase");
        }
        if let Some(v) = &o.node {
            raw.node = Some(v.clone());
            set("node", "--node");
        }
        if let Some(v) = &o.state_dir {
            raw.state_dir = Some(v.clone());
            set("state_dir", "--state-dir");
        }
        if let Some(v) = &o.admin_socket {
            raw.admin.socket = Some(v.clone());
            set("admin.socket", "--admin-socket");
        }
    }

    fn validate(mut self, mut raw: RawConfig) -> Result<Config, ConfigError> {
        self.apply_overrides(&mut raw);

        let node = match raw.node {
            Some(n) => n,
            None => local_node_name().ok_or_else(|| {
                self.invalid("node", "not set and the host name could not be read")
            })?,
        };
        if !valid_node_name(&node) {
            return Err(self.invalid(
                "node",
                format!("'{node}' is not a valid Proxmox node name (letters, digits, '-', starting with a letter)"),
            ));
        }

        let phase = self.phase("phase", raw.phase.as_deref().unwrap_or("perl-only"))?;
        let mut node_phases = BTreeMap::new();
        for (name, n) in &raw.nodes {
            let key = format!("nodes.{name}.phase");
            if !valid_node_name(name) {
                return Err(self.invalid(&format!("nodes.{name}"), "not a valid Proxmox node name"));
            }
            match &n.phase {
                Some(p) => {
                    node_phases.insert(name.clone(), self.phase(&key, p)?);
                }
                None if n.listen.is_some() => {}
                None => {
                    return Err(self.invalid(
                        &key,
                        "missing (a [nodes.NAME] section sets the node's phase and/or its listen addresses)",
                    ));
                }
            }
        }

        // The shared cluster file names each node's own addresses in its
        // section; `[listen] addresses` (or --listen) wins when given.
        let mut raw_listen_key = "listen.addresses".to_owned();
        if raw.listen.addresses.is_none()
            && let Some(own) = raw.nodes.get(&node).and_then(|n| n.listen.clone())
        {
            raw.listen.addresses = Some(own);
            raw_listen_key = format!("nodes.{node}.listen");
        }
        let listen = self.listen(&raw.listen).map_err(|e| match e {
            ConfigError::Invalid {
                origin,
                key,
                message,
            } if key == "listen.addresses" => ConfigError::Invalid {
                origin,
                key: raw_listen_key.clone(),
                message,
            },
            other => other,
        })?;

        if raw.backends.perl.url.is_some() {
            return Err(self.invalid(
                "backends.perl.url",
                "not used; the Perl backend's address is the top-level perl_api_base_url",
            ));
        }
        let perl_url = raw
            .perl_api_base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_PERL_URL.to_owned());
        let perl = self.backend(
            "backends.perl",
            "perl_api_base_url",
            &perl_url,
            &raw.backends.perl,
        )?;
        let rust = match &raw.backends.rust {
            None => None,
            Some(r) => {
                let Some(url) = &r.url else {
                    return Err(self.invalid(
                        "backends.rust.url",
                        "missing (e.g. \"https://127.0.0.1:8016\")",
                    ));
                };
                Some(self.backend("backends.rust", "backends.rust.url", url, r)?)
            }
        };

        let l = &raw.limits;
        let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default));
        let limits = Limits {
            max_connections: l.max_connections.unwrap_or(4096),
            handshake_timeout: ms(l.handshake_timeout_ms, 10_000),
            header_timeout: ms(l.header_timeout_ms, 30_000),
            max_header_bytes: l.max_header_bytes.unwrap_or(64 * 1024),
            upstream_idle_timeout: ms(l.upstream_idle_timeout_ms, 4_000),
            upstream_max_idle: l.upstream_max_idle_per_backend.unwrap_or(256),
            upstream_max_connections: l.upstream_max_connections_per_backend.unwrap_or(1024),
            upstream_queue_timeout: ms(l.upstream_queue_timeout_ms, 5_000),
            shutdown_grace: ms(l.shutdown_grace_ms, 30_000),
        };
        if limits.max_connections == 0 {
            return Err(self.invalid("limits.max_connections", "must be at least 1"));
        }
        if limits.upstream_max_connections == 0 {
            return Err(self.invalid(
                "limits.upstream_max_connections_per_backend",
                "must be at least 1",
            ));
        }
        if limits.max_header_bytes < 8192 {
            return Err(self.invalid("limits.max_header_bytes", "must be at least 8192"));
        }
        for (key, d) in [
            ("limits.handshake_timeout_ms", limits.handshake_timeout),
            ("limits.header_timeout_ms", limits.header_timeout),
            (
                "limits.upstream_queue_timeout_ms",
                limits.upstream_queue_timeout,
            ),
        ] {
            if d.is_zero() {
                return Err(self.invalid(key, "must be greater than 0"));
            }
        }

        let shadow = self.shadow(&raw.shadow)?;
        let trip = self.trip(&raw.trip)?;
        let state_dir = raw
            .state_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        let evidence = self.evidence(&raw.evidence, &state_dir)?;
        let admin_interval = raw.admin.config_check_interval_ms.unwrap_or(2_000);
        if admin_interval == 0 {
            return Err(self.invalid("admin.config_check_interval_ms", "must be greater than 0"));
        }
        let telemetry = self.telemetry(&raw.telemetry)?;

        Ok(Config {
            source: None,
            node,
            phase,
            node_phases,
            log_migration_decisions: raw.log_migration_decisions.unwrap_or(true),
            listen,
            perl,
            rust,
            access_file: raw
                .access
                .pveproxy_defaults
                .unwrap_or_else(|| crate::access::PVEPROXY_DEFAULTS.into()),
            limits,
            state_dir,
            shadow,
            trip,
            evidence,
            migration_log: raw
                .log
                .migration_log
                .clone()
                .unwrap_or_else(|| DEFAULT_MIGRATION_LOG.into()),
            rule_files: raw.rules.files.clone().unwrap_or_default(),
            admin_socket: raw
                .admin
                .socket
                .clone()
                .unwrap_or_else(|| DEFAULT_ADMIN_SOCKET.into()),
            config_check_interval: Duration::from_millis(admin_interval),
            telemetry,
            overrides: self.overrides.clone(),
            digest: String::new(),
        })
        .map(|mut c| {
            c.source = (self.file != "<config>").then(|| PathBuf::from(&self.file));
            c.digest = digest_of(&format!("{c:?}"));
            c
        })
    }

    fn telemetry(&self, raw: &RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
        let metrics_listen = match &raw.metrics_listen {
            None => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                self.invalid(
                    "telemetry.metrics_listen",
                    format!("'{a}' is not an IP:port address (e.g. 127.0.0.1:9106)"),
                )
            })?),
        };
        if let Some(url) = &raw.otlp_endpoint {
            let ok = url.parse::<Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http") | Some("https")) && u.authority().is_some()
            });
            if !ok {
                return Err(self.invalid(
                    "telemetry.otlp_endpoint",
                    format!("'{url}' is not an http(s) URL (e.g. http://127.0.0.1:4318)"),
                ));
            }
        }
        Ok(TelemetryConfig {
            metrics_listen,
            otlp_endpoint: raw.otlp_endpoint.clone(),
            service_name: raw
                .service_name
                .clone()
                .unwrap_or_else(|| "pve-network-migration".into()),
        })
    }

    fn shadow(&self, raw: &RawShadow) -> Result<ShadowConfig, ConfigError> {
        let sample = raw.sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample) {
            return Err(self.invalid("shadow.sample", "must be between 0.0 and 1.0"));
        }
        let c = ShadowConfig {
            max_in_flight: raw.max_in_flight.unwrap_or(256),
            timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(2_000)),
            write_order: Duration::from_millis(raw.write_order_ms.unwrap_or(250)),
            max_body_bytes: raw.max_body_bytes.unwrap_or(1 << 20),
            sample,
        };
        if c.max_in_flight == 0 {
            return Err(self.invalid(
                "shadow.max_in_flight",
                "must be at least 1 (use phase perl-only to stop shadowing)",
            ));
        }
        if c.timeout.is_zero() {
            return Err(self.invalid("shadow.timeout_ms", "must be greater than 0"));
        }
        if c.write_order.is_zero() {
            return Err(self.invalid("shadow.write_order_ms", "must be greater than 0"));
        }
        Ok(c)
    }

    fn trip(&self, raw: &RawTrip) -> Result<TripConfig, ConfigError> {
        let threshold = raw.fallback_rate_threshold.unwrap_or(0.0);
        if !(0.0..1.0).contains(&threshold) {
            return Err(self.invalid(
                "trip.fallback_rate_threshold",
                "must be at least 0.0 (any fallback trips) and below 1.0",
            ));
        }
        let window_s = raw.window_s.unwrap_or(300);
        if window_s == 0 {
            return Err(self.invalid("trip.window_s", "must be at least 1"));
        }
        let trip_to = match raw.trip_to.as_deref().unwrap_or("perl-only") {
            "previous" => TripTo::Previous,
            other => TripTo::Phase(other.parse().map_err(|e: crate::phase::UnknownPhase| {
                self.invalid("trip.trip_to", format!("{e}, or 'previous'"))
            })?),
        };
        Ok(TripConfig {
            fallback_rate_threshold: threshold,
            window: Duration::from_secs(window_s),
            trip_to,
        })
    }

    fn evidence(&self, raw: &RawEvidence, state_dir: &Path) -> Result<EvidenceConfig, ConfigError> {
        let max_bytes = raw.max_bytes.unwrap_or(1 << 30);
        let segment_bytes = raw
            .segment_bytes
            .unwrap_or((max_bytes / 8).clamp(4096, 64 << 20));
        if segment_bytes == 0 || segment_bytes > max_bytes {
            return Err(self.invalid(
                "evidence.segment_bytes",
                "must be between 1 and evidence.max_bytes",
            ));
        }
        let store_bodies = match raw.store_bodies.as_deref().unwrap_or("never") {
            "never" => StoreBodies::Never,
            "on-mismatch" => StoreBodies::OnMismatch,
            other => {
                return Err(self.invalid(
                    "evidence.store_bodies",
                    format!("unknown value '{other}' (expected 'never' or 'on-mismatch')"),
                ));
            }
        };
        let queue = raw.queue.unwrap_or(4096);
        if queue == 0 {
            return Err(self.invalid("evidence.queue", "must be at least 1"));
        }
        Ok(EvidenceConfig {
            dir: raw
                .dir
                .clone()
                .unwrap_or_else(|| state_dir.join("evidence")),
            max_bytes,
            segment_bytes,
            store_bodies,
            exemplars_per_fingerprint: raw.exemplars_per_fingerprint.unwrap_or(3),
            queue,
        })
    }

    fn phase(&self, key: &str, value: &str) -> Result<Phase, ConfigError> {
        value
            .parse()
            .map_err(|e: crate::phase::UnknownPhase| self.invalid(key, e.to_string()))
    }

    fn listen(&self, raw: &RawListen) -> Result<ListenConfig, ConfigError> {
        let Some(addrs) = &raw.addresses else {
            return Err(self.invalid(
                "listen.addresses",
                "missing: list the node's own addresses with port 8006 (pveproxy keeps 127.0.0.1:8006)",
            ));
        };
        if addrs.is_empty() {
            return Err(self.invalid("listen.addresses", "must name at least one address"));
        }
        let mut addresses = Vec::new();
        for a in addrs {
            let addr: SocketAddr = a.parse().map_err(|_| {
                self.invalid(
                    "listen.addresses",
                    format!("'{a}' is not an IP:port address (e.g. 192.0.2.10:8006 or [2001:db8::10]:8006)"),
                )
            })?;
            addresses.push(addr);
        }
        let cert = match (&raw.tls_cert, &raw.tls_key, &raw.cert_dir) {
            (Some(cert), Some(key), None) => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None, dir) => CertSource::PveproxyDir(
                dir.clone()
                    .unwrap_or_else(|| pve_migration_certs::pveproxy::NODE_CERT_DIR.into()),
            ),
            (Some(_), None, None) => {
                return Err(self.invalid(
                    "listen.tls_key",
                    "missing: tls_cert is set, tls_key must be too",
                ));
            }
            (None, Some(_), None) => {
                return Err(self.invalid(
                    "listen.tls_cert",
                    "missing: tls_key is set, tls_cert must be too",
                ));
            }
            (_, _, Some(_)) => {
                return Err(self.invalid(
                    "listen.cert_dir",
                    "cannot be combined with tls_cert/tls_key",
                ));
            }
        };
        let interval = raw.cert_check_interval_ms.unwrap_or(5_000);
        if interval == 0 {
            return Err(self.invalid("listen.cert_check_interval_ms", "must be greater than 0"));
        }
        Ok(ListenConfig {
            addresses,
            cert,
            cert_check_interval: Duration::from_millis(interval),
        })
    }

    fn backend(
        &self,
        section: &str,
        url_key: &str,
        url: &str,
        raw: &RawBackend,
    ) -> Result<BackendConfig, ConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| self.invalid(url_key, format!("'{url}' is not a URL")))?;
        if uri.scheme_str() != Some("https") {
            return Err(self.invalid(
                url_key,
                format!("'{url}': only https:// is supported (pveproxy speaks TLS only)"),
            ));
        }
        if uri.authority().is_none() {
            return Err(self.invalid(url_key, format!("'{url}': missing host")));
        }
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(self.invalid(url_key, format!("'{url}': must not have a path or query")));
        }
        let key = |k: &str| format!("{section}.{k}");
        let chosen = [
            raw.ca.is_some(),
            raw.fingerprint.is_some(),
            raw.insecure_skip_verify == Some(true),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if chosen > 1 {
            return Err(self.invalid(
                &key("fingerprint"),
                "choose one of ca, fingerprint and insecure_skip_verify",
            ));
        }
        let trust = if let Some(fp) = &raw.fingerprint {
            UpstreamTrust::Fingerprint(
                parse_fingerprint(fp)
                    .map_err(|e| self.invalid(&key("fingerprint"), e.to_string()))?,
            )
        } else if raw.insecure_skip_verify == Some(true) {
            UpstreamTrust::Insecure
        } else {
            UpstreamTrust::CaFile(
                raw.ca
                    .clone()
                    .unwrap_or_else(|| pve_migration_certs::pveproxy::CLUSTER_CA.into()),
            )
        };
        Ok(BackendConfig {
            url: uri,
            trust,
            server_name: raw.server_name.clone(),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms.unwrap_or(5_000)),
            timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(10_000)),
        })
    }
}

/// Hex SHA-256 of a text (the configuration digest stamped on evidence).
pub(crate) fn digest_of(text: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
        && name.len() <= 63
}

/// PVE's node name: the host name up to the first dot.
fn local_node_name() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let short = host.trim().split('.').next()?.to_owned();
    (!short.is_empty()).then_some(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node = "pve1"
phase = "shadow"
perl_api_base_url = "https://127.0.0.1:8006"

[listen]
addresses = ["192.0.2.10:8006", "[2001:db8::10]:8006"]

[backends.perl]
ca = "/etc/pve/pve-root-ca.pem"
[backends.rust]
url = "https://127.0.0.1:8016"
fingerprint = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"

[nodes.pve2]
phase = "rust-read-only"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            text,
            Some(Path::new("/etc/pve/network/migration.toml")),
            &Overrides::default(),
        )
    }

    #[test]
    fn good_file_validates_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.node, "pve1");
        assert_eq!(c.configured_phase(), Phase::Shadow);
        assert_eq!(c.node_phases["pve2"], Phase::RustReadOnly);
        assert_eq!(c.listen.addresses.len(), 2);
        assert_eq!(
            c.listen.cert,
            CertSource::PveproxyDir("/etc/pve/local".into())
        );
        assert!(matches!(
            c.rust.unwrap().trust,
            UpstreamTrust::Fingerprint(_)
        ));
        assert_eq!(
            c.source.unwrap(),
            Path::new("/etc/pve/network/migration.toml")
        );
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let text = GOOD.replace("[nodes.pve2]", "[nodes.pve2]\nphaze = \"shadow\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("migration.toml"), "{err}");
        assert!(err.contains("phaze"), "{err}");
        assert!(err.contains("line 16"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = parse(&GOOD.replace("\"shadow\"", "\"rust\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/pve/network/migration.toml: phase: unknown phase 'rust'"),
            "{err}"
        );
        let err = parse(&GOOD.replace("https://127.0.0.1:8016", "http://127.0.0.1:8016"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("backends.rust.url"), "{err}");
        let err = parse(&GOOD.replace("192.0.2.10:8006", "192.0.2.10"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen.addresses"), "{err}");
        let err = parse(&GOOD.replace("AB:CD:EF:01", "XY"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("backends.rust.fingerprint"), "{err}");
    }

    #[test]
    fn flags_override_and_are_named_in_errors() {
        let overrides = Overrides {
            listen: vec!["127.0.0.1:0".into()],
            phase: Some("rust-full".into()),
            ..Overrides::default()
        };
        let c = Config::from_toml(GOOD, None, &overrides).unwrap();
        assert_eq!(c.listen.addresses, vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(c.phase, Phase::RustFull);

        let bad = Overrides {
            perl_url: Some("ftp://x".into()),
            ..overrides
        };
        let err = Config::from_toml(GOOD, None, &bad).unwrap_err().to_string();
        assert!(
            err.starts_with("command line --perl-url: perl_api_base_url:"),
            "{err}"
        );
    }

    #[test]
    fn engine_sections_validate() {
        let text = format!(
            "{GOOD}\n[shadow]\nmax_in_flight = 8\nsample = 0.5\n[trip]\nwindow_s = 60\ntrip_to = \"previous\"\n[evidence]\nstore_bodies = \"on-mismatch\"\nmax_bytes = 1048576\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.shadow.max_in_flight, 8);
        assert_eq!(c.trip.trip_to, TripTo::Previous);
        assert_eq!(c.evidence.store_bodies, StoreBodies::OnMismatch);
        assert_eq!(
            c.evidence.dir,
            Path::new("/var/lib/pve-network-migration/evidence")
        );
        assert_eq!(c.digest.len(), 16);
        for (bad, key) in [
            ("[shadow]\nsample = 1.5", "shadow.sample"),
            ("[trip]\ntrip_to = \"rust\"", "trip.trip_to"),
            (
                "[trip]\nfallback_rate_threshold = 1.0",
                "trip.fallback_rate_threshold",
            ),
            (
                "[evidence]\nstore_bodies = \"always\"",
                "evidence.store_bodies",
            ),
        ] {
            let err = parse(&format!("{GOOD}\n{bad}\n")).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn per_node_listen_addresses_in_the_shared_file() {
        let text = "node = \"pve2\"\n[nodes.pve1]\nlisten = [\"192.0.2.11:8006\"]\n[nodes.pve2]\nphase = \"shadow\"\nlisten = [\"192.0.2.12:8006\"]\n";
        let c = parse(text).unwrap();
        assert_eq!(c.listen.addresses, vec!["192.0.2.12:8006".parse().unwrap()]);
        let err = parse(&text.replace("192.0.2.12:8006", "pve2:8006"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodes.pve2.listen"), "{err}");
        let err = parse("node = \"pve3\"\n[nodes.pve1]\nlisten = [\"192.0.2.11:8006\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen.addresses: missing"), "{err}");
    }

    #[test]
    fn missing_listen_is_explained() {
        let err = Config::from_overrides(&Overrides {
            node: Some("pve1".into()),
            ..Overrides::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen.addresses: missing"), "{err}");
    }
}
