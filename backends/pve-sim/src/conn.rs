//! The connection wrapper that lets a request handler break its own
//! connection: the `reset-before-head` and `reset-after-head` faults.
//!
//! [`FaultIo`] sits between the TLS stream and hyper and sees the plaintext
//! hyper writes. Normally it passes everything through. When the handler has
//! armed [`ConnControl`] before returning its response:
//!
//! * [`WriteMode::ResetNow`]: the first write fails, the socket gets
//!   `SO_LINGER` 0, and hyper drops the connection, so the kernel sends a TCP
//!   RST and the client gets `ECONNRESET` without a byte of answer;
//! * [`WriteMode::Truncate`]: the head (up to the blank line) and the given
//!   number of body bytes go out and are flushed, then the same reset.
//!
//! HTTP/1.1 answers one request at a time per connection, so arming the
//! control in the handler always affects that handler's own answer.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// What happens to the next bytes hyper writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum WriteMode {
    /// Pass everything through.
    #[default]
    Normal,
    /// Reset at the first write.
    ResetNow,
    /// Let the head and `body` more bytes through, flush, then reset.
    Truncate {
        /// Body bytes still allowed.
        body: usize,
        /// How much of `\r\n\r\n` has been seen at the end of what was written.
        matched: u8,
        /// Whether the head has been written completely.
        head_done: bool,
    },
    /// Reset: every further operation fails.
    Dead,
}

impl WriteMode {
    /// A truncation after the head plus `body` bytes.
    pub(crate) fn truncate(body: usize) -> Self {
        WriteMode::Truncate {
            body,
            matched: 0,
            head_done: false,
        }
    }

    /// How many bytes of `buf` may still be written, and the mode after them.
    fn allowance(self, buf: &[u8]) -> (usize, WriteMode) {
        let WriteMode::Truncate {
            mut body,
            mut matched,
            mut head_done,
        } = self
        else {
            return (buf.len(), self);
        };
        let mut n = 0;
        for &b in buf {
            if head_done {
                if body == 0 {
                    break;
                }
                body -= 1;
            } else {
                matched = match (matched, b) {
                    (0 | 2, b'\r') => matched + 1,
                    (1 | 3, b'\n') => matched + 1,
                    (_, b'\r') => 1,
                    _ => 0,
                };
                head_done = matched == 4;
            }
            n += 1;
        }
        (
            n,
            WriteMode::Truncate {
                body,
                matched,
                head_done,
            },
        )
    }
}

/// Shared between a connection's [`FaultIo`] and its request handler.
#[derive(Debug, Default)]
pub(crate) struct ConnControl {
    mode: Mutex<WriteMode>,
}

impl ConnControl {
    /// Arms the control for the answer about to be returned.
    pub(crate) fn arm(&self, mode: WriteMode) {
        *self.mode.lock().expect("not poisoned") = mode;
    }

    fn get(&self) -> WriteMode {
        *self.mode.lock().expect("not poisoned")
    }

    fn set(&self, mode: WriteMode) {
        self.arm(mode);
    }
}

/// A server TLS stream whose handler can have it reset.
#[derive(Debug)]
pub(crate) struct FaultIo {
    tls: TlsStream<TcpStream>,
    ctl: Arc<ConnControl>,
}

fn reset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset by a pve-sim fault",
    )
}

impl FaultIo {
    pub(crate) fn new(tls: TlsStream<TcpStream>, ctl: Arc<ConnControl>) -> Self {
        Self { tls, ctl }
    }

    /// Marks the connection dead; dropping it now sends a TCP RST.
    fn kill(&mut self) -> io::Error {
        self.ctl.set(WriteMode::Dead);
        let _ = self.tls.get_ref().0.set_zero_linger();
        reset_error()
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ctl.get() == WriteMode::Dead {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.ctl.get() {
            WriteMode::Normal => Pin::new(&mut this.tls).poll_write(cx, buf),
            WriteMode::ResetNow | WriteMode::Dead => Poll::Ready(Err(this.kill())),
            mode @ WriteMode::Truncate { .. } => {
                let (allowed, _) = mode.allowance(buf);
                if allowed == 0 {
                    // Everything allowed is written: make sure it left, then reset.
                    ready!(Pin::new(&mut this.tls).poll_flush(cx))?;
                    return Poll::Ready(Err(this.kill()));
                }
                let n = ready!(Pin::new(&mut this.tls).poll_write(cx, &buf[..allowed]))?;
                let (_, next) = mode.allowance(&buf[..n]);
                this.ctl.set(next);
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.ctl.get() {
            WriteMode::ResetNow | WriteMode::Dead => Poll::Ready(Err(this.kill())),
            _ => Pin::new(&mut this.tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.ctl.get() {
            // No close_notify and no FIN: the peer must see a reset.
            WriteMode::Normal => Pin::new(&mut this.tls).poll_shutdown(cx),
            _ => Poll::Ready(Err(this.kill())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_head_and_body() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
        let head = resp.len() - 10;
        let (n, next) = WriteMode::truncate(4).allowance(resp);
        assert_eq!(n, head + 4);
        let (n, _) = next.allowance(b"rest");
        assert_eq!(n, 0);
        // Split writes keep the state.
        let (n1, m1) = WriteMode::truncate(4).allowance(&resp[..head - 2]);
        assert_eq!(n1, head - 2);
        let (n2, _) = m1.allowance(&resp[head - 2..]);
        assert_eq!(n2, 2 + 4);
        // A lone CR LF inside the head does not end it.
        let (n, _) = WriteMode::truncate(0).allowance(b"A\r\nB\r\r\n\r\nbody");
        assert_eq!(n, 9);
        assert_eq!(WriteMode::Normal.allowance(b"abc").0, 3);
    }
}
