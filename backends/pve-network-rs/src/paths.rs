//! Every host path the backend touches, resolved under `--root`.
//!
//! On a node the root is `/`; tests, the demo and the oracle replay run the
//! daemon on a directory that looks like a node. Messages, diffs and task
//! logs keep naming the host paths (`/etc/network/interfaces`), so a rooted
//! daemon answers exactly like one on a node.

use std::path::{Path, PathBuf};

use pve_network_core::fs::NetworkPaths;

/// The backend's view of a node's file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    root: PathBuf,
    /// `/etc/network/interfaces`, `.new` and the lock.
    pub network: NetworkPaths,
}

impl HostPaths {
    /// The paths under `root` (`/` on a node).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            network: NetworkPaths::under(&root),
            root,
        }
    }

    /// The root every path is resolved under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A host path (`/etc/pve/user.cfg`) on this machine.
    pub fn host(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// `/etc/pve`.
    pub fn pve_dir(&self) -> PathBuf {
        self.host("/etc/pve")
    }

    /// `/etc/pve/local`, where the node certificate is.
    pub fn node_cert_dir(&self) -> PathBuf {
        self.host("/etc/pve/local")
    }

    /// `/etc/pve/network/migration.toml`, the gateway's cluster-wide file.
    pub fn migration_toml(&self) -> PathBuf {
        self.host("/etc/pve/network/migration.toml")
    }

    /// `/usr/share/ifupdown2`: its presence means ifupdown2 is installed.
    pub fn ifupdown2_dir(&self) -> PathBuf {
        self.host("/usr/share/ifupdown2")
    }

    /// `/usr/sbin/ifreload`.
    pub fn ifreload(&self) -> PathBuf {
        self.host("/usr/sbin/ifreload")
    }

    /// `/usr/bin/ovs-vsctl`: executable when Open vSwitch is installed.
    pub fn ovs_vsctl(&self) -> PathBuf {
        self.host("/usr/bin/ovs-vsctl")
    }

    /// `/var/log/pve/tasks`.
    pub fn tasks_dir(&self) -> PathBuf {
        self.host("/var/log/pve/tasks")
    }

    /// `/var/lib/pve-network-rs/backups`.
    pub fn backups_dir(&self) -> PathBuf {
        self.host("/var/lib/pve-network-rs/backups")
    }

    /// Whether ifupdown2 is installed.
    pub fn has_ifupdown2(&self) -> bool {
        self.ifupdown2_dir().exists()
    }

    /// Whether Open vSwitch is installed (`ovs-vsctl` is executable).
    pub fn has_openvswitch(&self) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.ovs_vsctl())
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
}
