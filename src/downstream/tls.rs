//! TLS toward clients, optionally requiring a client certificate from a
//! CA bundle and matching its subject CN or SAN against an allow-list.
//! A rejected client gets a TLS alert and a log line naming the subject.

use crate::config::{DownstreamTlsConfig, SniConfig};
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
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};
use tracing::warn;

pub struct DownstreamTls {
    pub config: Arc<Reloadable<Arc<ServerConfig>>>,
}

fn build(c: &DownstreamTlsConfig, sni: Option<&SniConfig>) -> Result<Arc<ServerConfig>, String> {
    if let Some(sni) = sni {
        // A renewed certificate must still cover the SNI port's names;
        // one that does not is refused and the current one kept.
        for w in crate::tls::names::check_sni_names(&c.cert_file, sni).map_err(|e| format!("[sni]: {e}"))? {
            warn!("{w}");
        }
    }
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
    /// With `sni`, every build (start and reload) checks that the
    /// certificate covers the SNI port's names.
    pub fn new(c: &DownstreamTlsConfig, sni: Option<&SniConfig>) -> Result<Self, String> {
        let mut files = vec![c.cert_file.clone(), c.key_file.clone()];
        files.extend(c.client_ca_file.clone());
        let owned = c.clone();
        let sni = sni.cloned();
        let config = Reloadable::new(
            "downstream_tls",
            files,
            Box::new(move || build(&owned, sni.as_ref())),
        )?;
        Ok(DownstreamTls { config })
    }

    /// The SNI port: reads the ClientHello, asks `route` about its server
    /// name, and either completes the handshake or refuses the client
    /// with a fatal TLS alert (access_denied). Nothing is ever sent
    /// upstream for a refused name. Returns the stream, the identity and
    /// what `route` decided.
    pub async fn accept_routed<T>(
        &self,
        tcp: TcpStream,
        route: impl FnOnce(Option<&str>) -> Result<T, String>,
    ) -> Result<(TlsStream<TcpStream>, Option<Identity>, T), Option<String>> {
        not_tls(&tcp).await?;
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(|e| Some(format!("client TLS handshake failed: {}", describe_io(&e))))?;
        let decided = route(start.client_hello().server_name());
        let current = self.config.current();
        let t = match decided {
            Ok(t) => t,
            Err(why) => {
                let mut refuse = current.as_ref().as_ref().clone();
                refuse.cert_resolver = Arc::new(Refuse);
                // Fails at once with access_denied, which is written out.
                let _ = start.into_stream(Arc::new(refuse)).await;
                return Err(Some(why));
            }
        };
        let s = start
            .into_stream(current.as_ref().clone())
            .await
            .map_err(|e| Some(format!("client TLS handshake failed: {}", describe_io(&e))))?;
        let id = peer_identity(&s);
        Ok((s, id, t))
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
        not_tls(&tcp).await?;
        let s = acceptor.accept(tcp).await.map_err(|e| {
            let why = describe_io(&e);
            Some(format!("client TLS handshake failed: {why}"))
        })?;
        let id = peer_identity(&s);
        Ok((s, id))
    }
}

/// `Err(None)`: the peer left silently; `Err(Some)`: not a handshake.
async fn not_tls(tcp: &TcpStream) -> Result<(), Option<String>> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => Err(None),
        Ok(_) if first[0] != 0x16 => Err(Some(
            "client did not start a TLS handshake (a plaintext client on a TLS listener? set security.protocol=SSL)".into(),
        )),
        _ => Ok(()),
    }
}

fn peer_identity(s: &TlsStream<TcpStream>) -> Option<Identity> {
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(identity)
}

/// Resolves no certificate: the handshake ends with a fatal alert.
#[derive(Debug)]
struct Refuse;

impl rustls::server::ResolvesServerCert for Refuse {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
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
        // The subject is the peer's: cut before it reaches a log line.
        let subject = id
            .as_ref()
            .map(|i| crate::logs::clip_to(&i.subject, 200))
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
