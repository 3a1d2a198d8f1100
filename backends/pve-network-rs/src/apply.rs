//! Applying the pending network configuration: what PVE's reload worker
//! does, with a backup first and a check of the kernel after.
//!
//! [`NetworkApplier::run`] is the task body, the same for the API's apply
//! and for `pvenet apply`:
//!
//! 1. under the network lock, copy `/etc/network/interfaces` (and the
//!    pending `interfaces.new`) to `/var/lib/pve-network-rs/backups/TS/`
//!    before anything changes;
//! 2. rename `interfaces.new` over `interfaces` (when there is one);
//! 3. run `ifreload -a` (`LC_ALL=C`); its stdout goes to the task log, of its
//!    stderr only the lines PVE keeps (`… warning: IFACE: …` / `… error:
//!    IFACE: …`, as `IFACE : LINE `); a non-zero exit fails the task with
//!    PVE's `command 'ifreload -a' failed: exit code N`;
//! 4. compare the kernel with the new file ([`pve_network_core::verify`]):
//!    every difference is a `StorageVlanManager:` line in the task log and
//!    the journal (information, not a task failure: PVE's apply does not
//!    check this at all, and a clean reload can still leave a VLAN missing).
//!
//! The SDN generators PVE's worker also runs (`/etc/network/interfaces.d/sdn`,
//! DHCP, WireGuard, FRR) belong to the SDN backend and are not run here.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pve_network_core::api::ApplyRequest;
use pve_network_core::fs::{self as netfs, LOCK_TIMEOUT};
use pve_network_core::{HostState, verify};

use crate::links::LinkSource;
use crate::paths::HostPaths;
use crate::task::TaskEnd;

