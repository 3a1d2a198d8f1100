//! A response body that streams to the client and, on the side, keeps a copy
//! for the comparison — the primary answer is never held back for the shadow.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::body::BoxError;

/// What the copy ended as.
#[derive(Debug)]
pub(crate) enum Copy {
    /// The whole body.
    Complete(Bytes),
    /// Larger than the comparison limit.
    TooLarge,
    /// The stream failed or the client went away before the end.
    Aborted,
}

/// Streams `inner` and sends a copy (up to `cap` bytes) through a channel at the end.
#[derive(Debug)]
pub(crate) struct Tee {
    inner: Incoming,
    copy: Option<BytesMut>,
    cap: usize,
    done: Option<oneshot::Sender<Copy>>,
}

/// Wraps `inner`; the receiver yields the copy once the body has been sent.
pub(crate) fn tee(inner: Incoming, cap: usize) -> (Tee, oneshot::Receiver<Copy>) {
    let (tx, rx) = oneshot::channel();
    (
        Tee {
            inner,
            copy: Some(BytesMut::new()),
            cap,
            done: Some(tx),
        },
        rx,
    )
}

impl Tee {
    fn finish(&mut self, outcome: Copy) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(outcome);
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // hyper may never poll a body that is already at its end (Content-Length: 0).
        let outcome = match (self.inner.is_end_stream(), self.copy.take()) {
            (true, Some(b)) => Copy::Complete(b.freeze()),
            (true, None) => Copy::TooLarge,
            (false, _) => Copy::Aborted,
        };
        self.finish(outcome);
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(copy)) = (frame.data_ref(), this.copy.as_mut()) {
                    if copy.len() + data.len() > this.cap {
                        this.copy = None;
                    } else {
                        copy.extend_from_slice(data);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Copy::Aborted);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                let outcome = match this.copy.take() {
                    Some(b) => Copy::Complete(b.freeze()),
                    None => Copy::TooLarge,
                };
                this.finish(outcome);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
