//! Which cluster kgate sends new connections to, for a cut-over without
//! touching clients. A switch (SIGHUP with new `bootstrap`, `dial`,
//! `upstream_tls` or `upstream_sasl` settings) makes a new [`Cluster`]
//! generation, with its own TLS and SASL, current at once: new
//! upstream connections go there, and every session still on an older
//! generation finishes its in-flight requests and closes at a request
//! boundary (the `Draining` state). Clients reconnect through the same
//! kgate ports and get the new cluster's metadata.
//!
//! Ports stay stable by node id: broker N of either cluster is served on
//! the same listener (`port_base + 1 + N`, or its `port_range`/static
//! slot), so two clusters with the same node ids (MSK: 1, 2, 3, …) map
//! onto the same ports.

use super::sasl::Authenticator;
use super::tls::UpstreamTls;
use crate::config::Config;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use tracing::info;

/// Clusters remembered for metrics (the current one and a few before it).
const KEEP: usize = 8;

/// One generation of upstream settings.
pub struct Cluster {
    /// 1 at start, one more at every switch.
    pub generation: u64,
    /// The first bootstrap server: how logs and metrics name the cluster.
    pub name: String,
    /// The settings dials use (bootstrap servers, dial mapping, timeouts).
    pub config: Arc<Config>,
    /// Upstream connections open to this cluster.
    pub open: AtomicU64,
    /// How connections to this cluster are secured and authenticated.
    pub reach: Reach,
}

/// TLS toward the brokers, and kgate's SASL identity, for one cluster.
#[derive(Default)]
pub struct Reach {
    pub tls: Option<UpstreamTls>,
    pub authenticator: Option<Arc<Authenticator>>,
}

/// Whether `new` names another cluster, or reaches it another way.
pub fn moves(old: &Config, new: &Config) -> bool {
    old.bootstrap != new.bootstrap
        || old.dial != new.dial
        || old.upstream_tls != new.upstream_tls
        || old.upstream_sasl != new.upstream_sasl
}

/// A connection counted on its cluster until dropped.
pub struct OnCluster(pub Arc<Cluster>);

impl OnCluster {
    pub fn new(c: Arc<Cluster>) -> Self {
        c.open.fetch_add(1, Relaxed);
        OnCluster(c)
    }
}

impl Drop for OnCluster {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

fn name_of(c: &Config) -> String {
    c.bootstrap
        .first()
        .map(|b| b.to_string())
        .unwrap_or_else(|| "none".into())
}

pub struct Clusters {
    current: RwLock<Arc<Cluster>>,
    history: Mutex<Vec<Arc<Cluster>>>,
    changed: watch::Sender<u64>,
    /// While true, new upstream connections wait (`upstream_hold`): the
    /// window in which the operator lets replication catch up and syncs
    /// consumer offsets, with no client writing or committing anywhere.
    hold: watch::Sender<bool>,
    /// The current generation, for code that must not wait (filters).
    pub generation: Arc<AtomicU64>,
}

impl Clusters {
    pub fn new(config: Arc<Config>, reach: Reach) -> Self {
        let first = Arc::new(Cluster {
            generation: 1,
            name: name_of(&config),
            config,
            open: AtomicU64::new(0),
            reach,
        });
        Clusters {
            current: RwLock::new(first.clone()),
            history: Mutex::new(vec![first]),
            changed: watch::Sender::new(1),
            hold: watch::Sender::new(false),
            generation: Arc::new(AtomicU64::new(1)),
        }
    }

    pub fn current(&self) -> Arc<Cluster> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Resolves when the current generation differs from `mine`.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Makes `config`'s upstream settings current when they [`moves`]
    /// away from the current ones; returns the new cluster.
    pub fn switch(&self, config: Arc<Config>, reach: Reach) -> Option<Arc<Cluster>> {
        let old = self.current();
        if !moves(&old.config, &config) {
            return None;
        }
        let next = Arc::new(Cluster {
            generation: old.generation + 1,
            name: name_of(&config),
            config,
            open: AtomicU64::new(0),
            reach,
        });
        match self.current.write() {
            Ok(mut g) => *g = next.clone(),
            Err(p) => *p.into_inner() = next.clone(),
        }
        {
            let mut h = match self.history.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            h.push(next.clone());
            if h.len() > KEEP {
                h.remove(0);
            }
        }
        self.generation.store(next.generation, Relaxed);
        self.changed.send_replace(next.generation);
        info!(
            from = %old.name,
            to = %next.name,
            generation = next.generation,
            draining = old.open.load(Relaxed),
            "cluster switch: new connections go to the new cluster; existing ones finish in-flight requests and close"
        );
        Some(next)
    }

    /// Holds or releases new upstream connections.
    pub fn set_hold(&self, hold: bool) {
        let was = self.hold.send_replace(hold);
        if was != hold {
            if hold {
                info!("upstream_hold: new upstream connections wait until it is released");
            } else {
                info!("upstream_hold released: new upstream connections proceed");
            }
        }
    }

    pub fn held(&self) -> bool {
        *self.hold.borrow()
    }

    /// Waits while new connections are held, up to `limit`; false when
    /// the hold outlasted it.
    pub async fn released(&self, limit: std::time::Duration) -> bool {
        let mut rx = self.hold.subscribe();
        if !*rx.borrow() {
            return true;
        }
        let released = tokio::time::timeout(limit, async { rx.wait_for(|h| !*h).await.is_ok() }).await;
        released.unwrap_or(false)
    }

    /// (name, generation, open connections, current) of the clusters
    /// remembered.
    pub fn snapshot(&self) -> Vec<(String, u64, u64, bool)> {
        let cur = self.current().generation;
        let h = match self.history.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        h.iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.generation,
                    c.open.load(Relaxed),
                    c.generation == cur,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPort;

    #[tokio::test]
    async fn a_switch_bumps_the_generation_and_wakes_subscribers() {
        let a = Arc::new(Config::with_bootstrap(vec![HostPort::new("a", 1)]));
        let c = Clusters::new(a.clone(), Reach::default());
        let mut rx = c.subscribe();
        assert_eq!(c.current().generation, 1);
        assert!(
            c.switch(a.clone(), Reach::default()).is_none(),
            "same settings: no switch"
        );
        let on_a = OnCluster::new(c.current());
        let b = Arc::new(Config::with_bootstrap(vec![HostPort::new("b", 2)]));
        let n = c.switch(b, Reach::default()).expect("switched");
        assert_eq!((n.generation, n.name.as_str()), (2, "b:2"));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 2);
        assert_eq!(c.generation.load(Relaxed), 2);
        let snap = c.snapshot();
        assert_eq!(snap[0], ("a:1".into(), 1, 1, false));
        assert_eq!(snap[1], ("b:2".into(), 2, 0, true));
        drop(on_a);
        assert_eq!(c.snapshot()[0].2, 0);
        let back = c.switch(a, Reach::default()).expect("rollback is a switch too");
        assert_eq!((back.generation, back.name.as_str()), (3, "a:1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_makes_new_connections_wait_until_released_or_the_limit() {
        let c = Arc::new(Clusters::new(
            Arc::new(Config::with_bootstrap(vec![HostPort::new("a", 1)])),
            Reach::default(),
        ));
        assert!(c.released(std::time::Duration::from_secs(1)).await);
        c.set_hold(true);
        assert!(
            !c.released(std::time::Duration::from_secs(1)).await,
            "held past the limit"
        );
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.released(std::time::Duration::from_secs(30)).await })
        };
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "still held");
        c.set_hold(false);
        assert!(waiter.await.unwrap(), "released");
    }
}
