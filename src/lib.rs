//! kgate: a Kafka proxy that gives every upstream broker its own local
//! listener and rewrites every broker address handed back to a client.
//!
//! The data path, in module order:
//! [`listener`] → [`session`] (context, state, pump) → [`filter`] →
//! [`protocol`] → [`rewrite`] → [`upstream`] (connect, dial, tls, sasl,
//! credentials), with [`downstream`] for client TLS, [`tls`] shared by
//! both sides, and [`admin`] for operators. Imports only point down.

pub mod admin;
pub mod config;
pub mod downstream;
pub mod fd_limit;
pub mod filter;
pub mod listener;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod protocol;
pub mod rewrite;
pub mod session;
mod startup;
pub mod tls;
pub mod upstream;

use admin::health::Health;
use config::{Config, HostPort};
use downstream::tls::DownstreamTls;
use filter::Chain;
use listener::registry::{bind, NewListener, Registry};
use session::budget::Budget;
use session::target::Target;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tls::reload::Reload;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use upstream::connect::Connector;
use upstream::tls::UpstreamTls;

/// What every connection shares: the configuration, the listener
/// registry, the one way upstream, client TLS, the filter chain and the
/// buffer budget, plus operations state.
pub struct Shared {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub connector: Connector,
    pub downstream_tls: Option<DownstreamTls>,
    pub chain: Chain,
    /// The chain for connections on a cluster generation after the first
    /// (a cut-over happened): it also maps producer ids.
    pub chain_moved: Chain,
    /// Producer ids across cluster generations.
    pub producer_ids: Arc<filter::producer_ids::registry::Registry>,
    pub budget: Budget,
    pub health: Health,
    /// True once shutdown began: sessions stop reading and drain.
    pub shutdown: watch::Sender<bool>,
    pub open_connections: AtomicUsize,
    /// Connections per client address (max_connections_per_client).
    pub clients: listener::per_client::PerClient,
    /// Limits and timeouts that SIGHUP can change.
    pub live: live::LiveCell,
    /// One broker refresh at a time after a cut-over.
    pub refresh: tokio::sync::Mutex<()>,
    /// The SNI port's router, when there is one (the probe keeps its
    /// names pointing at the current cluster).
    pub sni: std::sync::OnceLock<Arc<listener::sni::SniRouter>>,
    /// The policy's topic id → name map, when a policy is configured.
    pub topic_ids: Option<Arc<filter::policy::ids::TopicIds>>,
    /// kgate's SASL server for clients (`[client_auth]`).
    pub client_auth: Option<Arc<downstream::sasl::Server>>,
    /// The last broker ApiVersions list seen (after kgate's caps).
    pub versions: Arc<protocol::sasl_server::VersionsCache>,
}

impl Shared {
    /// After a cut-over, a broker listener still names the old cluster's
    /// broker until the new cluster's metadata re-points it: ask the new
    /// cluster once (one request at a time, however many clients wait).
    pub async fn refresh_brokers(&self, slot: &session::target::BrokerSlot) {
        let _one = self.refresh.lock().await;
        if slot.generation() == self.registry.generation() {
            return;
        }
        if let Err(e) = admin::probe::once(self).await {
            warn!(error = %e, "cut-over: cannot learn the new cluster's brokers yet");
        }
    }

    /// The broker's ApiVersions list for answers kgate gives before an
    /// upstream exists: the last one seen; else one fetched now through the
    /// bootstrap servers; else (unreachable) the versions kgate parses.
    pub async fn api_versions(&self) -> protocol::sasl_server::Versions {
        if let Some(v) = self.versions.get() {
            return v;
        }
        {
            let _one = self.refresh.lock().await;
            if self.versions.get().is_none() {
                let wait = self.config.connect_timeout * 2;
                if let Ok(Err(e)) | Err(e) = tokio::time::timeout(wait, admin::probe::once(self))
                    .await
                    .map_err(|_| "timed out".to_string())
                {
                    warn!(error = %e, "cannot learn the broker's ApiVersions; answering clients with kgate's own");
                }
            }
        }
        self.versions
            .get()
            .unwrap_or_else(|| Arc::new(protocol::sasl_server::own_versions()))
    }

