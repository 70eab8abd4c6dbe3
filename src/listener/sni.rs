//! The SNI port: one TLS listener for every broker. The client's server
//! name picks the target — the bootstrap name reaches the bootstrap
//! servers, `prefix{node_id}suffix` reaches that broker — and responses on
//! this port advertise those names on the shared (advertised) port, so a
//! broker learned later needs no new port. An unknown name, or none, is
//! refused with a TLS alert; nothing ever falls back to a default broker.

use super::registry::Registry;
use crate::config::{HostPort, SniConfig};
use crate::rewrite::{Advertised, BrokerMapper, MapError};
use crate::session::target::{BrokerSlot, SniRoutes, Target};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

pub struct SniRouter {
    config: SniConfig,
    max_brokers: usize,
    registry: Arc<Registry>,
    /// node id → the broker's slot on this port (its upstream, re-pointed
    /// when the broker moves).
    by_node: Mutex<HashMap<i32, Arc<BrokerSlot>>>,
}

impl SniRouter {
    pub fn new(config: SniConfig, max_brokers: usize, registry: Arc<Registry>) -> Arc<Self> {
        Arc::new(SniRouter {
            config,
            max_brokers,
            registry,
            by_node: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<BrokerSlot>>> {
        match self.by_node.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn slot(&self, node_id: i32, upstream: HostPort) -> Arc<BrokerSlot> {
        Arc::new(BrokerSlot {
            advertised: Advertised {
                host: self.config.pattern.name(node_id).into(),
                port: i32::from(self.config.advertised_port),
            },
            bind: self.config.listen.clone(),
            upstream: std::sync::RwLock::new(upstream),
            is_static: false,
            node_id: None,
            tls: Some(true),
            // After a cut-over a stale name is refreshed (the probe's
            // Metadata re-points it) before it is dialled.
            generation: std::sync::atomic::AtomicU64::new(self.registry.generation()),
        })
    }

    /// Where the names go, for logs at start-up.
    pub fn describe(&self) -> String {
        format!(
            "{} → bootstrap, {} → broker N, advertised on port {}",
            self.config.bootstrap_name, self.config.pattern, self.config.advertised_port
        )
    }
}

impl std::fmt::Debug for SniRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl BrokerMapper for SniRouter {
    fn advertise(&self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        let upstream = self.registry.check_upstream(node_id, host, port)?;
        if node_id < 0 {
            return Err(MapError(format!(
                "broker {node_id}: a negative node id has no SNI name"
            )));
        }
        let mut by_node = self.lock();
        if let Some(s) = by_node.get(&node_id) {
            if s.upstream() != upstream {
                if let Some(suppressed) = crate::logs::allow(&format!("sni-moved:{node_id}")) {
                    warn!(node_id, from = %s.upstream(), to = %upstream, suppressed, "broker moved; SNI name re-pointed");
                }
                s.repoint(upstream);
            }
            s.set_generation(self.registry.generation());
            return Ok(s.advertised.clone());
        }
        if by_node.len() >= self.max_brokers {
            return Err(MapError(format!(
                "broker {node_id} at {upstream} gets no SNI name: max_dynamic_listeners ({}) brokers known",
                self.max_brokers
            )));
        }
        let slot = self.slot(node_id, upstream.clone());
        info!(node_id, %upstream, name = %slot.advertised.host, "broker reachable by SNI name");
        let adv = slot.advertised.clone();
        by_node.insert(node_id, slot);
        Ok(adv)
    }
}

impl SniRoutes for SniRouter {
    fn resolve(&self, name: Option<&str>) -> Result<Target, String> {
        let Some(name) = name else {
            return Err("the client sent no SNI name; connect with the bootstrap name or a broker name (an IP address carries no SNI)".into());
        };
        let lower = name.to_ascii_lowercase();
        if lower == self.config.bootstrap_name {
            return Ok(Target::Bootstrap);
        }
        let Some(node_id) = self.config.pattern.node_id(&lower) else {
            return Err(format!(
                "not the bootstrap name {} and not of the pattern {}",
                self.config.bootstrap_name, self.config.pattern
            ));
        };
        if let Some(s) = self.lock().get(&node_id) {
            return Ok(Target::Broker(s.clone()));
        }
        // Learned through a port-per-broker listener: same upstream.
        if let Some(s) = self.registry.slot(node_id) {
            let slot = self.slot(node_id, s.upstream());
            slot.set_generation(s.generation());
            self.lock().insert(node_id, slot.clone());
            return Ok(Target::Broker(slot));
        }
        Err(format!(
            "broker {node_id} is not known yet; clients learn broker names from a Metadata response through {}",
            self.config.bootstrap_name
        ))
    }

    fn mapper(&self) -> &dyn BrokerMapper {
        self
    }

    fn bind(&self) -> &HostPort {
        &self.config.listen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerPattern, Config, ProxyMode};

    fn router(max: usize) -> Arc<SniRouter> {
        let mut c = Config::with_bootstrap(vec![HostPort::new("127.0.0.1", 9092)]);
        c.upstream_hosts = Some(vec!["*".into()]);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let registry = Arc::new(Registry::new(Arc::new(c), tx).unwrap());
        let sni = SniConfig {
            listen: HostPort::new("127.0.0.1", 29092),
            bootstrap_name: "boot.k.internal".into(),
            pattern: BrokerPattern::parse("b-{node_id}.k.internal").unwrap(),
            advertised_port: 9094,
            proxy_protocol: ProxyMode::Off,
        };
        SniRouter::new(sni, max, registry)
    }

    fn upstream_of(t: Target) -> HostPort {
        match t {
            Target::Broker(s) => s.upstream(),
            other => panic!("expected a broker, got {other:?}"),
        }
    }

    #[test]
    fn names_route_learned_brokers_and_nothing_else() {
        let r = router(2);
        assert!(matches!(
            r.resolve(Some("BOOT.k.internal")),
            Ok(Target::Bootstrap)
        ));
        let e = r.resolve(Some("b-5.k.internal")).unwrap_err();
        assert!(e.contains("not known yet"), "{e}");
        let a = r.advertise(5, "10.0.0.5", 9098).unwrap();
        assert_eq!((&*a.host, a.port), ("b-5.k.internal", 9094));
        assert_eq!(
            upstream_of(r.resolve(Some("b-5.k.internal")).unwrap()),
            HostPort::new("10.0.0.5", 9098)
        );
        // A broker that moves keeps its name; the route follows it.
        r.advertise(5, "10.0.0.55", 9098).unwrap();
        assert_eq!(
            upstream_of(r.resolve(Some("b-5.k.internal")).unwrap()),
            HostPort::new("10.0.0.55", 9098)
        );
        for bad in [
            None,
            Some("evil.example.com"),
            Some("b-5.k.internal.evil"),
            Some("10.0.0.5"),
        ] {
            assert!(r.resolve(bad).is_err(), "{bad:?} routed");
        }
        assert!(r.advertise(-1, "10.0.0.9", 9098).is_err());
        assert!(r.advertise(6, "", 9098).is_err(), "invalid host");
        r.advertise(6, "10.0.0.6", 9098).unwrap();
        let e = r.advertise(7, "10.0.0.7", 9098).unwrap_err();
        assert!(e.0.contains("max_dynamic_listeners"), "{}", e.0);
    }
}
