//! Certificates and service plumbing shared by the node's HTTPS daemons (the
//! gateway and the Rust backend) and their test rigs.
//!
//! * [`pem`]: load a PEM chain and key and check that they belong together;
//! * [`pveproxy`]: pveproxy's file conventions (`pveproxy-ssl.pem` over `pve-ssl.pem`);
//! * [`reload`]: a rustls [`ResolvesServerCert`](rustls::server::ResolvesServerCert)
//!   that picks up renewed files and keeps the last good certificate on a bad one;
//! * [`upstream`]: client configs that verify pveproxy against `pve-root-ca.pem`
//!   or a pinned SHA-256 fingerprint;
//! * [`testca`]: a throw-away CA and leaf certificates for tests and `demo`;
//! * [`server_config`]: the TLS settings both daemons serve with;
//! * [`sd_notify`]: systemd readiness notifications (`Type=notify` units).
//!
//! Everything uses one crypto provider, aws-lc-rs ([`provider`]); nothing here
//! installs a process-wide default.

mod error;
pub mod pem;
pub mod pveproxy;
pub mod reload;
pub mod sd_notify;
pub mod testca;
pub mod upstream;

use std::sync::Arc;

pub use error::CertError;
use rustls::crypto::CryptoProvider;

/// The crypto provider every TLS config of the project is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS settings pveproxy's clients expect from a server: TLS 1.2 and
/// 1.3, ALPN `h2` and `http/1.1`, the certificate from `resolver`.
pub fn server_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Formats a SHA-256 digest the way Proxmox shows certificate fingerprints
/// (`AA:BB:…`, upper case, colon separated).
pub fn format_fingerprint(digest: &[u8]) -> String {
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// SHA-256 of a DER certificate.
pub fn sha256(der: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
