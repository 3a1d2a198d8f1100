//! pveproxy's certificate file convention.
//!
//! pveproxy serves `pveproxy-ssl.pem` + `pveproxy-ssl.key` from the node's
//! directory (`/etc/pve/local/`) when *both* exist (a custom or ACME
//! certificate), and the cluster-CA-signed `pve-ssl.pem` + `pve-ssl.key`
//! otherwise. The gateway follows the same rule so it presents exactly the
//! certificate clients already trust.

use std::path::{Path, PathBuf};

/// The node directory pveproxy reads its certificate from.
pub const NODE_CERT_DIR: &str = "/etc/pve/local";
/// The cluster CA that signs every node's `pve-ssl.pem`.
pub const CLUSTER_CA: &str = "/etc/pve/pve-root-ca.pem";

/// Picks the certificate and key file pveproxy would use from `dir`.
///
/// Evaluated again on every reload check, so an ACME certificate that appears
/// later is picked up, and one that is removed falls back to `pve-ssl.pem`.
pub fn cert_paths(dir: &Path) -> (PathBuf, PathBuf) {
    let custom = (dir.join("pveproxy-ssl.pem"), dir.join("pveproxy-ssl.key"));
    if custom.0.is_file() && custom.1.is_file() {
        custom
    } else {
        (dir.join("pve-ssl.pem"), dir.join("pve-ssl.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_certificate_wins_only_when_both_files_exist() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(cert_paths(d).0, d.join("pve-ssl.pem"));
        std::fs::write(d.join("pveproxy-ssl.pem"), "x").unwrap();
        assert_eq!(cert_paths(d).0, d.join("pve-ssl.pem"), "key missing");
        std::fs::write(d.join("pveproxy-ssl.key"), "x").unwrap();
        assert_eq!(
            cert_paths(d),
            (d.join("pveproxy-ssl.pem"), d.join("pveproxy-ssl.key"))
        );
    }
}
