//! Configuration: a TOML file, `KGATE_*` environment variables and flags,
//! merged with precedence flag > env > file into one validated [`Config`].
//! Every error names the file or flag, the key, and what was expected.

mod check;
mod cli;
pub mod client_auth;
mod file;
mod identity;
mod limits;
pub mod listeners;
mod ops;
pub mod policy;
mod sasl;
mod tls;

pub use crate::tls::material::Passphrase;
pub use check::check_material;
pub use cli::{CheckArgs, RunArgs};
pub use client_auth::{ClientAuthConfig, ClientMechanism, OAuthBearerConfig};
pub use file::FileConfig;
pub use identity::{session_name_for, IdentityMap, IdentitySource, Unmapped, UpstreamIdentity};
pub use listeners::{BrokerPattern, ProxyMode, SniConfig};
pub use sasl::{AwsOptions, Mechanism, SaslConfig, Secret};
pub use tls::{DownstreamTlsConfig, PrincipalFrom, UpstreamTlsConfig};

use std::fmt;
use std::time::Duration;

pub const DEFAULT_PORT_BASE: u16 = 19092;
pub const DEFAULT_BIND_HOST: &str = "127.0.0.1";
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// 32 MiB: fits the shipped Nomad (128 MB) and Kubernetes (256 Mi) limits
/// with room for the process itself and per-connection read chunks.
pub const DEFAULT_BUFFER_BUDGET: usize = 32 << 20;
pub const DEFAULT_MAX_DYNAMIC_LISTENERS: usize = 256;

