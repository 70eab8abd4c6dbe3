//! What a listener forwards to: the bootstrap servers, or one broker's
//! slot (where clients are sent, and which upstream broker it currently
//! stands for). Listeners create targets; sessions route by them.

use crate::config::HostPort;
use crate::rewrite::{Advertised, BrokerMapper};
use crate::upstream::dial::Route;
use std::sync::{Arc, RwLock};

/// One broker's listener: where clients are sent, and which upstream
/// broker (by its real name) it currently stands for.
#[derive(Debug)]
pub struct BrokerSlot {
    pub advertised: Advertised,
    pub bind: HostPort,
    pub(crate) upstream: RwLock<HostPort>,
    pub is_static: bool,
    /// A static listener bound to a broker node id follows a cut-over to
    /// that node id of the new cluster.
    pub node_id: Option<i32>,
    /// Per-listener override of client-side TLS.
    pub tls: Option<bool>,
    /// The cluster generation `upstream` was learned from; after a
    /// cut-over a stale slot is refreshed before it is dialled.
    pub(crate) generation: std::sync::atomic::AtomicU64,
}

impl BrokerSlot {
    pub fn upstream(&self) -> HostPort {
        match self.upstream.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_generation(&self, g: u64) {
        self.generation.store(g, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn repoint(&self, to: HostPort) {
        match self.upstream.write() {
            Ok(mut g) => *g = to,
            Err(p) => *p.into_inner() = to,
        }
    }
}

/// The one SNI-routed TLS port: the client's server name picks the
/// target, and responses advertise the per-broker names on that port.
/// Implemented by the listener layer (`listener::sni`).
pub trait SniRoutes: Send + Sync + std::fmt::Debug {
    /// The target a server name reaches; `Err(why)` refuses the client.
    fn resolve(&self, name: Option<&str>) -> Result<Target, String>;
    /// Where responses on this port send clients.
    fn mapper(&self) -> &dyn BrokerMapper;
    /// The port's bind address (logs, metrics).
    fn bind(&self) -> &HostPort;
}

/// What a listener forwards to.
#[derive(Debug, Clone)]
pub enum Target {
    Bootstrap,
    Broker(Arc<BrokerSlot>),
    /// Decided per connection by the client's SNI name, before anything
    /// goes upstream.
    Sni(Arc<dyn SniRoutes>),
}

impl Target {
    /// Whether clients of this listener speak TLS.
    pub fn client_tls(&self, default: bool) -> bool {
        match self {
            Target::Broker(s) => s.tls.unwrap_or(default),
            Target::Bootstrap => default,
            Target::Sni(_) => true,
        }
    }

    /// Where the upstream connection must go now; `None` for an SNI port
    /// whose client has not been routed (never a default broker).
    pub fn route(&self) -> Option<Route> {
        match self {
            Target::Bootstrap => Some(Route::Bootstrap),
            Target::Broker(s) => Some(Route::Broker(s.upstream())),
            Target::Sni(_) => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Target::Bootstrap => "bootstrap".into(),
            Target::Broker(s) => format!("{}:{}", s.bind.host, s.bind.port),
            Target::Sni(r) => format!("sni:{}", r.bind()),
        }
    }
}
