//! The client's request body on its way upstream. It remembers whether reading
//! it failed, so a client that breaks its own framing gets a 400 rather than a
//! 502 blamed on the backend, and it drops request trailers: writ cannot police
//! them, and nothing in them may reach the backend as if writ had checked it.
//!
//! And the response body on its way to the client ([`Guarded`]): it keeps the request
//! counted as in flight, and tells the connection's [`SendClock`] while it waits on the
//! client (`limits.send_timeout`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Per-connection account of what waits on the client, for the send timeout
/// (`limits.send_timeout`): response bodies, and the socket itself.
///
/// A body waits on the client from the moment the response is created, and again each
/// time it hands a frame to hyper, until hyper polls it again. hyper polls a response
/// body only when it can take more: h2's `PipeToSendStream` first waits for flow-control
/// capacity for the frame it holds, h1's dispatcher first flushes its write buffer to the
/// socket. A body whose inner body is `Pending` (the backend has nothing yet) is not
/// waiting on the client: a slow backend is `upstream.timeout`'s business. The socket
/// waits on the client while a write to it is `Pending` (bytes hyper holds after the body
/// has ended, or between two polls of a body whose backend was momentarily empty).
///
/// Time is counted in ticks of the connection task ([`SendClock::tick`]), so the hot path
/// reads no clock and takes no lock: a few relaxed atomics per frame.
#[derive(Debug, Default)]
pub struct SendClock {
    /// Ticks so far.
    epoch: AtomicU64,
    /// Response bodies, and the socket, waiting on the client now.
    waiting: AtomicUsize,
    /// The tick at which the client last took data, or something started to wait on it
    /// while nothing else did.
    since: AtomicU64,
}

impl SendClock {
    /// Advances the clock by one tick; returns how many whole ticks have passed since the
    /// client last took data while a response waits on it (`None`: nothing waits).
    pub fn tick(&self) -> Option<u64> {
        let now = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        // Acquire pairs with the Release in `start_waiting`: a wait we see counted has its
        // start recorded in `since`.
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        Some(now.saturating_sub(self.since.load(Ordering::Relaxed)))
    }

    /// Something starts to wait on the client.
    pub(crate) fn start_waiting(&self) {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            self.since
                .store(self.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.waiting.fetch_add(1, Ordering::Release);
    }

    /// Something no longer waits on the client.
    pub(crate) fn stop_waiting(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// The client took data: the clock restarts. Writes only once per tick.
    pub(crate) fn progress(&self) {
        let now = self.epoch.load(Ordering::Relaxed);
        if self.since.load(Ordering::Relaxed) < now {
            self.since.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// A response body that holds a value (a guard) until it is finished or
/// dropped, forwarding the size hint so `Content-Length` framing is kept, and
/// reporting to the connection's [`SendClock`] while it waits on the client.
pub struct Guarded<G: AsRef<SendClock>> {
    inner: super::Body,
    guard: G,
    /// Counted in the clock's `waiting`.
    waiting: bool,
    /// A frame was handed to hyper since the body last returned `Pending`.
    handed_out: bool,
}

impl<G: AsRef<SendClock>> Guarded<G> {
    /// Wraps a response body the moment the response is created: from then on it waits
    /// on the client (hyper may never poll it).
    pub fn new(inner: super::Body, guard: G) -> Self {
        guard.as_ref().start_waiting();
        Guarded {
            inner,
            guard,
            waiting: true,
            handed_out: false,
        }
    }
}

impl<G: AsRef<SendClock>> Drop for Guarded<G> {
    fn drop(&mut self) {
        if self.waiting {
            self.guard.as_ref().stop_waiting();
        }
    }
}

impl<G: AsRef<SendClock> + Unpin> Body for Guarded<G> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let clock = this.guard.as_ref();
        if this.handed_out {
            // hyper is back for more: the client took what we handed out.
            clock.progress();
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                this.handed_out = true;
                if !this.waiting {
                    this.waiting = true;
                    clock.start_waiting();
                }
            }
            // The backend has nothing yet, or the body is over: nothing waits on the client.
            Poll::Pending | Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                this.handed_out = false;
                if this.waiting {
                    this.waiting = false;
                    clock.stop_waiting();
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    struct Clock(Arc<SendClock>);

    impl AsRef<SendClock> for Clock {
        fn as_ref(&self) -> &SendClock {
            &self.0
        }
    }

    fn poll(body: &mut Guarded<Clock>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    #[test]
    fn a_body_waits_on_the_client_until_hyper_polls_it_again() {
        let clock = Arc::new(SendClock::default());
        assert_eq!(clock.tick(), None, "nothing waits yet");
        let inner = Full::new(Bytes::from_static(b"x"))
            .map_err(|never| match never {})
            .boxed();
        let mut body = Guarded::new(inner, Clock(clock.clone()));
        // Created, never polled (an h1 socket that is not writable): it waits.
        assert_eq!(clock.tick(), Some(1));
        // Polled once: the frame is handed out, and waits for hyper to come back.
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert_eq!(
            clock.tick(),
            Some(2),
            "the first poll is no sign of the client"
        );
        // hyper is back (the client took the frame): the clock restarts, then the body ends.
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert_eq!(clock.tick(), None);
        drop(body);
        assert_eq!(clock.tick(), None);
    }

    /// A backend body that has nothing until `ready` is set, then one frame per poll.
    struct Backend {
        ready: Arc<AtomicBool>,
    }

    impl Body for Backend {
        type Data = Bytes;
        type Error = hyper::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            if self.ready.swap(false, Ordering::Relaxed) {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn a_body_pending_on_the_backend_does_not_wait_on_the_client() {
        let clock = Arc::new(SendClock::default());
        let ready = Arc::new(AtomicBool::new(false));
        let inner = Backend {
            ready: ready.clone(),
        }
        .boxed();
        let mut body = Guarded::new(inner, Clock(clock.clone()));
        assert!(poll(&mut body).is_pending());
        assert_eq!(clock.tick(), None, "the backend has nothing yet");
        ready.store(true, Ordering::Relaxed);
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert_eq!(
            clock.tick(),
            Some(1),
            "handed out: waits from the tick it was handed out in"
        );
        assert_eq!(clock.tick(), Some(2));
        // hyper is back for more, and the backend has nothing: not waiting on the client.
        assert!(poll(&mut body).is_pending());
        assert_eq!(clock.tick(), None);
        drop(body);
        assert_eq!(clock.waiting.load(Ordering::Relaxed), 0);
    }
}