    /// SIGHUP with a valid configuration: live limits and timeouts, and a
    /// cut-over when the bootstrap servers, the dial mapping, upstream TLS
    /// or upstream SASL changed.
    pub async fn reload(&self, new: Config) {
        self.live.apply(&self.config, &new);
        if let Some(a) = &self.client_auth {
            match a.reload() {
                Ok(users) => info!(users, "SIGHUP: client users file and JWKS re-read"),
                Err(e) => {
                    error!(error = %e, "SIGHUP: client users file or JWKS is invalid; keeping the loaded ones")
                }
            }
        }
        let clusters = &self.connector.clusters;
        let current = clusters.current();
        let hold = new.upstream_hold;
        if upstream::cluster::moves(&current.config, &new) {
            // Hold first, so nothing reaches the new cluster before the
            // operator says so.
            if hold {
                clusters.set_hold(true);
            }
            if let Err(e) = self.cut_over(new).await {
                error!(error = %e, "cut-over refused; staying on the current cluster");
            }
        }
        clusters.set_hold(hold);
    }

    async fn cut_over(&self, new: Config) -> Result<(), String> {
        let tls = new
            .upstream_tls
            .as_ref()
            .map(UpstreamTls::new)
            .transpose()
            .map_err(|e| format!("the new upstream_tls settings: {e}"))?;
        self.registry
            .set_upstream(&new)
            .map_err(|e| format!("the new cluster's upstream host allow-list is invalid: {e}"))?;
        let authenticator = startup::authenticator(&new).await;
        let reach = upstream::cluster::Reach { tls, authenticator };
        if let Some(c) = self.connector.clusters.switch(Arc::new(new), reach) {
            self.registry.set_generation(c.generation);
        }
        Ok(())
    }

    /// Re-reads certificate material: changed files only, or all (SIGHUP).
    pub fn reload_tls(&self, force: bool) {
        if let Some(t) = &self.connector.clusters.current().reach.tls {
            t.config.reload(force);
        }
        if let Some(t) = &self.downstream_tls {
            t.config.reload(force);
        }
    }
}

/// A running kgate.
pub struct Running {
    /// The bootstrap listener's bound address.
    pub bootstrap: SocketAddr,
    /// The admin listener's bound address, if enabled.
    pub admin: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    tasks: tokio::task::JoinHandle<()>,
    /// Kept serving through the drain so /readyz keeps answering 503.
    _admin: Option<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Running {
    /// Graceful stop: readiness fails at once, listeners close, sessions
    /// finish their in-flight requests; returns when all connections are
    /// gone or `drain_timeout` passed.
    pub async fn drain(self) -> usize {
        self.shared.health.start_draining();
        self.tasks.abort();
        let _ = self.shared.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.shared.config.drain_timeout;
        while self.shared.open_connections.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.open_connections.load(Relaxed)
    }

    /// Stops accepting at once (tests).
    pub fn stop(self) {
        self.tasks.abort();
    }
}

/// Accepts on every listener the registry hands over, and runs the probe
/// and the certificate reload ticker.
async fn run_listeners(s: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<NewListener>) {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin::probe::run(s.clone()));
    tasks.spawn(admin::producer_ids::run(s.clone(), s.producer_ids.clone()));
    if let Some(ids) = s.topic_ids.clone() {
        tasks.spawn(admin::topic_ids::run(s.clone(), ids));
    }
    // Always: a cut-over can bring upstream TLS later.
    {
        let r = s.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(r.config.tls_reload_interval);
            loop {
                tick.tick().await;
                r.reload_tls(false);
            }
        });
    }
    while let Some(n) = rx.recv().await {
        match TcpListener::from_std(n.socket) {
            Ok(l) => {
                metrics::get().listeners.fetch_add(1, Relaxed);
                tasks.spawn(listener::accept_loop(s.clone(), l, n.target, n.proxy));
            }
            Err(e) => error!(listener = %n.target.label(), error = %e, "cannot register listener"),
        }
    }
}

