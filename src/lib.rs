//! kgate: a Kafka proxy that gives every upstream broker its own local
//! listener and rewrites every broker address handed back to a client.
//!
//! The data path, in module order:
//! [`listener`] → [`session`] → [`protocol`] → [`rewrite`] → [`upstream`].

pub mod config;
pub mod downstream;
pub mod listener;
pub mod metrics;
pub mod protocol;
pub mod rewrite;
pub mod session;
pub mod tls;
pub mod upstream;

use config::{Config, HostPort};
use downstream::tls::DownstreamTls;
use listener::registry::{bind, NewListener, Registry, Target};
use std::net::SocketAddr;
use std::sync::Arc;
use tls::reload::Reload;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{error, info};
use upstream::tls::UpstreamTls;

/// What every connection shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub upstream_tls: Option<UpstreamTls>,
    pub downstream_tls: Option<DownstreamTls>,
    pub authenticator: Option<Arc<upstream::sasl::Authenticator>>,
    pub throttle: session::auth::Throttle,
}

impl Shared {
    /// Re-reads certificate material: changed files only, or all (SIGHUP).
    pub fn reload_tls(&self, force: bool) {
        if let Some(t) = &self.upstream_tls {
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
    pub shared: Arc<Shared>,
    spawner: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting on every listener. Existing sessions end with their
    /// connections.
    pub fn stop(self) {
        self.spawner.abort();
    }
}

/// Binds the bootstrap and static listeners and starts accepting.
pub async fn start(config: Config) -> Result<Running, String> {
    tls::install_provider();
    let config = Arc::new(config);
    let upstream_tls = config.upstream_tls.as_ref().map(UpstreamTls::new).transpose()?;
    let downstream_tls = config
        .downstream_tls
        .as_ref()
        .map(DownstreamTls::new)
        .transpose()?;
    let authenticator = match &config.upstream_sasl {
        Some(s) => {
            let creds = if s.mechanism.uses_aws() {
                Some(Arc::new(
                    upstream::credentials::CredentialCache::from_options(&s.aws).await,
                ))
            } else {
                None
            };
            info!(mechanism = s.mechanism.wire_name(), "upstream SASL");
            Some(Arc::new(upstream::sasl::Authenticator::new(s.clone(), creds)))
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<NewListener>();
    let boot_addr = HostPort::new(config.bind_host.clone(), config.port_base);
    let boot =
        bind(&boot_addr).map_err(|e| format!("cannot bind the bootstrap listener on {boot_addr}: {e}"))?;
    let bootstrap = boot.local_addr().map_err(|e| e.to_string())?;
    let registry = Arc::new(Registry::new(config.clone(), tx.clone())?);
    let shared = Arc::new(Shared {
        config: config.clone(),
        registry,
        upstream_tls,
        downstream_tls,
        authenticator,
        throttle: Default::default(),
    });
    let _ = tx.send(NewListener {
        socket: boot,
        target: Target::Bootstrap,
    });
    info!(listener = %bootstrap, upstream = %config.bootstrap.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(","), "bootstrap listener");
    let s = shared.clone();
    let spawner = tokio::spawn(async move {
        let mut accept_loops = tokio::task::JoinSet::new();
        if s.upstream_tls.is_some() || s.downstream_tls.is_some() {
            let r = s.clone();
            accept_loops.spawn(async move {
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
                    accept_loops.spawn(listener::accept_loop(s.clone(), l, n.target));
                }
                Err(e) => {
                    error!(listener = %n.target.label(), error = %e, "cannot register listener")
                }
            }
        }
    });
    Ok(Running {
        bootstrap,
        shared,
        spawner,
    })
}
