//! The one way to reach a broker: back-off, dial (with dial mapping), TLS,
//! then SASL. Sessions, the upstream probe and anything later (cut-over,
//! storm control) go through [`Connector`].
//!
//! [`Connector::open`] and [`Connector::authenticate`] are separate steps so
//! a session's state machine can show `Connecting` and `Authenticating`;
//! [`Connector::connect`] runs both. Every dial first passes the
//! per-broker storm limits ([`Storm`]): over the rate it waits, over the
//! maximum it is refused.

use super::cluster::{Clusters, OnCluster, Reach};
use super::dial::{dial, DialError, Route};
use super::identity::{Identities, Mapped};
use super::sasl::direct::Direct;
use super::sasl::{Authenticator, SaslError};
use super::storm::{Slot, Storm};
use super::throttle::Throttle;
use super::tls::UpstreamTls;
use crate::config::{Config, HostPort};
use crate::metrics;
use crate::tls::stream::Stream;
use std::sync::Arc;
use std::time::Duration;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An open upstream connection.
pub struct Upstream {
    pub stream: Stream,
    /// The broker's real name (TLS name, signing host).
    pub broker: HostPort,
    /// From the last SASL exchange; 0 when the broker sets no limit.
    pub session_lifetime_ms: i64,
    /// Counts against the broker's `upstream_max_connections_per_broker`
    /// until the connection is dropped.
    pub slot: Slot,
    /// The cluster generation this connection belongs to (counted there).
    pub cluster: OnCluster,
    /// The principal's own upstream identity; `None`: kgate's own.
    pub identity: Option<Arc<Mapped>>,
}

/// As whom a connection reaches the cluster.
#[derive(Debug, Clone, Copy)]
pub enum As<'a> {
    /// kgate's own identity (the probe).
    Kgate,
    /// A client connection with this principal (`None`: none known).
    Client(Option<&'a str>),
}

impl Upstream {
    /// The SASL identity this connection authenticates with: the
    /// principal's own, else kgate's toward this connection's cluster.
    pub fn authenticator(&self) -> Option<Arc<Authenticator>> {
        match &self.identity {
            Some(m) => Some(m.authenticator.clone()),
            None => self.cluster.0.reach.authenticator.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("upstream unavailable: {0}")]
    Dial(#[from] DialError),
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Sasl(#[from] SaslError),
    #[error("no upstream identity: {0}")]
    Identity(String),
    #[error("upstream_hold is on (a cut-over in progress) and was not released within upstream_connect_wait_ms ({0} ms); the client will reconnect")]
    Held(u64),
}

/// Dial mapping, TCP, TLS, SASL and per-broker back-off, in one place.
pub struct Connector {
    /// The cluster new connections go to (switched by a cut-over).
    pub clusters: Clusters,
    pub throttle: Throttle,
    /// Per-broker rate and maximum of new connections.
    pub storm: Storm,
    /// `[[upstream_identity]]`, when configured.
    pub identities: Option<Identities>,
}

impl Connector {
    pub fn new(
        config: Arc<Config>,
        tls: Option<UpstreamTls>,
        authenticator: Option<Arc<Authenticator>>,
    ) -> Self {
        Connector {
            throttle: Throttle::default(),
            storm: Storm::new(config.storm),
            clusters: Clusters::new(config, Reach { tls, authenticator }),
            identities: None,
        }
    }

    /// Per-principal identities (set once, at start-up).
    pub fn with_identities(mut self, ids: Option<Identities>) -> Self {
        self.identities = ids;
        self
    }

    /// Chooses the identity for `who` (a refused principal never dials),
    /// waits out any back-off, dials and completes TLS.
    pub async fn open(&self, route: &Route, who: As<'_>) -> Result<Upstream, ConnectError> {
        let identity = match (&self.identities, who) {
            (Some(ids), As::Client(p)) => ids.resolve(p).await.map_err(|e| ConnectError::Identity(e.0))?,
            _ => None,
        };
        let limit = self.storm.limits().wait;
        if !self.clusters.released(limit).await {
            return Err(ConnectError::Held(limit.as_millis() as u64));
        }
        if let Route::Broker(b) = route {
            self.throttle.wait(&b.to_string()).await;
        }
        let m = metrics::get();
        let cluster = self.clusters.current();
        let up = dial(&cluster.config, &self.storm, route).await.inspect_err(|e| {
            let cause = match e {
                DialError::Refused { cause, .. } => cause.label(),
                _ => "unreachable",
            };
            m.upstream_failures.add(("connect", cause.into()), 1);
        })?;
        let broker = up.broker.clone();
        let stream = match &cluster.reach.tls {
            Some(tls) => {
                let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(up.stream, &broker.host))
                    .await
                    .map_err(|_| ConnectError::Tls(format!("TLS handshake with {broker} timed out")))
                    .and_then(|r| r.map_err(ConnectError::Tls))
                    .inspect_err(|_| m.upstream_failures.add(("tls", "handshake".into()), 1))?;
                Stream::Client(Box::new(s))
            }
            None => Stream::Plain(up.stream),
        };
        Ok(Upstream {
            stream,
            broker,
            session_lifetime_ms: 0,
            slot: up.slot,
            cluster: OnCluster::new(cluster),
            identity,
        })
    }

    /// The SASL exchange on a fresh connection, as the identity
    /// [`Connector::open`] chose (a no-op without SASL). "Too many
    /// connects" starts a back-off for that broker.
    pub async fn authenticate(&self, up: &mut Upstream) -> Result<(), ConnectError> {
        let Some(a) = up.authenticator() else {
            return Ok(());
        };
        let key = up.broker.to_string();
        match a
            .authenticate(&mut Direct::new(&mut up.stream), &up.broker.host)
            .await
        {
            Ok(o) => {
                self.throttle.clear(&key);
                up.session_lifetime_ms = o.session_lifetime_ms;
                Ok(())
            }
            Err(e) => {
                if e.is_throttle() {
                    self.throttle.hit(&key);
                    self.storm.slow_down(&key);
                }
                metrics::get().upstream_failures.add(("sasl", e.short_cause()), 1);
                Err(e.into())
            }
        }
    }

    /// [`Connector::open`] then [`Connector::authenticate`], as kgate.
    pub async fn connect(&self, route: &Route) -> Result<Upstream, ConnectError> {
        let mut up = self.open(route, As::Kgate).await?;
        self.authenticate(&mut up).await?;
        Ok(up)
    }
}
