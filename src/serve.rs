//! `writ run`: listeners, connection handling, signals, reload, shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::proxy::body::{Guarded, SendClock};
use crate::proxy::upstream::Forwarding;
use crate::proxy::{ConnInfo, Shared, handle};
use crate::telemetry::decision_log::DecisionLog;
use crate::telemetry::metrics::Metrics;
use crate::{admin, reload, telemetry};
use writ_engine::authenticate::cache::{DEFAULT_CACHE_BYTES, TokenCache};
use writ_engine::config::Config;

/// Request head limit (SPEC: headers > 64 KiB is 431).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub fn run_command(config: &Path) -> u8 {
    telemetry::init_tracing();
    let mut loaded = match writ_engine::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Err(e) = crate::overrides::apply(&mut loaded.settings) {
        eprintln!("writ: {e}");
        return 1;
    }
    telemetry::log_findings(&loaded.findings);
    // A current-thread runtime: with one worker it serves the proxy too; with
    // more, each worker is a thread of its own with a runtime of its own
    // ([`Workers`]) and this one keeps the listeners, admin, reloads and timers.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("writ: cannot start runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let stop = shutdown_signal();
        let server = match Server::bind(loaded, Some(config.to_path_buf())).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("writ: {e}");
                return 1;
            }
        };
        server.run(stop).await;
        0
    })
}

