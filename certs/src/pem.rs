//! Loading a PEM certificate chain and private key into a rustls [`CertifiedKey`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

/// What an operator wants to know about a loaded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate file it came from.
    pub path: PathBuf,
    /// Subject distinguished name of the end-entity certificate.
    pub subject: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// SHA-256 fingerprint of the end-entity certificate, `AA:BB:…`.
    pub fingerprint: String,
}

impl CertInfo {
    /// Whether `now` (seconds since the epoch) is inside the validity period.
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Reads a file, naming it in the error.
///
/// # Errors
/// [`CertError::Io`] when the file cannot be read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Parses every `CERTIFICATE` block of `pem` (leaf first, as pveproxy expects).
///
/// # Errors
/// [`CertError::BadPem`] for an undecodable block, [`CertError::NoCertificate`]
/// when there is none.
pub fn parse_chain(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadPem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// Parses the first private key block (PKCS#8, PKCS#1 or SEC1) of `pem`.
///
/// # Errors
/// [`CertError::NoKey`] when there is none, [`CertError::BadPem`] when it is undecodable.
pub fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => CertError::NoKey {
            path: path.to_owned(),
        },
        other => CertError::BadPem {
            path: path.to_owned(),
            message: other.to_string(),
        },
    })
}

/// Describes the end-entity certificate of a chain.
///
/// # Errors
/// [`CertError::BadCertificate`] when the DER does not parse.
pub fn describe(path: &Path, leaf: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        CertError::BadCertificate {
            path: path.to_owned(),
            message: e.to_string(),
        }
    })?;
    let validity = cert.validity();
    Ok(CertInfo {
        path: path.to_owned(),
        subject: cert.subject().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        fingerprint: crate::format_fingerprint(&crate::sha256(leaf.as_ref())),
    })
}

/// Builds a [`CertifiedKey`] from PEM bytes and checks that key and certificate match.
///
/// # Errors
/// Any PEM error, or [`CertError::BadKey`] when the key is unsupported or belongs
/// to another certificate.
pub fn certified_key_from_pem(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, CertInfo), CertError> {
    let chain = parse_chain(cert_path, cert_pem)?;
    let info = describe(cert_path, &chain[0])?;
    let key = parse_key(key_path, key_pem)?;
    let certified =
        CertifiedKey::from_der(chain, key, &crate::provider()).map_err(|e| CertError::BadKey {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            message: e.to_string(),
        })?;
    Ok((Arc::new(certified), info))
}

/// Loads a certificate chain and key from two files.
///
/// # Errors
/// See [`certified_key_from_pem`] and [`read_file`].
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Arc<CertifiedKey>, CertInfo), CertError> {
    let cert_pem = read_file(cert_path)?;
    let key_pem = read_file(key_path)?;
    certified_key_from_pem(cert_path, &cert_pem, key_path, &key_pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testca::TestCa;

    #[test]
    fn loads_matching_pair_and_rejects_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("test CA").unwrap();
        let a = ca.issue(&["localhost"]).unwrap();
        let b = ca.issue(&["localhost"]).unwrap();
        let (cert, key) = (dir.path().join("a.pem"), dir.path().join("a.key"));
        a.write(&cert, &key).unwrap();
        let (_, info) = load_certified_key(&cert, &key).unwrap();
        assert!(info.subject.contains("localhost"), "{}", info.subject);
        assert_eq!(info.fingerprint.len(), 32 * 3 - 1);

        std::fs::write(&key, &b.key_pem).unwrap();
        let err = load_certified_key(&cert, &key).unwrap_err();
        assert!(matches!(err, CertError::BadKey { .. }), "{err}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("empty.pem");
        std::fs::write(&cert, "not a pem\n").unwrap();
        let err = load_certified_key(&cert, &cert).unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }));
        assert!(err.to_string().contains("empty.pem"), "{err}");

        let missing = dir.path().join("missing.pem");
        let err = load_certified_key(&missing, &missing).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
