//! The daemon's settings: flags, and the same settings in a `--config` file.
//!
//! ```toml
//! listen = "127.0.0.1:8016"
//! tls_cert = "/etc/pve/local/pve-ssl.pem"   # both or neither; default:
//! tls_key = "/etc/pve/local/pve-ssl.key"    # pveproxy's choice in /etc/pve/local
//! node = "pve1"                             # default: the host name up to the first dot
//! root = "/"                                # every host path is resolved under it
//! links = "/run/links.json"                 # default: ask the kernel
//! debug = false
//! ```
//!
//! Flags override the file. Unknown keys and bad values are errors that name
//! the key and the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8016";

/// The settings as given (flags or file), before defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// `listen`.
    pub listen: Option<String>,
    /// `tls_cert`.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`.
    pub tls_key: Option<PathBuf>,
    /// `node`.
    pub node: Option<String>,
    /// `root`.
    pub root: Option<PathBuf>,
    /// `links`.
    pub links: Option<PathBuf>,
    /// `debug`.
    pub debug: Option<bool>,
}

/// Where the certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertChoice {
    /// Explicit files.
    Files {
        /// PEM chain.
        cert: PathBuf,
        /// PEM key.
        key: PathBuf,
    },
    /// pveproxy's choice in this directory (`pveproxy-ssl.*` over `pve-ssl.*`).
    NodeDir(PathBuf),
}

/// The validated settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The certificate.
    pub cert: CertChoice,
    /// The node served.
    pub node: String,
    /// The host root.
    pub root: PathBuf,
    /// Link state from a file instead of the kernel.
    pub links: Option<PathBuf>,
    /// Verbose logs.
    pub debug: bool,
}

/// A settings error: names the key (or flag) and the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// PVE's node name: the host name up to the first dot.
pub fn local_node_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    name.split('.').next().unwrap_or("localhost").to_string()
}

fn is_node_name(s: &str) -> bool {
    // pve-node: [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

impl RawSettings {
    /// Reads a settings file.
    ///
    /// # Errors
    ///
    /// When it cannot be read or has unknown keys or bad values; the message
    /// names the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError(format!("{}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| SettingsError(format!("{}: {}", path.display(), e.to_string().trim_end())))
    }

    /// `other`'s settings where given, ours elsewhere.
    pub fn overridden_by(self, other: RawSettings) -> RawSettings {
        RawSettings {
            listen: other.listen.or(self.listen),
            tls_cert: other.tls_cert.or(self.tls_cert),
            tls_key: other.tls_key.or(self.tls_key),
            node: other.node.or(self.node),
            root: other.root.or(self.root),
            links: other.links.or(self.links),
            debug: other.debug.or(self.debug),
        }
    }

    /// Validates and fills in defaults. `origin` names where the settings
    /// came from in messages (`--config FILE` or the flags).
    ///
    /// # Errors
    ///
    /// A bad address or node name, or only one of `tls_cert` / `tls_key`.
    pub fn validate(self, origin: &str) -> Result<Settings, SettingsError> {
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            SettingsError(format!(
                "{origin}: listen = '{listen_text}' is not an address (IP:PORT)"
            ))
        })?;
        let root = self.root.unwrap_or_else(|| PathBuf::from("/"));
        let cert = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => CertChoice::Files { cert, key },
            (None, None) => CertChoice::NodeDir(root.join("etc/pve/local")),
            (Some(_), None) => {
                return Err(SettingsError(format!(
                    "{origin}: tls_cert is set but tls_key is not; set both or neither"
                )));
            }
            (None, Some(_)) => {
                return Err(SettingsError(format!(
                    "{origin}: tls_key is set but tls_cert is not; set both or neither"
                )));
            }
        };
        let node = self.node.unwrap_or_else(local_node_name);
        if !is_node_name(&node) {
            return Err(SettingsError(format!(
                "{origin}: node = '{node}' is not a valid node name"
            )));
        }
        Ok(Settings {
            listen,
            cert,
            node,
            root,
            links: self.links,
            debug: self.debug.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_flags_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\nnode = \"pve1\"\nroot = \"/srv/n\"\n",
        )
        .unwrap();
        let file = RawSettings::from_file(&f).unwrap();
        let flags = RawSettings {
            node: Some("pve2".into()),
            ..RawSettings::default()
        };
        let s = file.overridden_by(flags).validate("x").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(s.node, "pve2");
        assert_eq!(
            s.cert,
            CertChoice::NodeDir(PathBuf::from("/srv/n/etc/pve/local"))
        );
        assert!(!s.debug);
    }

    #[test]
    fn errors_name_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\nlisten_addr = 1\n").unwrap();
        let e = RawSettings::from_file(&f).unwrap_err().0;
        assert!(e.starts_with(&f.display().to_string()), "{e}");
        assert!(e.contains("unknown field `listen_addr`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = RawSettings {
            listen: Some("nowhere".into()),
            ..RawSettings::default()
        }
        .validate("--config d.toml")
        .unwrap_err()
        .0;
        assert_eq!(
            e,
            "--config d.toml: listen = 'nowhere' is not an address (IP:PORT)"
        );
        let e = RawSettings {
            tls_cert: Some("c".into()),
            ..RawSettings::default()
        }
        .validate("flags")
        .unwrap_err()
        .0;
        assert_eq!(
            e,
            "flags: tls_cert is set but tls_key is not; set both or neither"
        );
        let e = RawSettings {
            node: Some("pve_1".into()),
            ..RawSettings::default()
        }
        .validate("flags")
        .unwrap_err()
        .0;
        assert_eq!(e, "flags: node = 'pve_1' is not a valid node name");
    }
}