/// A `host:port` pair as written by the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostPort {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| format!("`{s}` is not `[ipv6]:port`"))?;
            (h, p)
        } else {
            s.rsplit_once(':')
                .ok_or_else(|| format!("`{s}` has no port; expected host:port"))?
        };
        if host.is_empty() {
            return Err(format!("`{s}` has an empty host; expected host:port"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}` has an invalid port; expected host:port with port 1-65535"))?;
        if port == 0 {
            return Err(format!("`{s}` has port 0; expected 1-65535"));
        }
        Ok(HostPort::new(host, port))
    }
}

/// A fixed listener for one upstream broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticListener {
    pub upstream: HostPort,
    /// When set, the listener serves broker `node_id` of whichever cluster
    /// is current, and follows a cut-over; `upstream` is where it starts.
    pub node_id: Option<i32>,
    pub bind: HostPort,
    pub advertised: HostPort,
    /// Overrides `downstream_tls` for this listener.
    pub tls: Option<bool>,
    /// Overrides the top-level `proxy_protocol` for this listener.
    pub proxy_protocol: Option<ProxyMode>,
}

/// Connection-storm control toward each upstream broker: a token bucket
/// of new connections and a cap on concurrent ones (MSK allows about 100
/// new IAM connections per second and about 3,000 in all per broker).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StormLimits {
    /// New connections per second per broker.
    pub rate: u32,
    /// New connections allowed at once above the rate.
    pub burst: u32,
    /// Concurrent connections per broker (waiting ones included).
    pub max_per_broker: usize,
    /// Longest a connection waits for the rate before it is refused.
    pub wait: Duration,
}

impl Default for StormLimits {
    fn default() -> Self {
        StormLimits {
            rate: 50,
            burst: 10,
            max_per_broker: 2000,
            wait: Duration::from_secs(30),
        }
    }
}

/// PrivateLink-style dialling: connect to `connect` whenever `broker` is
/// meant; everything that names the broker keeps `broker`'s name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialMapping {
    pub broker: HostPort,
    pub connect: HostPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bootstrap: Vec<HostPort>,
    pub bind_host: String,
    pub port_base: u16,
    pub advertised_host: String,
    pub dynamic_listeners: bool,
    pub port_range: Option<(u16, u16)>,
    pub static_listeners: Vec<StaticListener>,
    /// PROXY protocol on the bootstrap and dynamic listeners (static
    /// listeners and `[sni]` may override it).
    pub proxy_protocol: ProxyMode,
    /// One TLS port for every broker, routed by SNI.
    pub sni: Option<SniConfig>,
    pub dial: Vec<DialMapping>,
    pub max_frame_bytes: usize,
    pub max_in_flight: usize,
    /// Process-wide cap on bytes held to assemble frames that a filter must
    /// see whole; beyond it, reading waits (back-pressure).
    pub buffer_budget_bytes: usize,
    /// Most listeners kgate creates for brokers it learns.
    pub max_dynamic_listeners: usize,
    /// Host patterns brokers learned from the cluster may have; `None`:
    /// derived from the bootstrap servers (see `upstream::allow`).
    pub upstream_hosts: Option<Vec<String>>,
    /// Permit link-local broker addresses (where metadata services live).
    pub allow_link_local: bool,
    /// Move cut-through bytes with splice(2) when both sides are plain TCP.
    pub splice: bool,
    /// Runtime worker threads. One event loop moves hundreds of MB/s and
    /// adds the least latency; more help with many TLS connections.
    pub worker_threads: usize,
    pub connect_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: Option<String>,
    pub upstream_tls: Option<UpstreamTlsConfig>,
    pub downstream_tls: Option<DownstreamTlsConfig>,
    pub upstream_sasl: Option<SaslConfig>,
    /// Per-principal upstream credentials (`[[upstream_identity]]`).
    pub upstream_identity: IdentityMap,
    /// SASL toward clients (`[client_auth]`); `None`: clients do not
    /// authenticate and their SASL is refused.
    pub client_auth: Option<ClientAuthConfig>,
    /// Admin HTTP listener; `None` when disabled.
    pub admin_listen: Option<HostPort>,
    /// Admin connections served at once; more are closed at accept.
    pub admin_max_connections: usize,
    /// An admin client must send its request headers within this time.
    pub admin_header_timeout: Duration,
    /// An admin request must be answered (headers read, body written)
    /// within this time, or its connection is closed.
    pub admin_request_timeout: Duration,
    /// /readyz needs the upstream reached within this window.
    pub ready_window: Duration,
    pub drain_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_listener: Option<usize>,
    /// `None` disables the idle timeout.
    pub idle_timeout: Option<Duration>,
    pub request_timeout: Duration,
    /// A new connection must send one complete request within this long;
    /// nothing happens upstream before it does.
    pub first_request_timeout: Duration,
    /// Connections allowed from one client IP address; `None`: no limit.
    pub max_connections_per_client: Option<usize>,
    /// How often certificate files are checked for changes.
    pub tls_reload_interval: Duration,
    /// Per-broker limits on new and concurrent upstream connections.
    pub storm: StormLimits,
    /// New upstream connections wait while set (a cut-over's sync window).
    pub upstream_hold: bool,
    /// What each principal may do; `None`: no policy filter in the chain.
    pub policy: Option<std::sync::Arc<policy::PolicyConfig>>,
    /// How the old cluster's connections move at a cut-over to this config.
    pub cutover_order: CutoverOrder,
}

/// How connections on the old cluster move at a cut-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CutoverOrder {
    /// Every old connection drains at once.
    #[default]
    AllAtOnce,
    /// Connections that produced drain at once; the rest (consumers,
    /// admin) keep the old cluster for `consumer_delay` more.
    ProducersFirst { consumer_delay: Duration },
}

impl Config {
    /// A config with defaults and the given bootstrap servers.
    pub fn with_bootstrap(bootstrap: Vec<HostPort>) -> Self {
        Config {
            bootstrap,
            bind_host: DEFAULT_BIND_HOST.into(),
            port_base: DEFAULT_PORT_BASE,
            advertised_host: DEFAULT_BIND_HOST.into(),
            dynamic_listeners: true,
            port_range: None,
            static_listeners: Vec::new(),
            proxy_protocol: ProxyMode::Off,
            sni: None,
            dial: Vec::new(),
            max_frame_bytes: DEFAULT_MAX_FRAME,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            buffer_budget_bytes: DEFAULT_BUFFER_BUDGET,
            max_dynamic_listeners: DEFAULT_MAX_DYNAMIC_LISTENERS,
            upstream_hosts: None,
            allow_link_local: false,
            splice: true,
            worker_threads: 1,
            connect_timeout: Duration::from_secs(10),
            log_format: LogFormat::Human,
            log_level: None,
            upstream_tls: None,
            downstream_tls: None,
            upstream_sasl: None,
            upstream_identity: IdentityMap::default(),
            client_auth: None,
            admin_listen: Some(HostPort::new(DEFAULT_BIND_HOST, 9644)),
            admin_max_connections: 64,
            admin_header_timeout: Duration::from_secs(5),
            admin_request_timeout: Duration::from_secs(10),
            ready_window: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(20),
            max_connections: 10_000,
            max_connections_per_listener: None,
            idle_timeout: Some(Duration::from_secs(600)),
            request_timeout: Duration::from_secs(330),
            first_request_timeout: Duration::from_secs(10),
            max_connections_per_client: None,
            tls_reload_interval: Duration::from_secs(2),
            storm: StormLimits::default(),
            upstream_hold: false,
            cutover_order: CutoverOrder::AllAtOnce,
            policy: None,
        }
    }

    /// Where a connection to `broker` actually goes.
    pub fn dial_address(&self, broker: &HostPort) -> HostPort {
        self.dial
            .iter()
            .find(|d| &d.broker == broker)
            .map(|d| d.connect.clone())
            .unwrap_or_else(|| broker.clone())
    }
}

/// Parses `A-B` into an inclusive port range.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("`{s}` is not a range; expected FIRST-LAST, e.g. 30000-30100"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: first port is not 1-65535"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: last port is not 1-65535"))?;
    if a == 0 || a > b {
        return Err(format!("`{s}`: expected 1 <= FIRST <= LAST <= 65535"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests;
