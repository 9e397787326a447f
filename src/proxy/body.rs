//! The client's request body on its way upstream. It remembers whether reading
//! it failed, so a client that breaks its own framing gets a 400 rather than a
//! 502 blamed on the backend, and it drops request trailers: writ cannot police
//! them, and nothing in them may reach the backend as if writ had checked it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pub struct ClientBody {
    inner: Source,
    failed: Arc<AtomicBool>,
}

enum Source {
    Stream(Incoming),
    /// A body writ had to read whole before deciding (a form body).
    Buffered(Option<Bytes>),
}

impl ClientBody {
    pub fn new(inner: Incoming) -> (ClientBody, Arc<AtomicBool>) {
        let failed = Arc::new(AtomicBool::new(false));
        (
            ClientBody {
                inner: Source::Stream(inner),
                failed: failed.clone(),
            },
            failed,
        )
    }

    /// A body already read in full; it cannot fail.
    pub fn buffered(bytes: Bytes) -> (ClientBody, Arc<AtomicBool>) {
        let failed = Arc::new(AtomicBool::new(false));
        (
            ClientBody {
                inner: Source::Buffered((!bytes.is_empty()).then_some(bytes)),
                failed: failed.clone(),
            },
            failed,
        )
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let inner = match &mut this.inner {
            Source::Buffered(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Source::Stream(s) => s,
        };
        loop {
            return match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) if f.is_trailers() => continue,
                Poll::Ready(Some(Err(e))) => {
                    this.failed.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(e)))
                }
                other => other,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Source::Stream(s) => s.is_end_stream(),
            Source::Buffered(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Stream(s) => s.size_hint(),
            Source::Buffered(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// A response body that holds a value (a guard) until it is finished or
/// dropped, forwarding the size hint so `Content-Length` framing is kept.
pub struct Guarded<G> {
    inner: super::Body,
    _guard: G,
}

impl<G> Guarded<G> {
    pub fn new(inner: super::Body, guard: G) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<G: Unpin> Body for Guarded<G> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
