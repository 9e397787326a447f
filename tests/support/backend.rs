//! Upstreams for writ: the recording [`Backend`], and the [`Server`] plumbing every backend in
//! the suites runs on (its own thread, its own current-thread tokio runtime, stopped on drop).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use http_body_util::BodyExt as _;

use super::http1::header_values;

// ==========================================================================================
// === Server ===
// ==========================================================================================

/// A TCP server on `listener`, run on its own thread by a current-thread tokio runtime:
/// `on_conn` is called for every accepted connection (on the accept loop) and the future it
/// returns is spawned. Stops accepting when dropped.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub fn start<F, Fut>(listener: TcpListener, mut on_conn: F) -> Server
    where
        F: FnMut(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("server addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        thread::Builder::new()
            .name(format!("server-{}", addr.port()))
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let accept_loop = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            tokio::spawn(on_conn(stream));
                        }
                    };
                    tokio::select! {
                        () = accept_loop => {}
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn server thread");
        Server {
            addr,
            shutdown: Some(tx),
        }
    }

    /// A server on a fresh `127.0.0.1:0` listener.
    pub fn start_local<F, Fut>(on_conn: F) -> Server
    where
        F: FnMut(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind server");
        Self::start(listener, on_conn)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves one HTTP/1.1 connection with `svc` until it closes. writ adds forwarding and
/// identity headers: a backend must accept more fields than the 100 a client may send.
pub async fn serve_http1<I, S>(io: I, svc: S)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .max_headers(256)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .await;
}

/// Reads a whole request (body and trailers) into a [`Recorded`]; a body that fails to read
/// is recorded as empty.
pub async fn record(req: hyper::Request<hyper::body::Incoming>) -> Recorded {
    let method = req.method().to_string();
    let target = req.uri().to_string();
    let headers = fields(req.headers());
    let (body, trailers) = match req.into_body().collect().await {
        Ok(b) => {
            let trailers = b.trailers().map(fields).unwrap_or_default();
            (b.to_bytes().to_vec(), trailers)
        }
        Err(_) => (Vec::new(), Vec::new()),
    };
    Recorded {
        method,
        target,
        headers,
        body,
        trailers,
    }
}

fn fields(map: &hyper::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

// ==========================================================================================
// === Backend ===
// ==========================================================================================

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Request target exactly as received (origin-form: path + query).
    pub target: String,
    /// Every header line as (lower-case name, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, as (lower-case name, value).
    pub trailers: Vec<(String, String)>,
}

impl Recorded {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    /// All values of a header (name compared case-insensitively).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }

    /// All values of every header whose name, read case-insensitively and with `_` as `-`,
    /// equals `name` (how WSGI/CGI backends fold header names).
    pub fn header_folded(&self, name: &str) -> Vec<&str> {
        let want = fold_header_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| fold_header_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Asserts the backend saw writ's identity for an undelegated `subject` on `action`, and
    /// none of the client's spellings: no actor, no `X-Forwarded-User` (any case, `_` or `-`).
    #[track_caller]
    pub fn assert_writ_identity(&self, subject: &str, action: &str) {
        assert_eq!(
            self.header_folded("x-writ-subject"),
            vec![subject],
            "{self:#?}"
        );
        assert_eq!(
            self.header_folded("x-writ-action"),
            vec![action],
            "{self:#?}"
        );
        assert!(self.header_folded("x-writ-actor").is_empty(), "{self:#?}");
        assert!(
            self.header_folded("x-forwarded-user").is_empty(),
            "{self:#?}"
        );
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Lower-case, `_` read as `-`.
pub fn fold_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// How the backend answers.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering (after the request body was read).
    pub delay: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            status: 200,
            body: b"backend-ok".to_vec(),
            headers: vec![("content-type".into(), "text/plain".into())],
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct BackendState {
    requests: Mutex<Vec<Recorded>>,
    raw_bytes: AtomicU64,
    connections: AtomicUsize,
}

/// A recording HTTP/1.1 upstream on `127.0.0.1:0`.
pub struct Backend {
    server: Server,
    state: Arc<BackendState>,
}

impl Backend {
    /// Starts a backend answering `200 backend-ok`.
    pub fn start() -> Backend {
        Self::start_with(BackendOptions::default())
    }

    /// Starts a backend with custom answers.
    pub fn start_with(opts: BackendOptions) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        Self::serve(listener, opts)
    }

    /// Starts a default backend on a given address; `None` if it cannot be bound.
    pub fn start_on(addr: SocketAddr) -> Option<Backend> {
        let listener = TcpListener::bind(addr).ok()?;
        Some(Self::serve(listener, BackendOptions::default()))
    }

    fn serve(listener: TcpListener, opts: BackendOptions) -> Backend {
        let state = Arc::new(BackendState::default());
        let st = Arc::clone(&state);
        let opts = Arc::new(opts);
        let server = Server::start(listener, move |stream| {
            st.connections.fetch_add(1, Ordering::SeqCst);
            serve_backend_conn(stream, Arc::clone(&st), Arc::clone(&opts))
        });
        Backend { server, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT` (what `{{UPSTREAM}}` expands to).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Bytes read from all backend sockets so far (also counts requests hyper could not parse).
    pub fn raw_bytes(&self) -> u64 {
        self.state.raw_bytes.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        if let Ok(mut r) = self.state.requests.lock() {
            r.clear();
        }
        self.state.raw_bytes.store(0, Ordering::SeqCst);
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn single(&self) -> Recorded {
        let reqs = self.requests();
        assert_eq!(
            reqs.len(),
            1,
            "backend should have received exactly one request, got {reqs:#?}"
        );
        reqs.into_iter().next().expect("one request")
    }

    /// Asserts that not a single byte reached the backend since start / last `clear()`.
    #[track_caller]
    pub fn assert_untouched(&self) {
        let reqs = self.requests();
        assert!(
            reqs.is_empty(),
            "a refused request must never reach the backend, but it received {reqs:#?}"
        );
        assert_eq!(
            self.raw_bytes(),
            0,
            "a refused request must never reach the backend, but bytes were written to it"
        );
    }
}

async fn serve_backend_conn(
    stream: tokio::net::TcpStream,
    state: Arc<BackendState>,
    opts: Arc<BackendOptions>,
) {
    let io = CountingStream {
        inner: stream,
        state: Arc::clone(&state),
    };
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = Arc::clone(&state);
        let opts = Arc::clone(&opts);
        async move {
            let recorded = record(req).await;
            if let Ok(mut r) = state.requests.lock() {
                r.push(recorded);
            }
            if !opts.delay.is_zero() {
                tokio::time::sleep(opts.delay).await;
            }
            let mut resp = hyper::Response::builder().status(opts.status);
            for (n, v) in &opts.headers {
                resp = resp.header(n.as_str(), v.as_str());
            }
            let resp = resp
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    opts.body.clone(),
                )))
                .unwrap_or_else(|_| hyper::Response::new(http_body_util::Full::default()));
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    serve_http1(io, svc).await;
}

/// A TCP stream that counts every byte read into the backend's state.
struct CountingStream {
    inner: tokio::net::TcpStream,
    state: Arc<BackendState>,
}

impl tokio::io::AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.state
            .raw_bytes
            .fetch_add(u64::try_from(read).unwrap_or(0), Ordering::SeqCst);
        res
    }
}

impl tokio::io::AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
