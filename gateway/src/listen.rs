//! Listening sockets handed over by systemd (socket activation).
//!
//! With `pve-network-migration.socket` enabled, systemd owns the listening
//! sockets on 8006 and passes them to every start of the service as file
//! descriptors 3, 4, … (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`; see
//! sd_listen_fds(3)). The sockets stay open while the service restarts, so
//! clients connecting in the gap wait in the kernel's accept queue instead of
//! being refused. See docs/operators-guide.md, "Restarts and upgrades".

// Taking over a passed descriptor and asking the kernel what it is cannot be
// done without `unsafe`; both uses are commented.
#![allow(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first file descriptor systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

/// Why the handed-over sockets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `LISTEN_FDS` or `LISTEN_PID` is not a number.
    #[error("socket activation: {name}={value:?} is not a number")]
    BadVariable {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// A passed descriptor is not a listening TCP socket.
    #[error(
        "socket activation: file descriptor {fd} ({name}) is not a listening TCP socket: {reason} \
         (pve-network-migration.socket may only have ListenStream= entries with IP addresses)"
    )]
    NotTcpListener {
        /// The descriptor.
        fd: RawFd,
        /// Its name from `LISTEN_FDNAMES` (the socket unit's by default).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A socket systemd passed.
#[derive(Debug)]
pub struct Inherited {
    /// The listener (close-on-exec, blocking mode as passed).
    pub listener: TcpListener,
    /// The address it is bound to.
    pub addr: SocketAddr,
    /// The name from `LISTEN_FDNAMES`.
    pub name: String,
}

/// The sockets passed to this process, empty when it was not socket
/// activated (no `LISTEN_PID`, or one naming another process: the variables
/// were inherited from a parent that was).
///
/// # Errors
/// When the variables are malformed or a descriptor is not a listening TCP
/// socket: serving a subset of what the socket unit promises would hide the
/// mistake.
pub fn inherited() -> Result<Vec<Inherited>, ListenError> {
    let var = |name: &'static str| std::env::var(name).ok();
    let (Some(pid), Some(fds)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Ok(Vec::new());
    };
    let number = |name: &'static str, value: &str| {
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| ListenError::BadVariable {
                name,
                value: value.to_string(),
            })
    };
    if number("LISTEN_PID", &pid)? != std::process::id() {
        return Ok(Vec::new());
    }
    let count = number("LISTEN_FDS", &fds)?;
    let names: Vec<String> = var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..count {
        let fd = SD_LISTEN_FDS_START + i as RawFd;
        let name = names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| "unknown".to_string());
        check_listening_stream(fd).map_err(|reason| ListenError::NotTcpListener {
            fd,
            name: name.clone(),
            reason,
        })?;
        // SAFETY: systemd passes descriptors 3..3+LISTEN_FDS to this process
        // (LISTEN_PID is ours), nothing else in the process owns them, and
        // they are taken exactly once: this is only called at start-up.
        let passed = unsafe { OwnedFd::from_raw_fd(fd) };
        // systemd passes them without close-on-exec; a duplicate made by std
        // has the flag, so no child process inherits the listener.
        let owned = passed
            .try_clone()
            .map_err(|e| ListenError::NotTcpListener {
                fd,
                name: name.clone(),
                reason: e.to_string(),
            })?;
        drop(passed);
        let listener = TcpListener::from(owned);
        let addr = listener
            .local_addr()
            .map_err(|e| ListenError::NotTcpListener {
                fd,
                name: name.clone(),
                reason: e.to_string(),
            })?;
        out.push(Inherited {
            listener,
            addr,
            name,
        });
    }
    Ok(out)
}

/// `fd` is an IPv4/IPv6 stream socket in the listening state.
fn check_listening_stream(fd: RawFd) -> Result<(), String> {
    let opt = |level: libc::c_int, name: libc::c_int| -> Result<libc::c_int, String> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, which
        // lives for the call; an invalid descriptor only makes it fail.
        let r = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r == 0 {
            Ok(value)
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    };
    let domain = opt(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(format!("address family {domain}, not IPv4 or IPv6"));
    }
    if opt(libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err("not a stream socket".to_string());
    }
    if opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        return Err("not listening".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn accepts_listening_tcp_and_rejects_the_rest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening_stream(l.as_raw_fd()), Ok(()));

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            check_listening_stream(udp.as_raw_fd()),
            Err("not a stream socket".to_string())
        );

        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        assert_eq!(
            check_listening_stream(unix.as_raw_fd()),
            Err(format!(
                "address family {}, not IPv4 or IPv6",
                libc::AF_UNIX
            ))
        );

        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            check_listening_stream(file.as_raw_fd()),
            Err(std::io::Error::from_raw_os_error(libc::ENOTSOCK).to_string())
        );
    }
}
