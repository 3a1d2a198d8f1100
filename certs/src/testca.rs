//! A throw-away certificate authority for tests and `demo`.
//!
//! Leaf certificates carry the names and addresses they are issued for as
//! subject alternative names (IP addresses become IP SANs), like the
//! `pve-ssl.pem` PVE issues for its nodes.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::CertError;

/// A CA that signs leaf certificates.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM encoded.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl IssuedCert {
    /// Writes the certificate and key files (the key with mode 0600). Each
    /// file is replaced atomically (written beside it, then renamed), so a
    /// reader polling the files sees the old or the new one, never a torn
    /// one; between the two renames it may see a new key with the old
    /// certificate.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn write(&self, cert: &Path, key: &Path) -> std::io::Result<()> {
        write_atomic(key, self.key_pem.as_bytes(), 0o600)?;
        write_atomic(cert, self.cert_pem.as_bytes(), 0o644)
    }
}

/// Replaces `path` with `data` by writing a sibling and renaming it.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{}: not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

impl TestCa {
    /// A new CA with a fresh ECDSA P-256 key, valid from a day ago for ten years.
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn new(common_name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "pve-network-migration test");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA certificate (PEM), the trust anchor to give clients.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_cert(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, self.cert_pem().as_bytes(), 0o644)
    }

    /// Issues a server certificate for `names`, valid from an hour ago for a year.
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn issue(&self, names: &[&str]) -> Result<IssuedCert, CertError> {
        let now = OffsetDateTime::now_utc();
        self.issue_with_validity(names, now - Duration::hours(1), now + Duration::days(365))
    }

    /// Issues a server certificate with an explicit validity period (for expiry tests).
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn issue_with_validity(
        &self,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCert, CertError> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
