//! TLS: self-signed certificates generated per test with rcgen, a TLS client connection to
//! writ, and [`TlsBackend`], a recording HTTPS upstream.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;

use super::backend::{Recorded, Server, record, serve_http1};
use super::util::temp_dir;

/// A self-signed certificate and its key, written as PEM files.
pub struct Cert {
    _dir: TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
    pub key_pem: String,
    pub cert_pem: String,
}

impl Cert {
    pub fn new(names: &[&str]) -> Cert {
        let names: Vec<String> = names.iter().map(|s| (*s).to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
        let dir = temp_dir("writ-tls-");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        Cert {
            _dir: dir,
            cert_path,
            key_path,
            der: ck.cert.der().clone(),
            key_pem,
            cert_pem,
        }
    }

    pub fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }

    /// A client that trusts exactly this certificate and offers these ALPN protocols.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

/// A TLS connection to writ at `addr` that trusts `cert` (for `localhost`) and offers `alpn`.
pub async fn tls_connect(
    addr: SocketAddr,
    cert: &Cert,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cert.client_config(alpn)));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with writ")
}

/// A recording HTTP/1.1 backend behind TLS, answering `tls-backend-ok`.
pub struct TlsBackend {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// TLS handshakes completed so far.
    pub handshakes: Arc<AtomicUsize>,
    _server: Server,
}

impl TlsBackend {
    pub fn start(cert: &Cert) -> TlsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config(&[b"http/1.1"])));
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handshakes: Arc<AtomicUsize> = Arc::default();
        let (reqs, hs) = (requests.clone(), handshakes.clone());
        let server = Server::start(listener, move |tcp| {
            let (acceptor, reqs, hs) = (acceptor.clone(), reqs.clone(), hs.clone());
            async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                hs.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(move |r: Request<hyper::body::Incoming>| {
                    let reqs = reqs.clone();
                    async move {
                        let recorded = record(r).await;
                        reqs.lock().unwrap().push(recorded);
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"tls-backend-ok"),
                        )))
                    }
                });
                serve_http1(tls, svc).await;
            }
        });
        TlsBackend {
            addr: server.addr(),
            requests,
            handshakes,
            _server: server,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}