/// The runtime of the commands that serve something beside the proxy (the
/// admission webhook, the demo's backends and clients): two threads.
pub fn tool_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Why `writ run` could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("decision log: {0}")]
    DecisionLog(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Upstream(#[from] crate::proxy::upstream::ForwardingError),
    #[error("cannot listen on {0}{1}: {2}")]
    Listen(SocketAddr, &'static str, std::io::Error),
    #[error("{0}")]
    LocalAddr(std::io::Error),
}

pub struct Server {
    pub shared: Arc<Shared>,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Front-door listeners (`ext_authz.grpc`, `ext_authz.http`), when configured.
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    listener: TcpListener,
    doors: FrontDoors,
    tls: Option<TlsAcceptor>,
    config_path: Option<PathBuf>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Server {
    /// Binds both listeners and starts the admin server and the decision log.
    pub async fn bind(
        mut config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Server, ServeError> {
        // Installed before anything answers /readyz: a SIGHUP sent once writ looks
        // ready must reload it, not kill it.
        let hup = match &config_path {
            Some(_) => Some(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .map_err(ServeError::Signal)?,
            ),
            None => None,
        };
        config.policy.generation = 1;
        let settings = &config.settings;
        let metrics = Metrics::new()?;
        metrics.set_config(1, &config.digest);
        let log = DecisionLog::start(&settings.decision_log, metrics.decision_log_dropped.clone())
            .map_err(ServeError::DecisionLog)?;
        let tls = match &settings.tls {
            Some(t) => Some(crate::tls::acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| ServeError::Listen(settings.listen, "", e))?;
        let admin_listener = TcpListener::bind(settings.admin)
            .await
            .map_err(|e| ServeError::Listen(settings.admin, " (admin)", e))?;
        let doors = FrontDoors::bind(settings.ext_authz.as_ref()).await?;
        let proxy_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        let admin_addr = admin_listener.local_addr().map_err(ServeError::LocalAddr)?;
        let jwks = crate::jwks::JwksRegistry::default();
        jwks.attach(&mut config.policy, &metrics.jwks_refresh);
        jwks.attach_signals(&mut config, &metrics.jwks_refresh);
        let revocation = match config.settings.revocation_redis.clone() {
            Some(url) => {
                let f = crate::revocation_store::Follower::start(url, metrics.revocation_store()?);
                config.policy.revocation.shared = f.set.clone();
                Some(f)
            }
            None => None,
        };
        crate::proxy::pool::set_workers(worker_count(&config.settings));
        let config = Arc::new(config);
        let forwarding = Forwarding::build(config.clone(), None, &metrics)?;
        let shared = Arc::new(Shared {
            forwarding: ArcSwap::from_pointee(forwarding),
            cache: TokenCache::new(DEFAULT_CACHE_BYTES),
            metrics,
            log,
            shutting_down: Default::default(),
            jwks,
            revocation,
            ssf: Arc::default(),
            introspector: Default::default(),
        });
        for t in shared.config().signals.iter().filter(|t| t.poll.is_some()) {
            let s = shared.clone();
            tokio::spawn(crate::ssf::poll_loop(
                t.clone(),
                shared.ssf.clone(),
                move || s.config(),
                shared.metrics.security_events.clone(),
            ));
        }
        tokio::spawn(admin::serve(admin_listener, shared.clone()));
        tracing::info!(listen = %proxy_addr, admin = %admin_addr, "writ listening");
        let grpc_addr = doors.grpc.as_ref().map(|(_, a)| *a);
        let http_addr = doors.http.as_ref().map(|(_, a)| *a);
        if grpc_addr.is_some() || http_addr.is_some() {
            tracing::info!(grpc = ?grpc_addr, http = ?http_addr, "Front doors listening");
        }
        Ok(Server {
            shared,
            proxy_addr,
            admin_addr,
            grpc_addr,
            http_addr,
            listener,
            doors,
            tls,
            config_path,
            hup,
        })
    }

    /// Serves until `shutdown` resolves, then drains within `shutdown_grace`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let Server {
            shared,
            listener,
            doors,
            tls,
            config_path,
            hup,
            ..
        } = self;
        if let Some(path) = config_path {
            tokio::spawn(reload::watch(shared.clone(), path, hup));
        }
        let (limits, workers) = {
            let config = shared.config();
            (config.settings.limits, worker_count(&config.settings))
        };
        let workers = match Workers::start(workers) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "Cannot start the worker threads: serving on one");
                Workers::default()
            }
        };
        // Every connection holds a slot; connections beyond the limit wait in the
        // kernel's backlog, not in memory. Draining = getting every slot back.
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        tokio::pin!(shutdown);
        if let Some(f) = shared.revocation.clone() {
            // Fail closed: nothing is decided before the shared revocation set
            // has loaded once. Readiness already says so; this also holds for a
            // pod reached directly, without a readiness gate. Connections wait
            // in the kernel's backlog meanwhile.
            while !f.loaded() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = &mut shutdown => return,
                }
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let doors = doors.start(&shared, &stop_rx);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Slowloris: a client that trickles its request head is cut off.
            // hyper applies it to idle keep-alive connections too.
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        crate::proxy::limit_header_fields(&mut builder.http1());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_h2_streams)
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        let builder = Arc::new(builder);
        loop {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
                _ = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "Accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let conn = Conn {
                shared: shared.clone(),
                builder: builder.clone(),
                info: ConnInfo::new(peer, tls.is_some()),
                idle: limits.header_read_timeout,
                send_timeout: limits.send_timeout,
                stop: stop_rx.clone(),
            };
            let tls = tls.clone();
            let serve = async move |stream: tokio::net::TcpStream| {
                let _slot = slot; // released when the connection ends
                match tls {
                    None => conn.serve(stream).await,
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        if let Ok(Ok(s)) = tokio::time::timeout(conn.idle, handshake).await {
                            conn.serve(s).await;
                        }
                    }
                }
            };
            match workers.next() {
                None => {
                    tokio::spawn(serve(stream));
                }
                // The connection moves to a worker's own reactor: every request on
                // it is served there, with no hand-off between threads.
                Some(worker) => match stream.into_std() {
                    Ok(stream) => {
                        worker.spawn(async move {
                            if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                                serve(stream).await;
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "Cannot hand a connection to a worker"),
                },
            }
        }
        drop(listener);
        shared.shutting_down.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        let grace = shared.config().settings.shutdown_grace;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "Shutting down: draining in-flight requests"
        );
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let drained = async {
            let _ = slots.acquire_many(all).await;
            for door in doors {
                let _ = door.await;
            }
        };
        tokio::select! {
            _ = drained => tracing::info!("Drained"),
            _ = tokio::time::sleep(grace) => tracing::warn!("Shutdown grace ended with requests in flight"),
        }
    }
}

