//! `writ run`: listeners, connection handling, signals, reload, shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::cache::{DEFAULT_CACHE_BYTES, TokenCache};
use crate::policy::Policy;
use crate::proxy::upstream::Upstream;
use crate::proxy::{ConnInfo, Shared, handle};
use crate::telemetry::decision_log::DecisionLog;
use crate::telemetry::metrics::Metrics;
use crate::{admin, reload, telemetry};

/// Request head limit (SPEC: headers > 64 KiB is 431).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub fn run_command(config: &Path) -> u8 {
    telemetry::init_tracing();
    let policy = match crate::config::load(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let workers = policy.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // One worker: a current-thread runtime, no cross-thread hand-offs.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("writ: cannot start runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let stop = shutdown_signal();
        let server = match Server::bind(policy, Some(config.to_path_buf())).await {
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

pub struct Server {
    pub shared: Arc<Shared>,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    config_path: Option<PathBuf>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Server {
    /// Binds both listeners and starts the admin server and the decision log.
    pub async fn bind(mut policy: Policy, config_path: Option<PathBuf>) -> Result<Server, String> {
        // Installed before anything answers /readyz: a SIGHUP sent once writ looks
        // ready must reload it, not kill it.
        let hup = match &config_path {
            Some(_) => Some(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?,
            ),
            None => None,
        };
        policy.generation = 1;
        let metrics = Metrics::new().map_err(|e| format!("metrics: {e}"))?;
        metrics.config_generation.set(1);
        let log = DecisionLog::start(&policy.decision_log, metrics.decision_log_dropped.clone())
            .map_err(|e| format!("decision log: {e}"))?;
        let tls = match &policy.tls {
            Some(t) => Some(crate::tls::acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let listener = TcpListener::bind(policy.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", policy.listen))?;
        let admin_listener = TcpListener::bind(policy.admin)
            .await
            .map_err(|e| format!("cannot listen on {} (admin): {e}", policy.admin))?;
        let proxy_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
        let upstream = Upstream::new(&policy.upstream)?;
        let jwks = crate::auth::jwks::JwksRegistry::default();
        jwks.attach(&mut policy, &metrics.jwks_refresh);
        let shared = Arc::new(Shared {
            upstream: ArcSwap::from_pointee(upstream),
            policy: ArcSwap::from_pointee(policy),
            cache: TokenCache::new(DEFAULT_CACHE_BYTES),
            metrics,
            log,
            shutting_down: Default::default(),
            jwks,
        });
        tokio::spawn(admin::serve(admin_listener, shared.clone()));
        tracing::info!(listen = %proxy_addr, admin = %admin_addr, "writ listening");
        Ok(Server {
            shared,
            proxy_addr,
            admin_addr,
            listener,
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
            tls,
            config_path,
            hup,
            ..
        } = self;
        if let Some(path) = config_path {
            tokio::spawn(reload::watch(shared.clone(), path, hup));
        }
        let limits = shared.policy.load().limits;
        let graceful = GracefulShutdown::new();
        // Connections beyond the limit wait in the kernel's backlog, not in memory.
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Slowloris: a client that trickles its request head is cut off.
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(crate::pipeline::MAX_HEADER_FIELDS)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_h2_streams)
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        let builder = Arc::new(builder);
        tokio::pin!(shutdown);
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
            let shared2 = shared.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _slot = slot; // released when the connection ends
                let info = ConnInfo {
                    peer,
                    tls: tls.is_some(),
                };
                // A connection must deliver its first request head within
                // `header_read_timeout`, whatever stage it stalls in (TLS handshake,
                // protocol detection, HTTP/2 preface): idle sockets cannot pin slots.
                let first = Arc::new(tokio::sync::Notify::new());
                let seen = first.clone();
                let svc = hyper::service::service_fn(move |req| {
                    seen.notify_one();
                    handle(shared2.clone(), info, req)
                });
                let deadline = tokio::time::sleep(limits.header_read_timeout);
                let serve = async move {
                    match tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), svc);
                            let _ = watcher.watch(conn.into_owned()).await;
                        }
                        Some(acceptor) => {
                            let Ok(s) = acceptor.accept(stream).await else {
                                return;
                            };
                            let conn = builder.serve_connection(TokioIo::new(s), svc);
                            let _ = watcher.watch(conn.into_owned()).await;
                        }
                    }
                };
                tokio::pin!(serve);
                tokio::select! {
                    _ = &mut serve => return,
                    _ = first.notified() => {}
                    _ = deadline => return, // dropping `serve` closes the connection
                }
                serve.await;
            });
        }
        drop(listener);
        shared.shutting_down.store(true, Ordering::SeqCst);
        let grace = shared.policy.load().shutdown_grace;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "Shutting down: draining in-flight requests"
        );
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!("Drained"),
            _ = tokio::time::sleep(grace) => tracing::warn!("Shutdown grace ended with requests in flight"),
        }
    }
}
