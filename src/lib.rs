//! kgate: a Kafka proxy that gives every upstream broker its own local
//! listener and rewrites every broker address handed back to a client.
//!
//! The data path, in module order:
//! [`listener`] → [`session`] → [`protocol`] → [`rewrite`] → [`upstream`].

pub mod config;
pub mod listener;
pub mod protocol;
pub mod rewrite;
pub mod session;
pub mod upstream;

use config::{Config, HostPort};
use listener::registry::{bind, NewListener, Registry, Target};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{error, info};

/// What every connection shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
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
    let config = Arc::new(config);
    let (tx, mut rx) = mpsc::unbounded_channel::<NewListener>();
    let boot_addr = HostPort::new(config.bind_host.clone(), config.port_base);
    let boot = bind(&boot_addr)
        .map_err(|e| format!("cannot bind the bootstrap listener on {boot_addr}: {e}"))?;
    let bootstrap = boot.local_addr().map_err(|e| e.to_string())?;
    let registry = Arc::new(Registry::new(config.clone(), tx.clone())?);
    let shared = Arc::new(Shared {
        config: config.clone(),
        registry,
    });
    let _ = tx.send(NewListener {
        socket: boot,
        target: Target::Bootstrap,
    });
    info!(listener = %bootstrap, upstream = %config.bootstrap.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(","), "bootstrap listener");
    let s = shared.clone();
    let spawner = tokio::spawn(async move {
        let mut accept_loops = tokio::task::JoinSet::new();
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
