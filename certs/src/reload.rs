//! A server certificate that follows its files (ACME renewals, `pvecm updatecerts`).
//!
//! [`ReloadingCertResolver::check`] re-reads the files, and swaps the served
//! certificate only when the new pair loads, matches, and is valid now. A
//! broken, mismatched or expired replacement is reported and the last good
//! certificate keeps serving: a bad renewal must never take the node's front
//! door down. The caller decides how often to check (the gateway polls, since
//! `/etc/pve` is a FUSE file system where inotify is unreliable).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::CertError;
use crate::pem::{CertInfo, certified_key_from_pem, read_file};

/// Where the served certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// An explicit certificate chain and key file.
    Files {
        /// PEM chain, leaf first.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// A pveproxy node directory, see [`crate::pveproxy::cert_paths`].
    PveproxyDir(PathBuf),
}

impl CertSource {
    /// The two files to read now.
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        match self {
            CertSource::Files { cert, key } => (cert.clone(), key.clone()),
            CertSource::PveproxyDir(dir) => crate::pveproxy::cert_paths(dir),
        }
    }
}

/// The result of one [`ReloadingCertResolver::check`].
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The files are byte-identical to what is being served.
    Unchanged,
    /// A new certificate is being served.
    Reloaded(CertInfo),
    /// The files changed but could not be used; the previous certificate stays.
    Rejected(CertError),
}

#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// Contents last looked at, to tell "unchanged" from "changed but rejected".
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    cert_path: PathBuf,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// A [`ResolvesServerCert`] that always answers with the last good certificate.
#[derive(Debug)]
pub struct ReloadingCertResolver {
    source: CertSource,
    served: ArcSwap<Served>,
    seen: Mutex<Seen>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn not_valid_now(path: &Path, info: &CertInfo) -> CertError {
    let fmt = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| t.to_string())
    };
    CertError::NotValidNow {
        path: path.to_owned(),
        not_before: fmt(info.not_before),
        not_after: fmt(info.not_after),
    }
}

impl ReloadingCertResolver {
    /// Loads the initial certificate.
    ///
    /// A certificate outside its validity period is still served at start-up
    /// (with a warning): pveproxy would serve it too, and refusing to start
    /// would only replace a browser warning with an outage.
    ///
    /// # Errors
    /// When the files cannot be read or do not form a usable pair.
    pub fn load(source: CertSource) -> Result<Self, CertError> {
        let (cert_path, key_path) = source.paths();
        let cert = read_file(&cert_path)?;
        let key = read_file(&key_path)?;
        let (certified, info) = certified_key_from_pem(&cert_path, &cert, &key_path, &key)?;
        if !info.valid_at(now()) {
            tracing::warn!(error = %not_valid_now(&cert_path, &info), "serving a certificate outside its validity period");
        }
        Ok(Self {
            source,
            served: ArcSwap::from_pointee(Served {
                key: certified,
                info,
            }),
            seen: Mutex::new(Seen {
                cert_path,
                cert,
                key,
            }),
        })
    }

    /// Re-reads the files and swaps in a changed, valid certificate.
    ///
    /// Failures are logged once per distinct file content, not on every poll.
    pub fn check(&self) -> ReloadOutcome {
        let (cert_path, key_path) = self.source.paths();
        let read = read_file(&cert_path).and_then(|c| Ok((c, read_file(&key_path)?)));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (cert, key) = match read {
            Ok(pair) => pair,
            Err(e) => {
                // A missing or unreadable file is a change too (half-written renewal).
                let marker = Seen {
                    cert_path: cert_path.clone(),
                    ..Seen::default()
                };
                if *seen != marker {
                    tracing::warn!(error = %e, "certificate reload failed, keeping the current certificate");
                    *seen = marker;
                }
                return ReloadOutcome::Rejected(e);
            }
        };
        if seen.cert_path == cert_path && seen.cert == cert && seen.key == key {
            return ReloadOutcome::Unchanged;
        }
        let outcome = match certified_key_from_pem(&cert_path, &cert, &key_path, &key) {
            Ok((_, info)) if !info.valid_at(now()) => {
                ReloadOutcome::Rejected(not_valid_now(&cert_path, &info))
            }
            Ok((certified, info)) => {
                self.served.store(Arc::new(Served {
                    key: certified,
                    info: info.clone(),
                }));
                tracing::info!(file = %cert_path.display(), subject = %info.subject, fingerprint = %info.fingerprint, "certificate reloaded");
                ReloadOutcome::Reloaded(info)
            }
            Err(e) => ReloadOutcome::Rejected(e),
        };
        if let ReloadOutcome::Rejected(e) = &outcome {
            tracing::warn!(error = %e, "certificate reload rejected, keeping the current certificate");
        }
        *seen = Seen {
            cert_path,
            cert,
            key,
        };
        outcome
    }

    /// The certificate being served.
    pub fn current(&self) -> CertInfo {
        self.served.load().info.clone()
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served.load().key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testca::TestCa;

    #[test]
    fn keeps_last_good_and_picks_up_a_good_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new("CA").unwrap();
        let first = ca.issue(&["localhost"]).unwrap();
        first
            .write(&d.join("pve-ssl.pem"), &d.join("pve-ssl.key"))
            .unwrap();
        let r = ReloadingCertResolver::load(CertSource::PveproxyDir(d.to_owned())).unwrap();
        let original = r.current();
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));

        // Broken replacement: rejected once, then "unchanged" while it stays broken.
        std::fs::write(d.join("pve-ssl.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        assert!(matches!(r.check(), ReloadOutcome::Rejected(_)));
        assert_eq!(r.current(), original);
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));

        // Expired replacement: rejected.
        let expired = ca
            .issue_with_validity(
                &["localhost"],
                rcgen::date_time_ymd(2001, 1, 1),
                rcgen::date_time_ymd(2002, 1, 1),
            )
            .unwrap();
        expired
            .write(&d.join("pve-ssl.pem"), &d.join("pve-ssl.key"))
            .unwrap();
        match r.check() {
            ReloadOutcome::Rejected(CertError::NotValidNow { .. }) => {}
            other => panic!("expected NotValidNow, got {other:?}"),
        }
        assert_eq!(r.current(), original);

        // An ACME certificate appears: pveproxy-ssl.* wins.
        let acme = ca.issue(&["localhost"]).unwrap();
        acme.write(&d.join("pveproxy-ssl.pem"), &d.join("pveproxy-ssl.key"))
            .unwrap();
        match r.check() {
            ReloadOutcome::Reloaded(info) => {
                assert!(info.path.ends_with("pveproxy-ssl.pem"));
                assert_ne!(info.fingerprint, original.fingerprint);
            }
            other => panic!("expected Reloaded, got {other:?}"),
        }
    }
}
