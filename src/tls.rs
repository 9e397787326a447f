//! TLS both ways, rustls with the aws-lc-rs provider: the downstream acceptor
//! (ALPN h2 and http/1.1) and the client connector for upstreams and JWKS URLs.

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("bad private key in {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Client TLS config for upstreams and JWKS endpoints: the configured CA bundle,
/// or the system's roots when none is given.
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(p) => {
            for c in CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
            {
                let c = c.map_err(|e| format!("bad certificate in {}: {e}", p.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("bad CA in {}: {e}", p.display()))?;
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
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An http-or-https connector with the given trust and server-name override.
pub fn connector(
    ca: Option<&std::path::Path>,
    server_name: Option<&str>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, String> {
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
            .map_err(|_| format!("`{name}` is not a valid TLS server name"))?;
        b = b.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    Ok(b.enable_http1().wrap_connector(http))
}
