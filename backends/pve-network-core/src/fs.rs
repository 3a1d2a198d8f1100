//! File I/O on a node (cargo feature `fs`): the network lock, reading the
//! interfaces file and its pending copy, atomic replace with fsync, backups.
//!
//! Every path is a [`NodePath`]: where the file is on this machine (under a
//! `--root` directory in tests and the demo) and the host path PVE's messages
//! name (`/etc/network/.pve-interfaces.lock`), so a rooted daemon answers
//! byte for byte like one on a real node.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::api::{ApiError, FileEffect, FileState, NetworkFiles};
use crate::diff::FileTime;

/// How long PVE waits for the network lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A file on the node: where it is here, and the path PVE names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePath {
    /// The path on this machine (`ROOT/etc/network/interfaces`).
    pub local: PathBuf,
    /// The host path (`/etc/network/interfaces`).
    pub host: &'static str,
}

impl NodePath {
    /// `host` resolved under `root` (`/` on a real node).
    pub fn under(root: &Path, host: &'static str) -> Self {
        Self {
            local: root.join(host.trim_start_matches('/')),
            host,
        }
    }
}

/// The files of the network API on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPaths {
    /// `/etc/network/interfaces`.
    pub interfaces: NodePath,
    /// `/etc/network/interfaces.new`: the pending changes.
    pub pending: NodePath,
    /// `/etc/network/.pve-interfaces.lock`: the lock PVE's Perl takes too.
    pub lock: NodePath,
}

impl NetworkPaths {
    /// The paths under `root` (`/` on a real node).
    pub fn under(root: &Path) -> Self {
        Self {
            interfaces: NodePath::under(root, "/etc/network/interfaces"),
            pending: NodePath::under(root, "/etc/network/interfaces.new"),
            lock: NodePath::under(root, "/etc/network/.pve-interfaces.lock"),
        }
    }

    /// Paths for an interfaces file anywhere (the simulator's
    /// `--interfaces FILE`): `FILE.new`, and the lock next to it.
    pub fn for_file(interfaces: &Path) -> Self {
        let mut pending = interfaces.as_os_str().to_owned();
        pending.push(".new");
        let lock = interfaces
            .parent()
            .unwrap_or(Path::new("."))
            .join(".pve-interfaces.lock");
        Self {
            interfaces: NodePath {
                local: interfaces.to_path_buf(),
                host: "/etc/network/interfaces",
            },
            pending: NodePath {
                local: PathBuf::from(pending),
                host: "/etc/network/interfaces.new",
            },
            lock: NodePath {
                local: lock,
                host: "/etc/network/.pve-interfaces.lock",
            },
        }
    }
}

/// The network lock, held until dropped.
#[derive(Debug)]
pub struct NetworkLock {
    _file: File,
}

/// Takes the exclusive `flock` on the lock file as PVE's `lock_file` does
/// (opened for appending, created when missing), waiting up to `timeout`.
///
/// # Errors
///
/// PVE's messages: `can't lock file '/etc/network/.pve-interfaces.lock' -
/// got timeout`, or `… - can't open file - …` when it cannot be opened.
pub fn lock(path: &NodePath, timeout: Duration) -> Result<NetworkLock, ApiError> {
    let fail =
        |what: String| ApiError::internal(format!("can't lock file '{}' - {what}", path.host));
    let file = File::options()
        .create(true)
        .append(true)
        .open(&path.local)
        .map_err(|e| fail(format!("can't open file - {}", os_message(&e))))?;
    let deadline = Instant::now() + timeout;
    // flock(2) has no timeout; PVE interrupts a blocking flock with an
    // alarm. Polling with a short back-off gives the same bound without
    // signals.
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(NetworkLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(fail("got timeout".into()));
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(os_message(&e))),
        }
    }
}

/// The text of an I/O error as Perl's `$!` prints it (without Rust's
/// `(os error N)` suffix).
pub fn os_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn mtime(path: &Path) -> std::io::Result<FileTime> {
    let m = std::fs::metadata(path)?.modified()?;
    let d = m.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(FileTime {
        secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos(),
    })
}

fn read_state(path: &Path) -> std::io::Result<Option<FileState>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(FileState {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            mtime: mtime(path)?,
        })),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `interfaces` and, when present, `interfaces.new`. A missing