/// Applies pending network changes on one node. Built from explicit paths:
/// there is deliberately no default (a test must never touch `/`).
#[derive(Clone, Debug)]
pub struct NetworkApplier {
    paths: HostPaths,
    links: LinkSource,
}

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// The directory (`/var/lib/pve-network-rs/backups/TS` on this machine).
    pub dir: PathBuf,
    /// Its name (`TS`).
    pub name: String,
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time.
pub fn backup_stamp(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = pve_network_core::utc_civil(secs);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// PVE's filter for `ifreload` stderr: `(warning|error): (\S+):` anywhere
/// in the line keeps it as `TOKEN : LINE `.
pub fn ifreload_stderr_line(line: &str) -> Option<String> {
    // the leftmost position where either keyword matches, as a regex would
    for (at, _) in line.char_indices() {
        let tail = &line[at..];
        let Some(rest) = tail
            .strip_prefix("warning: ")
            .or_else(|| tail.strip_prefix("error: "))
        else {
            continue;
        };
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        // the longest run of non-space characters followed by ':'
        if let Some(colon) = rest[..word_end].rfind(':')
            && colon > 0
        {
            return Some(format!("{} : {line} ", &rest[..colon]));
        }
    }
    None
}

impl NetworkApplier {
    /// An applier for the host `paths`, reading the kernel from `links`.
    pub fn new(paths: HostPaths, links: LinkSource) -> Self {
        Self { paths, links }
    }

    /// The host paths.
    pub fn paths(&self) -> &HostPaths {
        &self.paths
    }

    /// Copies the running file (and the pending one) into a new backup
    /// directory named after `now`.
    ///
    /// # Errors
    ///
    /// When the backup cannot be written; nothing is applied then.
    pub fn backup(&self, now: i64, upid: &str) -> Result<Backup, String> {
        let base = self.paths.backups_dir();
        std::fs::create_dir_all(&base)
            .map_err(|e| format!("unable to create '/var/lib/pve-network-rs/backups' - {e}"))?;
        let stamp = backup_stamp(now);
        let (mut name, mut n) = (stamp.clone(), 1);
        while base.join(&name).exists() {
            n += 1;
            name = format!("{stamp}-{n}");
        }
        let dir = base.join(&name);
        std::fs::create_dir(&dir).map_err(|e| format!("unable to create backup '{name}' - {e}"))?;
        let net = &self.paths.network;
        for (from, to) in [
            (&net.interfaces.local, "interfaces"),
            (&net.pending.local, "interfaces.new"),
        ] {
            match std::fs::read(from) {
                Ok(bytes) => {
                    let target = netfs::NodePath {
                        local: dir.join(to),
                        host: "/var/lib/pve-network-rs/backups",
                    };
                    netfs::write_atomic(&target, &bytes).map_err(|e| {
                        format!("unable to write backup '{name}/{to}' - {}", e.message)
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("unable to read '{from:?}' - {e}")),
            }
        }
        std::fs::write(dir.join("task"), format!("{upid}\n"))
            .map_err(|e| format!("unable to write backup '{name}/task' - {e}"))?;
        Ok(Backup { dir, name })
    }

    /// Runs the apply task, writing its log to `log` (everything but the end
    /// line, which the caller writes from the result).
    pub fn run(
        &self,
        _request: &ApplyRequest,
        upid: &str,
        now: i64,
        log: &mut dyn Write,
    ) -> TaskEnd {
        match self.run_steps(upid, now, log) {
            Ok(()) => TaskEnd::Ok,
            Err(e) => TaskEnd::Error(e),
        }
    }

    fn run_steps(&self, upid: &str, now: i64, log: &mut dyn Write) -> Result<(), String> {
        let net = &self.paths.network;
        {
            let _lock = netfs::lock(&net.lock, LOCK_TIMEOUT).map_err(|e| e.message)?;
            let backup = self.backup(now, upid)?;
            let _ = writeln!(
                log,
                "backup of /etc/network/interfaces: /var/lib/pve-network-rs/backups/{}",
                backup.name
            );
            tracing::info!(backup = %backup.name, "network configuration backed up");
            netfs::rename_pending(net).map_err(|e| e.message)?;
        }
        self.ifreload(log)?;
        self.verify(log);
        Ok(())
    }

    fn ifreload(&self, log: &mut dyn Write) -> Result<(), String> {
        let exe = self.paths.ifreload();
        let mut child = Command::new(&exe)
            .arg("-a")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            // PVE's run_command reports an exec failure as exit code 1
            .map_err(|e| {
                tracing::warn!(error = %e, ifreload = %exe.display(), "cannot run ifreload");
                "command 'ifreload -a' failed: exit code 1".to_string()
            })?;
        let stderr = child.stderr.take();
        let err_thread = std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(e) = stderr {
                for line in BufReader::new(e).lines().map_while(Result::ok) {
                    if let Some(k) = ifreload_stderr_line(&line) {
                        kept.push(k);
                    }
                }
            }
            kept
        });
        if let Some(mut out) = child.stdout.take() {
            let _ = std::io::copy(&mut out, log);
        }
        for line in err_thread.join().unwrap_or_default() {
            let _ = writeln!(log, "{line}");
        }
        let status = child
            .wait()
            .map_err(|e| format!("command 'ifreload -a' failed: {e}"))?;
        match (status.code(), status.success()) {
            (_, true) => Ok(()),
            (Some(code), false) => Err(format!("command 'ifreload -a' failed: exit code {code}")),
            (None, false) => {
                use std::os::unix::process::ExitStatusExt;
                Err(format!(
                    "command 'ifreload -a' failed: got signal {}",
                    status.signal().unwrap_or(0)
                ))
            }
        }
    }

    /// The kernel compared with the running file; each difference is logged.
    pub fn verify(&self, log: &mut dyn Write) -> Vec<verify::Discrepancy> {
        let links = match self.links.read() {
            Ok(l) => l,
            Err(e) => {
                let _ = writeln!(
                    log,
                    "StorageVlanManager: cannot read the kernel's links: {e}"
                );
                tracing::warn!(error = %e, "StorageVlanManager: cannot read the kernel's links");
                return Vec::new();
            }
        };
        self.verify_against(&links, log)
    }

    fn verify_against(&self, links: &HostState, log: &mut dyn Write) -> Vec<verify::Discrepancy> {
        let text =
            std::fs::read_to_string(&self.paths.network.interfaces.local).unwrap_or_default();
        let config = pve_network_core::parse_interfaces(&text, links);
        let found = verify::discrepancies(&config, links);
        for d in &found {
            let _ = writeln!(log, "StorageVlanManager: {d}");
            tracing::warn!(discrepancy = %d, "StorageVlanManager");
        }
        found
    }
}

/// The paths a task worker needs to find its node.
pub fn worker_args(paths: &HostPaths, links: &LinkSource) -> Vec<String> {
    let mut args = vec!["--root".to_string(), path_arg(paths.root())];
    if let LinkSource::File(f) = links {
        args.push("--links".into());
        args.push(path_arg(f));
    }
    args
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(backup_stamp(0), "19700101T000000Z");
        assert_eq!(backup_stamp(1_796_156_799), "20261201T202639Z");
    }

    #[test]
    fn ifreload_stderr_filter() {
        assert_eq!(
            ifreload_stderr_line("error: vmbr0: bridge port eth5 does not exist").as_deref(),
            Some("vmbr0 : error: vmbr0: bridge port eth5 does not exist ")
        );
        assert_eq!(
            ifreload_stderr_line("warning: a:b: x").as_deref(),
            Some("a:b : warning: a:b: x ")
        );
        assert_eq!(ifreload_stderr_line("info: loading builtin modules"), None);
        assert_eq!(ifreload_stderr_line("error: something broke"), None);
    }
}
