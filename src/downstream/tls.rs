//! TLS toward clients, optionally requiring a client certificate from a
//! CA bundle and matching its subject CN or SAN against an allow-list.
//! A rejected client gets a TLS alert and a log line naming the subject.

use crate::config::DownstreamTlsConfig;
use crate::tls::describe::describe_io;
use crate::tls::identity::{identity, Identity};
use crate::tls::material::{load_certs, load_key, load_roots};
use crate::tls::reload::Reloadable;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

pub struct DownstreamTls {
    pub config: Arc<Reloadable<Arc<ServerConfig>>>,
}

fn build(c: &DownstreamTlsConfig) -> Result<Arc<ServerConfig>, String> {
    let chain = load_certs(&c.cert_file)?;
    let key = load_key(&c.key_file, c.passphrase.as_ref())?;
    let builder = ServerConfig::builder();
    let builder = match &c.client_ca_file {
        Some(ca) => {
            let roots = load_roots(Some(ca))?;
            let inner = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| format!("client CA bundle {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(Arc::new(AllowList {
                inner,
                allowed: c.allowed_subjects.clone(),
            }))
        }
        None => builder.with_no_client_auth(),
    };
    let cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate and key do not match or are unusable: {e}"))?;
    Ok(Arc::new(cfg))
}

impl DownstreamTls {
    pub fn new(c: &DownstreamTlsConfig) -> Result<Self, String> {
        let mut files = vec![c.cert_file.clone(), c.key_file.clone()];
        files.extend(c.client_ca_file.clone());
        let owned = c.clone();
        let config = Reloadable::new("downstream_tls", files, Box::new(move || build(&owned)))?;
        Ok(DownstreamTls { config })
    }

    /// Completes the handshake; returns the stream and the verified client
    /// identity, if a certificate was presented.
    /// `Err(None)`: the peer left without sending anything (a TCP health
    /// check), not worth a warning.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, Option<Identity>), Option<String>> {
        let acceptor = TlsAcceptor::from(self.config.current().as_ref().clone());
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Err(None),
            Ok(_) if first[0] != 0x16 => {
                return Err(Some(
                    "client did not start a TLS handshake (a plaintext client on a TLS listener? set security.protocol=SSL)".into(),
                ))
            }
            _ => {}
        }
        let s = acceptor.accept(tcp).await.map_err(|e| {
            let why = describe_io(&e);
            Some(format!("client TLS handshake failed: {why}"))
        })?;
        let id = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(identity);
        Ok((s, id))
    }
}

/// The CA check of rustls' WebPKI verifier, then the subject allow-list.
#[derive(Debug)]
struct AllowList {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowList {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = identity(end_entity);
        let subject = id
            .as_ref()
            .map(|i| i.subject.clone())
            .unwrap_or_else(|| "<unparseable>".into());
        if let Err(e) = self.inner.verify_client_cert(end_entity, intermediates, now) {
            let cause = crate::tls::describe::describe(&e);
            if let Some(suppressed) = crate::logs::allow(&format!("cert:{subject}:{cause}")) {
                warn!(%subject, %cause, suppressed, "client certificate rejected");
            }
            return Err(e);
        }
        if !self.allowed.is_empty() && !id.as_ref().is_some_and(|i| i.allowed_by(&self.allowed)) {
            if let Some(suppressed) = crate::logs::allow(&format!("cert:{subject}:allow-list")) {
                warn!(%subject, allowed = ?self.allowed, suppressed, "client certificate rejected: subject not on the allow-list");
            }
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
