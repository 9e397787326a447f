//! One upstream's HTTP/1.1 connections: hyper's connection-level client
//! (`hyper::client::conn::http1`) over the upstream's own connector (plain TCP
//! or rustls), with idle connections kept in a lock-free queue.
//!
//! Why not hyper-util's pooled `Client` (decision 0015): it keys its pool by
//! (scheme, authority), hashing that key under a `Mutex` on every checkout and
//! return, and spawns a task per request to put a connection back once its
//! response body is done. An upstream here already is one (scheme, authority),
//! so the key is dropped; a connection goes back when writ itself sees the
//! response body end ([`PooledBody`]).
//!
//! What it keeps of the pooled client's behaviour: a connection is reused only
//! once hyper says it is ready; a request that a reused connection gave back
//! unsent (the backend closed it while idle) is sent again on a fresh one, and
//! never a request that may have reached the backend; idle connections older
//! than [`IDLE_TIMEOUT`] are closed; at most [`MAX_IDLE`] are kept.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::body::ClientBody;

/// Idle connections kept per upstream; one returned beyond this is closed.
pub const MAX_IDLE: usize = 1024;
/// How long a connection may sit idle before writ closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections are swept. An idle connection is closed after
/// `IDLE_SWEEPS` sweeps, so between 60 and 90 seconds after it went idle.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const IDLE_SWEEPS: u32 = (IDLE_TIMEOUT.as_secs() / SWEEP_EVERY.as_secs()) as u32;

thread_local! {
    /// The proxy worker this thread is (0: the main thread).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Idle queues per pool: one per worker thread plus one for the main thread
/// (`set_workers`). A connection opened on a worker's thread has its task on
/// that worker's runtime; reusing it from another thread would cross threads
/// twice per request.
static QUEUES: AtomicUsize = AtomicUsize::new(1);

/// How many worker threads the proxy runs: set before the first pool is built.
pub fn set_workers(n: usize) {
    QUEUES.store(if n > 1 { n + 1 } else { 1 }, Ordering::Relaxed);
}

/// Marks the current thread as proxy worker `i` (called once per worker thread).
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// Why an exchange failed: opening a connection, or the exchange on one.
#[derive(Debug)]
pub enum PoolError {
    Connect(Box<dyn std::error::Error + Send + Sync>),
    Exchange(hyper::Error),
}

struct Idle {
    sender: SendRequest<ClientBody>,
    /// The sweep count when it went idle (see [`IDLE_SWEEPS`]).
    since: u32,
}

pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority`: what the connector dials.
    dial: Uri,
    /// `Host` for a request that came without one (an HTTP/1.0 client): the
    /// upstream's host, with its port unless it is the scheme's default.
    host: HeaderValue,
    h1: Builder,
    /// Idle connections by the worker that opened them.
    idle: Box<[ArrayQueue<Idle>]>,
    /// Sweeps so far: a coarse idle clock that costs one atomic load per return.
    sweeps: AtomicU32,
}

impl Pool {
    /// A pool for `scheme://authority` and its sweeper (which stops when the
    /// pool is dropped). Must run inside the runtime.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        https: bool,
        authority: &str,
    ) -> Result<Arc<Pool>, http::Error> {
        let scheme = if https { "https" } else { "http" };
        let dial = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()?;
        let default_port = if https { 443 } else { 80 };
        let host = match (dial.host(), dial.port_u16()) {
            (Some(h), Some(p)) if p != default_port => HeaderValue::from_str(&format!("{h}:{p}"))?,
            (Some(h), _) => HeaderValue::from_str(h)?,
            (None, _) => HeaderValue::from_str(authority)?,
        };
        let pool = Arc::new(Pool {
            connector,
            dial,
            host,
            h1: Builder::new(),
            idle: (0..QUEUES.load(Ordering::Relaxed).max(1))
                .map(|_| ArrayQueue::new(MAX_IDLE))
                .collect(),
            sweeps: AtomicU32::new(0),
        });
        spawn_sweeper(Arc::downgrade(&pool));
        Ok(pool)
    }

    /// Sends `req` (origin-form, HTTP/1.1) and returns the response head; its
    /// body gives the connection back when it ends.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ClientBody>,
    ) -> Result<Response<PooledBody>, PoolError> {
        req.headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.host.clone());
        let (mut sender, mut reused) = match self.checkout().await {
            Some(s) => (s, true),
            // Boxed: opening a connection is rare, and its future (TCP, TLS,
            // handshake) is several KiB that every request's future would
            // otherwise carry and hyper would copy when it stores it.
            None => (Box::pin(self.connect()).await?, false),
        };
        loop {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (head, body) = resp.into_parts();
                    return Ok(Response::from_parts(
                        head,
                        PooledBody::new(body, sender, self),
                    ));
                }
                Err(mut e) => match e.take_message() {
                    // Given back unsent by a reused connection that had been
                    // closed: once more, on a connection of its own. A fresh
                    // connection that fails the same way is the backend's answer.
                    Some(back) if reused => {
                        req = back;
                        sender = Box::pin(self.connect()).await?;
                        reused = false;
                    }
                    _ => return Err(PoolError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// An idle connection ready for a request, if there is one. One still
    /// finishing its previous exchange is waited for (the caller's timeout
    /// bounds it); closed ones are dropped.
    async fn checkout(&self) -> Option<SendRequest<ClientBody>> {
        let idle = self.queue();
        while let Some(Idle { mut sender, .. }) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<ClientBody>, PoolError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(PoolError::Connect)?;
        let io = connector
            .call(self.dial.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, conn) = self.h1.handshake(io).await.map_err(PoolError::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %crate::telemetry::error_chain(&e), "Upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// Puts a connection whose exchange is over back for the next request.
    fn release(&self, sender: SendRequest<ClientBody>) {
        if sender.is_closed() {
            return;
        }
        let since = self.sweeps.load(Ordering::Relaxed);
        // A full queue closes the connection (dropping the sender ends it).
        let _ = self.queue().push(Idle { sender, since });
    }

    /// Closes idle connections that are closed or have idled too long; the
    /// rest go back. Requests meanwhile may open a fresh connection, no worse.
    fn sweep(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        for queue in &self.idle {
            for _ in 0..queue.len() {
                let Some(idle) = queue.pop() else { break };
                if !idle.sender.is_closed() && now.wrapping_sub(idle.since) < IDLE_SWEEPS {
                    let _ = queue.push(idle);
                }
            }
        }
    }

    /// This thread's idle queue.
    fn queue(&self) -> &ArrayQueue<Idle> {
        let i = WORKER.with(|w| w.get()) % self.idle.len();
        &self.idle[i]
    }
}

fn spawn_sweeper(pool: Weak<Pool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            pool.sweep();
        }
    });
}

/// A response body from the pool: when it has been read to its end, its
/// connection goes back to the pool. Dropped before its end (the client went
/// away), it takes the connection with it: hyper closes a connection whose
/// response was not read out, and so no half-read answer is ever reused.
pub struct PooledBody {
    inner: Incoming,
    home: Option<(SendRequest<ClientBody>, Arc<Pool>)>,
}

impl PooledBody {
    fn new(inner: Incoming, sender: SendRequest<ClientBody>, pool: &Arc<Pool>) -> PooledBody {
        let mut body = PooledBody {
            inner,
            home: Some((sender, pool.clone())),
        };
        // No body at all (204, 304, HEAD, `Content-Length: 0`): the exchange is over.
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((sender, pool)) = self.home.take() {
            pool.release(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            // A sized body's last frame: hyper's server may not poll again.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.home = None,
            _ => {}
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