/// How many proxy workers: `workers`, else the CPUs the process may use.
pub fn worker_count(settings: &writ_engine::config::Settings) -> usize {
    settings.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// The proxy's worker threads, each running a current-thread runtime of its
/// own (none with one worker: the main runtime serves). The accept loop hands
/// each new connection to the next worker in turn; the connection, its
/// requests and its upstream connections (`proxy::pool` keeps a queue of idle
/// ones per worker) then stay on that thread. Why not a multi-thread runtime:
/// its work stealing and cross-thread wake-ups cost CPU on every request
/// (docs/performance.md); why not `SO_REUSEPORT` listeners: one listener keeps
/// the port ours alone (another process of the same user cannot join the
/// group and take a share of the connections) and the hand-off is once per
/// connection, not per request.
#[derive(Default)]
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    next: std::cell::Cell<usize>,
    /// Dropped when the server returns: each worker's runtime then stops.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    fn start(count: usize) -> std::io::Result<Workers> {
        if count <= 1 {
            return Ok(Workers::default());
        }
        let mut w = Workers::default();
        for i in 1..=count {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            w.handles.push(rt.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            w._stop.push(tx);
            std::thread::Builder::new()
                .name(format!("writ-worker-{i}"))
                .spawn(move || {
                    crate::proxy::pool::set_worker(i);
                    let _ = rt.block_on(rx);
                })?;
        }
        Ok(w)
    }

    /// The worker the next connection goes to (`None`: this thread serves).
    fn next(&self) -> Option<&tokio::runtime::Handle> {
        if self.handles.is_empty() {
            return None;
        }
        let i = self.next.get();
        self.next.set((i + 1) % self.handles.len());
        self.handles.get(i)
    }
}

/// The front doors' listeners, bound with the proxy's so a taken port fails
/// startup, and started by `run` only when configured.
struct FrontDoors {
    grpc: Option<(TcpListener, SocketAddr)>,
    http: Option<(TcpListener, SocketAddr)>,
}

impl FrontDoors {
    async fn bind(cfg: Option<&writ_engine::config::ExtAuthz>) -> Result<FrontDoors, ServeError> {
        async fn one(
            addr: Option<SocketAddr>,
            what: &'static str,
        ) -> Result<Option<(TcpListener, SocketAddr)>, ServeError> {
            let Some(addr) = addr else { return Ok(None) };
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Listen(addr, what, e))?;
            let local = l.local_addr().map_err(ServeError::LocalAddr)?;
            Ok(Some((l, local)))
        }
        Ok(FrontDoors {
            grpc: one(cfg.and_then(|c| c.grpc), " (ext_authz.grpc)").await?,
            http: one(cfg.and_then(|c| c.http), " (ext_authz.http)").await?,
        })
    }

    /// Spawns each configured door; each stops when `stop` turns true and
    /// its task ends once its connections are drained.
    fn start(
        self,
        shared: &Arc<Shared>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        if let Some((l, _)) = self.grpc {
            let (shared, stop) = (shared.clone(), stopped(stop.clone()));
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::frontdoor::grpc::serve(shared, l, stop).await {
                    tracing::error!(error = %e, "ext_authz gRPC server failed");
                }
            }));
        }
        if let Some((l, _)) = self.http {
            let (shared, stop) = (shared.clone(), stopped(stop.clone()));
            tasks.push(tokio::spawn(crate::frontdoor::http::serve(shared, l, stop)));
        }
        tasks
    }
}

