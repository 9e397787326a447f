//! Server settings: how writ listens, where it forwards, its limits and its
//! log sink. They shape the server, not decisions; a reload applies the ones
//! that can change live and reports the others by name.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything in a config file that is not decision policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin: SocketAddr,
    /// Downstream TLS.
    pub tls: Option<TlsFiles>,
    /// Where allowed requests go: one entry (named `default`) for the
    /// single-backend form, else the `upstreams` in name order. Actions and
    /// `defaults` hold indexes into it.
    pub upstreams: Vec<Upstream>,
    /// Decision log sink.
    pub decision_log: LogTarget,
    /// Proxy worker threads (`None`: the CPUs the process may use).
    pub workers: Option<usize>,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Connection and resource limits.
    pub limits: Limits,
    /// `revocation.redis`: the store a fleet shares (followed by `writ run`).
    pub revocation_redis: Option<String>,
    /// `revocation.file`, resolved (read at every load; `writ revoke` writes it).
    pub revocation_file: Option<PathBuf>,
    /// Front doors (ext_authz gRPC, forward-auth HTTP), when configured.
    pub ext_authz: Option<ExtAuthz>,
}

/// The front doors' listeners and who may call them (`ext_authz:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtAuthz {
    /// gRPC `envoy.service.auth.v3.Authorization` listener.
    pub grpc: Option<SocketAddr>,
    /// HTTP forward-auth listener.
    pub http: Option<SocketAddr>,
    /// Peers allowed to call either listener; everyone else is refused.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl ExtAuthz {
    /// Whether `peer` may call a front door. An IPv4 peer on a dual-stack
    /// socket arrives as `::ffff:a.b.c.d` and is compared as IPv4.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

impl Settings {
    /// The settings that differ in `new` but take effect only after a restart
    /// (the listeners, TLS, worker threads, limits and the log sink).
    pub fn restart_needed(&self, new: &Settings) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listen != new.listen {
            out.push("listen");
        }
        if self.admin != new.admin {
            out.push("admin");
        }
        if self.tls != new.tls {
            out.push("tls");
        }
        if self.workers != new.workers {
            out.push("workers");
        }
        if self.limits != new.limits {
            out.push("limits");
        }
        if self.decision_log != new.decision_log {
            out.push("decision_log");
        }
        if self.revocation_redis != new.revocation_redis {
            out.push("revocation.redis");
        }
        let doors = |s: &Settings| s.ext_authz.as_ref().map(|e| (e.grpc, e.http));
        if doors(self) != doors(new) {
            out.push("ext_authz");
        }
        out
    }

    /// `new`, except for the settings that need a restart, which stay as they are.
    pub fn live_part_of(&self, new: Settings) -> Settings {
        // Who may call the front doors applies at once; their listeners do not.
        let ext_authz = match (&self.ext_authz, new.ext_authz) {
            (Some(old), Some(new)) => Some(ExtAuthz {
                trusted_proxies: new.trusted_proxies,
                ..old.clone()
            }),
            (old, _) => old.clone(),
        };
        Settings {
            upstreams: new.upstreams,
            shutdown_grace: new.shutdown_grace,
            ext_authz,
            ..self.clone()
        }
    }
}

/// Connection and resource limits (`limits:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent client connections; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Deadline for a request head, and for an idle connection.
    pub header_read_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_h2_streams: u32,
    /// How long a response may wait for the client to take data before the connection
    /// is closed.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_h2_streams: 256,
            send_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Downstream TLS certificate and key files.
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A backend allowed requests are forwarded to.
pub struct Upstream {
    /// Its name in `upstreams` (`default` for the single-backend form): a metric
    /// label and a decision-log field.
    pub name: String,
    /// Whether it is spoken to over TLS.
    pub scheme_https: bool,
    /// `host:port` to connect to.
    pub authority: String,
    /// Path prefix of the upstream URL, without trailing `/` ("" for none).
    pub base_path: String,
    /// CA file trusted for an https backend (system roots when absent).
    pub ca: Option<PathBuf>,
    /// TLS server name to verify instead of the URL's host.
    pub server_name: Option<String>,
    /// How long a connection may take to open.
    pub connect_timeout: Duration,
    /// How long the backend may take to answer.
    pub timeout: Duration,
    /// Active health check, when configured.
    pub health_check: Option<HealthCheck>,
}

impl Upstream {
    /// The name of the single-backend form's upstream.
    pub const DEFAULT_NAME: &'static str = "default";

    /// `scheme://authority/base`, for people (explain, logs), never for routing.
    pub fn url(&self) -> String {
        let scheme = if self.scheme_https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.base_path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// `health_check:` of an upstream.
pub struct HealthCheck {
    /// Absolute path, asked with GET (after the upstream's base path).
    pub path: String,
    /// How often.
    pub every: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Where decision-log lines go.
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Nowhere (metrics still count every decision).
    Off,
    /// Appended to a file.
    File(PathBuf),
}
