//! TLS both ways, rustls with the aws-lc-rs provider: the downstream acceptor
//! (ALPN h2 and http/1.1) and the client connector for upstreams and JWKS URLs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file that cannot be read.
    #[error("cannot read {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
    /// A certificate that does not parse.
    #[error("bad certificate in {}: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    /// A certificate file with no certificate in it.
    #[error("no certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    /// A private key that does not parse.
    #[error("bad private key in {}: {detail}", path.display())]
    BadKey { path: PathBuf, detail: String },
    /// A CA certificate rustls refuses as a trust anchor.
    #[error("bad CA in {}: {detail}", path.display())]
    BadCa { path: PathBuf, detail: String },
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// A `server_name:` that is not a DNS name or IP address.
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
}

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Read {
            path: cert.to_path_buf(),
            detail: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Client TLS config for upstreams and JWKS endpoints: the configured CA bundle,
/// or the system's roots when none is given.
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(p) => {
            for c in CertificateDer::pem_file_iter(p).map_err(|e| TlsError::Read {
                path: p.to_path_buf(),
                detail: e.to_string(),
            })? {
                let c = c.map_err(|e| TlsError::BadCertificate {
                    path: p.to_path_buf(),
                    detail: e.to_string(),
                })?;
                roots.add(c).map_err(|e| TlsError::BadCa {
                    path: p.to_path_buf(),
                    detail: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An http-or-https connector with the given trust and server-name override.
pub fn connector(
    ca: Option<&std::path::Path>,
    server_name: Option<&str>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = client_config(ca)?;
    let mut b = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = server_name {
        let name = rustls_pki_types::ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::ServerName(name.to_string()))?;
        b = b.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    Ok(b.enable_http1().wrap_connector(http))
}