/// What a connection's requests share with the task serving it.
#[derive(Default)]
struct ConnState {
    /// Requests started.
    started: AtomicUsize,
    /// Requests whose response body is not finished (or dropped) yet.
    in_flight: AtomicUsize,
    /// What waits on the client, response bodies and the socket (`limits.send_timeout`).
    send: SendClock,
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn enter(state: &Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl AsRef<SendClock> for InFlight {
    fn as_ref(&self) -> &SendClock {
        &self.0.send
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client socket, counted as waiting on the client (the send clock) while a write or
/// a flush to it is `Pending`. Costs a branch per call; the clock is touched only when the
/// socket blocks and when it takes data again.
struct WatchedIo<IO> {
    io: IO,
    state: Arc<ConnState>,
    blocked: Blocked,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Blocked {
    No,
    /// A write was `Pending`: a later write that takes bytes ends it.
    Write,
    /// A flush (or shutdown) was `Pending` (TLS records not yet on the socket): a later
    /// write, or a flush that completes, ends it. A completed flush does not end a blocked
    /// write: on a plain TCP socket flushing is a no-op that is always ready.
    Flush,
}

impl<IO> WatchedIo<IO> {
    fn note<T>(&mut self, polled: &Poll<T>, op: Blocked) {
        let now = if polled.is_pending() {
            op
        } else if op == Blocked::Write || self.blocked == Blocked::Flush {
            Blocked::No
        } else {
            self.blocked
        };
        match (self.blocked == Blocked::No, now == Blocked::No) {
            (true, false) => self.state.send.start_waiting(),
            (false, true) => {
                // The client took data.
                self.state.send.progress();
                self.state.send.stop_waiting();
            }
            _ => {}
        }
        self.blocked = now;
    }
}

impl<IO> Drop for WatchedIo<IO> {
    fn drop(&mut self) {
        if self.blocked != Blocked::No {
            self.state.send.stop_waiting();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WatchedIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WatchedIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note(&polled, Blocked::Write);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note(&polled, Blocked::Write);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.note(&polled, Blocked::Flush);
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.note(&polled, Blocked::Flush);
        polled
    }
}

/// Ticks of the send clock per `send_timeout`. A connection is closed once a response has
/// waited on the client for `SEND_TICKS + 1` ticks, that is between `send_timeout` and
/// `send_timeout * (SEND_TICKS + 1) / SEND_TICKS` after the client last took data.
const SEND_TICKS: u32 = 4;

/// One client connection and what it needs to serve and to end itself.
struct Conn {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    info: ConnInfo,
    /// `header_read_timeout`: the first request head must arrive within it, and a
    /// connection with nothing started or in flight for that long is closed
    /// gracefully (HTTP/2 included, which has no head timeout of its own).
    idle: Duration,
    /// `send_timeout`: a response that has waited this long for the client to take data
    /// (no HTTP/2 window, a socket that is not writable) closes the connection.
    send_timeout: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    async fn serve<IO>(mut self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::default());
        let (shared, info) = (self.shared.clone(), self.info.clone());
        let svc_state = state.clone();
        let svc = hyper::service::service_fn(move |req| {
            svc_state.started.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight::enter(&svc_state);
            let fut = handle(shared.clone(), info.clone(), req);
            async move {
                // In flight until the response body is done (or dropped), so a long
                // download is never taken for an idle connection.
                fut.await.map(|resp| {
                    resp.map(|b| {
                        use http_body_util::BodyExt;
                        Guarded::new(b, guard).boxed()
                    })
                })
            }
        });
        let io = WatchedIo {
            io,
            state: state.clone(),
            blocked: Blocked::No,
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut tick = tokio::time::interval(self.idle);
        tick.tick().await;
        // Delay: ticks are never closer together than the period, so counted ticks never
        // overstate how long a response has waited.
        let send_period = (self.send_timeout / SEND_TICKS).max(Duration::from_millis(1));
        let mut send_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + send_period, send_period);
        send_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen_at_last_tick = 0;
        let (mut closing, mut idle_closing) = (false, false);
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = send_tick.tick() => {
                    if state.send.tick().is_some_and(|n| n > u64::from(SEND_TICKS)) {
                        // The client has taken nothing for send_timeout while a response
                        // waits on it: dropping the connection closes it and its streams.
                        tracing::debug!(peer = %self.info.peer, "Send timeout: closing the connection");
                        return;
                    }
                }
                _ = tick.tick(), if !closing || idle_closing => {
                    let seen = state.started.load(Ordering::Relaxed);
                    let quiet = seen == seen_at_last_tick && state.in_flight.load(Ordering::Relaxed) == 0;
                    if seen == 0 || (idle_closing && quiet) {
                        // No request head within the deadline, or a client that
                        // ignores the graceful close (an unanswered HTTP/2 PING).
                        return;
                    }
                    if quiet && !closing {
                        (closing, idle_closing) = (true, true);
                        conn.as_mut().graceful_shutdown();
                    }
                    seen_at_last_tick = seen;
                }
            }
        }
    }
}
