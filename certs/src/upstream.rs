//! TLS client configs for the upstream backends.
//!
//! pveproxy's certificate is signed by the cluster CA (`/etc/pve/pve-root-ca.pem`)
//! unless the operator installed a custom one, so the default is to verify
//! against that CA. A pinned SHA-256 fingerprint covers custom certificates
//! whose names do not include the loopback address. Skipping verification
//! exists only as an explicit, loudly logged operator choice.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::CertError;
use crate::pem::{parse_chain, read_file};

/// How the upstream's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTrust {
    /// Verify the chain and the name against the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Accept exactly the end-entity certificate with this SHA-256 digest.
    Fingerprint([u8; 32]),
    /// Accept any certificate (handshake signatures are still checked).
    Insecure,
}

/// Parses a fingerprint as Proxmox prints it (`AA:BB:…`) or as plain hex.
///
/// # Errors
/// [`CertError::BadFingerprint`] when it is not 32 hex bytes.
pub fn parse_fingerprint(value: &str) -> Result<[u8; 32], CertError> {
    let bad = || CertError::BadFingerprint {
        value: value.to_owned(),
    };
    let hex: String = value.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Builds a client config for one upstream, with the given ALPN protocols.
///
/// # Errors
/// When the CA file cannot be read or holds no usable certificate.
pub fn client_config(trust: &UpstreamTrust, alpn: &[&[u8]]) -> Result<ClientConfig, CertError> {
    let provider = crate::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions");
    let mut config = match trust {
        UpstreamTrust::CaFile(path) => {
            let pem = read_file(path)?;
            let mut roots = RootCertStore::empty();
            let certs = parse_chain(path, &pem).map_err(|e| CertError::BadCa {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(CertError::BadCa {
                    path: path.clone(),
                    message: format!("{ignored} certificate(s) could not be used as trust anchors"),
                });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        UpstreamTrust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: Some(*pin),
                provider,
            }))
            .with_no_client_auth(),
        UpstreamTrust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Checks the end-entity certificate against a pin (or not at all when `pin`
/// is `None`), and the handshake signatures against that certificate's key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) if crate::sha256(end_entity.as_ref()) == pin => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_formats() {
        let colon = "AB:".repeat(31) + "CD";
        assert_eq!(parse_fingerprint(&colon).unwrap()[31], 0xCD);
        assert_eq!(parse_fingerprint(&"ab".repeat(32)).unwrap()[0], 0xAB);
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pve-root-ca.pem");
        std::fs::write(&p, "garbage").unwrap();
        let err = client_config(&UpstreamTrust::CaFile(p), &[b"http/1.1"]).unwrap_err();
        assert!(err.to_string().contains("pve-root-ca.pem"), "{err}");
    }
}
