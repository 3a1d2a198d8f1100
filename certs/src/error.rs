//! The one error type of this crate; every variant names the file it is about.

use std::path::PathBuf;

/// Why a certificate, key or trust anchor could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no `CERTIFICATE` PEM block.
    #[error("{}: no certificate found (expected a PEM 'BEGIN CERTIFICATE' block)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key PEM block.
    #[error("{}: no private key found (expected a PEM 'BEGIN PRIVATE KEY' or 'BEGIN RSA PRIVATE KEY' block)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A PEM block could not be decoded.
    #[error("{}: invalid PEM: {message}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// The certificate's DER could not be parsed.
    #[error("{}: invalid certificate: {message}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The key is of a type the provider does not support, or does not match the certificate.
    #[error("{}: key cannot be used with {}: {message}", key.display(), cert.display())]
    BadKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        message: String,
    },
    /// The certificate is outside its validity period.
    #[error("{}: certificate is not valid now (valid from {not_before} to {not_after})", path.display())]
    NotValidNow {
        /// The file.
        path: PathBuf,
        /// RFC 3339 start of validity.
        not_before: String,
        /// RFC 3339 end of validity.
        not_after: String,
    },
    /// A CA file did not yield any usable trust anchor.
    #[error("{}: no usable CA certificate: {message}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A pinned fingerprint is not 32 hex bytes.
    #[error(
        "invalid SHA-256 fingerprint '{value}': expected 32 hex bytes, optionally colon separated"
    )]
    BadFingerprint {
        /// The value as given.
        value: String,
    },
    /// Generating a test certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}
