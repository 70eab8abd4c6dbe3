//! TLS toward the brokers. SNI and certificate verification use the
//! broker's real host name (never the dial address), unless an explicit
//! override is configured. Handshake failures become one clear cause.

use crate::config::UpstreamTlsConfig;
use crate::tls::describe::describe_io;
use crate::tls::material::{load_certs, load_key, load_roots};
use crate::tls::reload::Reloadable;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub struct UpstreamTls {
    pub config: Arc<Reloadable<Arc<ClientConfig>>>,
    server_name: Option<String>,
}

fn build(c: &UpstreamTlsConfig) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder();
    let builder = if c.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAll))
    } else {
        builder.with_root_certificates(load_roots(c.ca_file.as_deref())?)
    };
    let cfg = match (&c.cert_file, &c.key_file) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key = load_key(key, c.passphrase.as_ref())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key do not match or are unusable: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

impl UpstreamTls {
    pub fn new(c: &UpstreamTlsConfig) -> Result<Self, String> {
        let mut files = Vec::new();
        files.extend(c.ca_file.clone());
        files.extend(c.cert_file.clone());
        files.extend(c.key_file.clone());
        let owned = c.clone();
        let config = Reloadable::new("upstream_tls", files, Box::new(move || build(&owned)))?;
        if c.insecure_skip_verify {
            tracing::warn!("upstream TLS certificate verification is OFF (insecure_skip_verify): anyone on the path can impersonate the brokers");
        }
        Ok(UpstreamTls {
            config,
            server_name: c.server_name.clone(),
        })
    }

    /// Handshakes over `tcp`, naming the broker `broker_host`.
    pub async fn connect(&self, tcp: TcpStream, broker_host: &str) -> Result<TlsStream<TcpStream>, String> {
        let name = self.server_name.as_deref().unwrap_or(broker_host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| format!("`{name}` is not a valid TLS server name"))?;
        let connector = TlsConnector::from(self.config.current().as_ref().clone());
        connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {name} failed: {}", describe_io(&e)))
    }
}

/// Accepts any server certificate: only with `insecure_skip_verify`.
#[derive(Debug)]
struct TrustAll;

impl ServerCertVerifier for TrustAll {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(m, c, d, &algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, &algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
