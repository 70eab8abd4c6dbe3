//! The per-connection context: created at accept, handed to every step of
//! the pipeline — client TLS, the upstream connection, every filter, the
//! logs and the metrics. Who the client is, where it came in, which broker
//! it reaches, and (later) as whom.

use super::target::Target;
use crate::config::HostPort;
use crate::filter::Conn;
use crate::metrics::{self, ListenerStats};
use crate::tls::identity::Identity;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

/// What client TLS established.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The verified client certificate, when one was presented.
    pub identity: Option<Identity>,
    /// The name the client asked for (SNI).
    pub sni: Option<String>,
}

#[derive(Default)]
struct Mutable {
    tls: Option<ClientTls>,
    broker: Option<HostPort>,
    principal: Option<Arc<str>>,
    reauth_due: Option<Instant>,
    upstream_auth: Option<Arc<crate::upstream::sasl::Authenticator>>,
    stash: std::collections::VecDeque<(i32, Box<dyn std::any::Any + Send>)>,
}

pub struct Context {
    /// Process-unique connection number (logs).
    pub id: u64,
    pub listener: String,
    pub client: SocketAddr,
    /// The listener's target (for an SNI port, `Target::Sni`).
    pub target: Target,
    /// Where this connection goes, once its SNI name decided it.
    routed: std::sync::OnceLock<Target>,
    pub stats: Arc<ListenerStats>,
    session_lifetime_ms: AtomicI64,
    cluster_generation: AtomicU64,
    inner: Mutex<Mutable>,
    /// Immutable copy of the identity subject, for `Conn::identity`.
    subject: std::sync::OnceLock<String>,
    /// Client SASL state, created on first use (boxed: an idle
    /// connection holds one pointer).
    client_sasl: std::sync::OnceLock<Box<Mutex<crate::downstream::sasl::Session>>>,
}

impl Context {
    pub fn new(client: SocketAddr, target: Target) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let listener = target.label();
        Context {
            id: NEXT.fetch_add(1, Relaxed),
            stats: metrics::get().listener(&listener),
            listener,
            client,
            target,
            routed: std::sync::OnceLock::new(),
            session_lifetime_ms: AtomicI64::new(0),
            cluster_generation: AtomicU64::new(0),
            inner: Mutex::new(Mutable::default()),
            subject: std::sync::OnceLock::new(),
            client_sasl: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mutable> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn set_tls(&self, tls: ClientTls) {
        if let Some(id) = &tls.identity {
            let _ = self.subject.set(id.subject.clone());
        }
        self.lock().tls = Some(tls);
    }

    pub fn tls(&self) -> Option<ClientTls> {
        self.lock().tls.clone()
    }

    /// Records where an SNI name routed this connection.
    pub fn set_routed(&self, t: Target) {
        let _ = self.routed.set(t);
    }

    /// The target upstream connections use: the SNI route, or the
    /// listener's own target.
    pub fn routed(&self) -> &Target {
        self.routed.get().unwrap_or(&self.target)
    }

    pub fn set_broker(&self, b: HostPort) {
        self.lock().broker = Some(b);
    }

    /// The cluster generation the upstream connection belongs to.
    pub fn set_cluster_generation(&self, g: u64) {
        self.cluster_generation.store(g, Relaxed);
    }

    /// The SASL identity the upstream connection authenticated with; the
    /// re-authentication filter renews the session with the same one.
    pub fn set_authenticator(&self, a: Option<Arc<crate::upstream::sasl::Authenticator>>) {
        self.lock().upstream_auth = a;
    }

    /// Records who the client authenticated as; read through
    /// [`Conn::principal`].
    pub fn set_principal(&self, p: &str) {
        self.lock().principal = Some(p.into());
    }
}

impl Conn for Context {
    fn listener(&self) -> &str {
        &self.listener
    }
    fn client(&self) -> SocketAddr {
        self.client
    }
    fn identity(&self) -> Option<&str> {
        self.subject.get().map(String::as_str)
    }
    fn broker(&self) -> Option<HostPort> {
        self.lock().broker.clone()
    }
    fn broker_mapper(&self) -> Option<&dyn crate::rewrite::BrokerMapper> {
        match &self.target {
            Target::Sni(r) => Some(r.mapper()),
            _ => None,
        }
    }
    fn session_lifetime_ms(&self) -> i64 {
        self.session_lifetime_ms.load(Relaxed)
    }
    fn set_session_lifetime_ms(&self, ms: i64) {
        self.session_lifetime_ms.store(ms, Relaxed)
    }
    fn reauth_due(&self) -> Option<Instant> {
        self.lock().reauth_due
    }
    fn set_reauth_due(&self, at: Option<Instant>) {
        self.lock().reauth_due = at;
    }
    fn cluster_generation(&self) -> u64 {
        self.cluster_generation.load(Relaxed)
    }
    fn principal(&self) -> Option<Arc<str>> {
        self.lock().principal.clone()
    }
    fn authenticator(&self) -> Option<Arc<crate::upstream::sasl::Authenticator>> {
        self.lock().upstream_auth.clone()
    }
    fn stash(&self, correlation_id: i32, v: Box<dyn std::any::Any + Send>) {
        let mut g = self.lock();
        if g.stash.len() >= crate::filter::MAX_STASHED {
            g.stash.pop_front();
        }
        g.stash.push_back((correlation_id, v));
    }
    fn unstash(&self, correlation_id: i32) -> Option<Box<dyn std::any::Any + Send>> {
        let mut g = self.lock();
        let i = g.stash.iter().position(|(c, _)| *c == correlation_id)?;
        g.stash.remove(i).map(|(_, v)| v)
    }
    fn client_sasl(&self) -> Option<&Mutex<crate::downstream::sasl::Session>> {
        Some(self.client_sasl.get_or_init(Default::default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_carries_identity_broker_and_principal() {
        let c = Context::new("127.0.0.1:5000".parse().unwrap(), Target::Bootstrap);
        assert_eq!(c.listener, "bootstrap");
        assert_eq!(Conn::identity(&c), None);
        c.set_tls(ClientTls {
            identity: Some(Identity {
                subject: "CN=svc".into(),
                common_names: vec!["svc".into()],
                dns_names: vec![],
                serial: "01".into(),
            }),
            sni: Some("b-1.kafka.internal".into()),
        });
        assert_eq!(Conn::identity(&c), Some("CN=svc"));
        assert_eq!(c.tls().unwrap().sni.as_deref(), Some("b-1.kafka.internal"));
        c.set_broker(HostPort::new("b-1", 9094));
        assert_eq!(c.broker().unwrap().port, 9094);
        c.set_principal("alice");
        assert_eq!(c.principal().as_deref(), Some("alice"));
        let d = Context::new("127.0.0.1:5001".parse().unwrap(), Target::Bootstrap);
        assert_ne!(c.id, d.id);
    }
}
