//! systemd's readiness protocol (`Type=notify`): a datagram to `$NOTIFY_SOCKET`.
//! Without that variable (not started by systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends a state line such as `READY=1`; failures are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

/// Sends `state` to the notification socket `path` (`@name` is abstract).
///
/// # Errors
/// When the socket cannot be reached.
pub fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // Never wait for the receiver: a notification socket nobody reads (its
    // queue holds net.unix.max_dgram_qlen datagrams, 10 by default) must
    // not stop the caller, which is the daemon's signal loop.
    sock.set_nonblocking(true)?;
    if let Some(name) = path.as_encoded_bytes().strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_receiver_does_not_block_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _receiver = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let results: Vec<_> = (0..64)
                .map(|_| send(path.as_os_str(), "READY=1").map_err(|e| e.kind()))
                .collect();
            let _ = tx.send(results);
        });
        let results = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("sending must not wait for the receiver");
        assert!(results[0].is_ok());
        assert_eq!(
            results.last(),
            Some(&Err(std::io::ErrorKind::WouldBlock)),
            "{results:?}"
        );
    }

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("pve-network-migration-test-{}", std::process::id());
        let abstract_addr = {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let receiver = UnixDatagram::bind_addr(&abstract_addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