/// Binds the bootstrap, static and admin listeners and starts accepting.
pub async fn start(config: Config) -> Result<Running, String> {
    tls::install_provider();
    let config = Arc::new(config);
    startup::open_files(&config);
    let upstream_tls = config.upstream_tls.as_ref().map(UpstreamTls::new).transpose()?;
    let downstream_tls = config
        .downstream_tls
        .as_ref()
        .map(|d| DownstreamTls::new(d, config.sni.as_ref()))
        .transpose()?;
    let authenticator = startup::authenticator(&config).await;
    let (tx, rx) = mpsc::unbounded_channel::<NewListener>();
    let boot_addr = HostPort::new(config.bind_host.clone(), config.port_base);
    let boot =
        bind(&boot_addr).map_err(|e| format!("cannot bind the bootstrap listener on {boot_addr}: {e}"))?;
    let bootstrap = boot.local_addr().map_err(|e| e.to_string())?;
    // A second kgate on the same host keeps serving Kafka without admin.
    let admin = config.admin_listen.as_ref().and_then(|a| {
        bind(a)
            .inspect_err(|e| {
                warn!(admin = %a, error = %e, "cannot bind the admin listener; running without /metrics and probes (set admin_listen to another port, or \"off\")")
            })
            .ok()
    });
    let admin_addr = admin.as_ref().and_then(|a| a.local_addr().ok());
    let registry = Arc::new(Registry::new(config.clone(), tx.clone())?);
    let identities = startup::identities(&config, authenticator.as_deref()).await;
    let connector = Connector::new(config.clone(), upstream_tls, authenticator).with_identities(identities);
    connector.clusters.set_hold(config.upstream_hold);
    let client_auth = startup::client_auth(&config)?;
    let versions = Arc::new(protocol::sasl_server::VersionsCache::default());
    let topic_ids = config
        .policy
        .as_ref()
        .map(|_| Arc::new(filter::policy::ids::TopicIds::default()));
    let producer_ids = Arc::new(filter::producer_ids::registry::Registry::default());
    let [chain, chain_moved] = [false, true].map(|rewrite| {
        filter::standard_chain(
            registry.clone(),
            connector.clusters.generation.clone(),
            config.policy.clone().zip(topic_ids.clone()),
            filter::ClientSide {
                auth: client_auth.clone(),
                versions: versions.clone(),
            },
            filter::producer_ids::ProducerIds {
                ids: producer_ids.clone(),
                rewrite,
            },
        )
    });
    info!(filters = ?chain.names(), "filter chain");
    let shared = Arc::new(Shared {
        config: config.clone(),
        registry,
        connector,
        downstream_tls,
        chain,
        chain_moved,
        producer_ids,
        budget: Budget::new(config.buffer_budget_bytes),
        health: Health::new(config.ready_window),
        shutdown: watch::Sender::new(false),
        open_connections: AtomicUsize::new(0),
        clients: Default::default(),
        live: live::LiveCell::new(&config),
        refresh: tokio::sync::Mutex::new(()),
        sni: std::sync::OnceLock::new(),
        topic_ids,
        client_auth,
        versions,
    });
    let reg = shared.registry.clone();
    shared.health.set_checks(vec![Box::new(move || reg.problem())]);
    let _ = tx.send(NewListener {
        socket: boot,
        target: Target::Bootstrap,
        proxy: config.proxy_protocol,
    });
    if let Some(sni) = &config.sni {
        startup::start_sni(sni, &shared, &tx)?;
    }
    let upstreams: Vec<String> = config.bootstrap.iter().map(|b| b.to_string()).collect();
    info!(listener = %bootstrap, upstream = %upstreams.join(","), "bootstrap listener");
    let admin_task = admin
        .and_then(|a| TcpListener::from_std(a).ok())
        .map(|a| AbortOnDrop(tokio::spawn(admin::serve(shared.clone(), a))));
    let tasks = tokio::spawn(run_listeners(shared.clone(), rx));
    Ok(Running {
        bootstrap,
        admin: admin_addr,
        shared,
        tasks,
        _admin: admin_task,
    })
}