/// `interfaces` reads as empty, as PVE's reader treats it.
///
/// # Errors
///
/// `unable to open file '/etc/network/interfaces' - …` for other I/O errors.
pub fn read(paths: &NetworkPaths) -> Result<NetworkFiles, ApiError> {
    let err = |p: &NodePath, e: std::io::Error| {
        ApiError::internal(format!(
            "unable to open file '{}' - {}",
            p.host,
            os_message(&e)
        ))
    };
    let interfaces = read_state(&paths.interfaces.local)
        .map_err(|e| err(&paths.interfaces, e))?
        .unwrap_or(FileState {
            text: String::new(),
            mtime: FileTime::default(),
        });
    let pending = read_state(&paths.pending.local).map_err(|e| err(&paths.pending, e))?;
    Ok(NetworkFiles {
        interfaces,
        pending,
        parsed: None,
    })
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Replaces a file atomically: `FILE.tmp.PID` written, fsync'd and renamed
/// over `FILE`, then the directory fsync'd, so a crash leaves the old or the
/// new content and never a torn file. Mode 0644, like PVE's
/// `file_set_contents`.
///
/// # Errors
///
/// PVE's messages: `unable to open file '….tmp.PID' - …`, `unable to write
/// '….tmp.PID' - …`, `unable to rename '…' to '…' - …` (host paths).
pub fn write_atomic(path: &NodePath, data: &[u8]) -> Result<(), ApiError> {
    let pid = std::process::id();
    let mut tmp = path.local.as_os_str().to_owned();
    tmp.push(format!(".tmp.{pid}"));
    let tmp = PathBuf::from(tmp);
    let host_tmp = format!("{}.tmp.{pid}", path.host);
    let result = (|| {
        let mut f = open_new_0644(&tmp).map_err(|e| {
            ApiError::internal(format!(
                "unable to open file '{host_tmp}' - {}",
                os_message(&e)
            ))
        })?;
        f.write_all(data).and_then(|()| f.sync_all()).map_err(|e| {
            ApiError::internal(format!("unable to write '{host_tmp}' - {}", os_message(&e)))
        })?;
        std::fs::rename(&tmp, &path.local).map_err(|e| {
            ApiError::internal(format!(
                "unable to rename '{host_tmp}' to '{}' - {}",
                path.host,
                os_message(&e)
            ))
        })?;
        sync_dir(&path.local).map_err(|e| {
            ApiError::internal(format!(
                "unable to write '{}' - {}",
                path.host,
                os_message(&e)
            ))
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn open_new_0644(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        File::options()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// Carries out a file change of the network API.
///
/// # Errors
///
/// The [`write_atomic`] errors, or `unable to delete '…' - …` / `unable to
/// rename '…' to '…' - …`. Removing or renaming a pending file that is not
/// there is not an error (PVE ignores it too).
pub fn carry_out(paths: &NetworkPaths, effect: &FileEffect) -> Result<(), ApiError> {
    match effect {
        FileEffect::WritePending(text) => write_atomic(&paths.pending, text.as_bytes()),
        FileEffect::RemovePending => match std::fs::remove_file(&paths.pending.local) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(ApiError::internal(format!(
                "unable to delete '{}' - {}",
                paths.pending.host,
                os_message(&e)
            ))),
            _ => Ok(()),
        },
        FileEffect::ApplyPending => rename_pending(paths).map(|_| ()),
    }
}

/// Renames `interfaces.new` over `interfaces` (fsync'ing the directory);
/// returns whether there was a pending file.
///
/// # Errors
///
/// `unable to rename '/etc/network/interfaces.new' to
/// '/etc/network/interfaces' - …`.
pub fn rename_pending(paths: &NetworkPaths) -> Result<bool, ApiError> {
    match std::fs::rename(&paths.pending.local, &paths.interfaces.local) {
        Ok(()) => {
            let _ = sync_dir(&paths.interfaces.local);
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ApiError::internal(format!(
            "unable to rename '{}' to '{}' - {}",
            paths.pending.host,
            paths.interfaces.host,
            os_message(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_read_and_effects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/network")).unwrap();
        let paths = NetworkPaths::under(dir.path());
        let files = read(&paths).unwrap();
        assert_eq!(
            (files.interfaces.text.as_str(), files.pending.is_none()),
            ("", true)
        );

        write_atomic(&paths.interfaces, b"auto lo\n").unwrap();
        carry_out(&paths, &FileEffect::WritePending("auto lo\n# new\n".into())).unwrap();
        let files = read(&paths).unwrap();
        assert_eq!(files.pending.unwrap().text, "auto lo\n# new\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&paths.pending.local)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);

        carry_out(&paths, &FileEffect::ApplyPending).unwrap();
        let files = read(&paths).unwrap();
        assert_eq!(
            (files.interfaces.text.as_str(), files.pending.is_none()),
            ("auto lo\n# new\n", true)
        );
        // nothing pending: neither is an error
        carry_out(&paths, &FileEffect::ApplyPending).unwrap();
        carry_out(&paths, &FileEffect::RemovePending).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("etc/network"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn lock_times_out_with_pves_message() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/network")).unwrap();
        let paths = NetworkPaths::under(dir.path());
        let held = lock(&paths.lock, LOCK_TIMEOUT).unwrap();
        let err = lock(&paths.lock, Duration::from_millis(30)).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (
                500,
                "can't lock file '/etc/network/.pve-interfaces.lock' - got timeout"
            )
        );
        drop(held);
        lock(&paths.lock, Duration::from_millis(30)).unwrap();
    }

    #[test]
    fn write_errors_name_host_paths() {
        let dir = tempfile::tempdir().unwrap();
        let paths = NetworkPaths::under(dir.path()); // etc/network does not exist
        let err = carry_out(&paths, &FileEffect::WritePending("x".into())).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "unable to open file '/etc/network/interfaces.new.tmp.{}' - No such file or directory",
                std::process::id()
            )
        );
    }
}
