//! The node's network files, parsed once per change.
//!
//! PVE's daemons keep the parsed interfaces file in a cache that inotify
//! invalidates; here a request looks at the files' identity (device, inode,
//! size, modification time) and the link state, and parses only when one of
//! them changed. Every writer — PVE's Perl, this backend, `pvenet` —
//! replaces the files by rename, which gives them a new inode, so a changed
//! file is never mistaken for the cached one. The `changes` diff is kept
//! with the parse.
//!
//! Writes use the same snapshot under the network lock: the stat happens
//! after the lock is taken, so what was cached is what is on disk.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use pve_network_core::fs as netfs;
use pve_network_core::{ApiError, Host, HostState, Links, NetworkFiles};

use crate::links::LinkSource;
use crate::paths::HostPaths;

/// A file's identity, `None` when it does not exist.
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// What identifies the kernel's links: the links file's identity, or the
/// text `ip` printed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LinksKey {
    File(Stamp),
    Kernel(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    interfaces: Stamp,
    pending: Stamp,
    links: LinksKey,
    ifupdown2: bool,
    openvswitch: bool,
}

/// One parsed state of the node's files.
#[derive(Debug)]
pub struct Snapshot {
    key: Key,
    /// The files, with their parse.
    pub files: NetworkFiles,
    /// The node as the operations see it.
    pub host: Host,
    changes: OnceLock<Option<String>>,
}

impl Snapshot {
    /// The pending changes (computed once per snapshot).
    pub fn changes(&self, compute: impl FnOnce(&NetworkFiles) -> Option<String>) -> Option<String> {
        self.changes.get_or_init(|| compute(&self.files)).clone()
    }
}

/// The last snapshot and the last link state.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    last: Mutex<Option<Arc<Snapshot>>>,
    links: Mutex<Option<(LinksKey, Arc<HostState>)>>,
}

impl SnapshotCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn links(&self, source: &LinkSource) -> Result<(LinksKey, Arc<HostState>), ApiError> {
        let key = match source {
            LinkSource::File(p) => LinksKey::File(stamp(p)),
            LinkSource::Kernel => LinksKey::Kernel(source.read_text().map_err(ApiError::internal)?),
        };
        let mut cached = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, state)) = cached.as_ref()
            && *k == key
        {
            return Ok((key, state.clone()));
        }
        let state = Arc::new(match (&key, source) {
            (LinksKey::Kernel(text), _) => {
                HostState::from_ip_json(text).map_err(|e| ApiError::internal(e.to_string()))?
            }
            (_, source) => source.read().map_err(ApiError::internal)?,
        });
        *cached = Some((key.clone(), state.clone()));
        Ok((key, state))
    }

    /// The node's files and their parse now.
    ///
    /// # Errors
    ///
    /// When the files or the link state cannot be read.
    pub fn load(
        &self,
        node: &str,
        paths: &HostPaths,
        source: &LinkSource,
    ) -> Result<Arc<Snapshot>, ApiError> {
        let (links_key, links) = self.links(source)?;
        let net = &paths.network;
        let key = Key {
            interfaces: stamp(&net.interfaces.local),
            pending: stamp(&net.pending.local),
            links: links_key,
            ifupdown2: paths.has_ifupdown2(),
            openvswitch: paths.has_openvswitch(),
        };
        if let Some(s) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && s.key == key
        {
            return Ok(s.clone());
        }
        let host = Host {
            node: node.to_string(),
            links: Links::Known((*links).clone()),
            ifupdown2: key.ifupdown2,
            openvswitch: key.openvswitch,
        };
        let files = netfs::read(net)?.with_parsed(&host);
        let snapshot = Arc::new(Snapshot {
            key: key.clone(),
            files,
            host,
            changes: OnceLock::new(),
        });
        // a file replaced while it was read: answer from what was read, but
        // do not keep it under a stamp it may not match
        let unchanged = stamp(&net.interfaces.local) == key.interfaces
            && stamp(&net.pending.local) == key.pending;
        if unchanged {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_is_parsed_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/network")).unwrap();
        std::fs::write(root.join("links.json"), "[]").unwrap();
        let write = |text: &str| {
            // as every writer does: a new file renamed over the old one
            let tmp = root.join("etc/network/interfaces.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, root.join("etc/network/interfaces")).unwrap();
        };
        write("iface eno1 inet manual\n");
        let paths = HostPaths::new(root);
        let links = LinkSource::File(root.join("links.json"));
        let cache = SnapshotCache::new();
        let a = cache.load("pve", &paths, &links).unwrap();
        let b = cache.load("pve", &paths, &links).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "unchanged files are not parsed again");
        // same size, other content
        write("iface eno2 inet manual\n");
        let c = cache.load("pve", &paths, &links).unwrap();
        assert!(c.files.read(&c.host).ifaces.contains_key("eno2"));
        // a pending file appears
        std::fs::write(
            root.join("etc/network/interfaces.new"),
            "iface eno3 inet manual\n",
        )
        .unwrap();
        let d = cache.load("pve", &paths, &links).unwrap();
        assert!(d.files.read(&d.host).ifaces.contains_key("eno3"));
        // other link state
        std::fs::write(
            root.join("links.json"),
            r#"[{"ifname":"eno3","link_type":"ether","flags":["UP"]}]"#,
        )
        .unwrap();
        let e = cache.load("pve", &paths, &links).unwrap();
        assert_eq!(
            e.files.read(&e.host).ifaces["eno3"].get("active"),
            Some(&pve_network_core::Value::Int(1))
        );
    }
}
