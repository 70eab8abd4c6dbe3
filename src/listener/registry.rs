//! The registry of broker listeners: static ones from the config, and
//! dynamic ones created the first time a broker appears in a response
//! (deterministic port `port_base + 1 + node_id`, or the next free port of
//! a configured range). A broker that moves re-points its listener. Every
//! broker address passes [`Hosts`] (valid host, allow-list, port) first.

use super::hosts::Hosts;
use crate::config::{Config, HostPort};
use crate::rewrite::{Advertised, BrokerMapper, MapError};
pub use crate::session::target::{BrokerSlot, Target};
use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// A freshly bound listener for the accept-loop spawner.
pub struct NewListener {
    pub socket: StdListener,
    pub target: Target,
    pub proxy: crate::config::ProxyMode,
}

/// A broker whose listener could not be created: retried with back-off,
/// and reported by readiness until it works.
struct Failed {
    retry_at: std::time::Instant,
    backoff: std::time::Duration,
    why: String,
}

#[derive(Default)]
struct Inner {
    by_node: HashMap<i32, Arc<BrokerSlot>>,
    failed: HashMap<i32, Failed>,
    dynamic: usize,
    by_static_upstream: HashMap<HostPort, Arc<BrokerSlot>>,
    next_range_port: Option<u16>,
}

pub struct Registry {
    config: Arc<Config>,
    hosts: Hosts,
    /// The cluster generation broker addresses now come from.
    generation: std::sync::atomic::AtomicU64,
    inner: Mutex<Inner>,
    spawn: mpsc::UnboundedSender<NewListener>,
}

/// Listen backlog: bursts of thousands of clients must not be dropped by
/// the kernel before kgate accepts them (std's default is 128).
const BACKLOG: i32 = 4096;

/// Binds a listening socket (non-blocking, ready for tokio).
pub fn bind(addr: &HostPort) -> std::io::Result<StdListener> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "host resolved to no address",
    );
    for sa in (addr.host.as_str(), addr.port).to_socket_addrs()? {
        let sock = socket2::Socket::new(socket2::Domain::for_address(sa), socket2::Type::STREAM, None)?;
        sock.set_reuse_address(true)?;
        match sock.bind(&sa.into()).and_then(|_| sock.listen(BACKLOG)) {
            Ok(()) => {
                sock.set_nonblocking(true)?;
                return Ok(sock.into());
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Registry {
    /// Binds every static listener up front.
    pub fn new(config: Arc<Config>, spawn: mpsc::UnboundedSender<NewListener>) -> Result<Self, String> {
        let mut inner = Inner {
            next_range_port: config.port_range.map(|r| r.0),
            ..Default::default()
        };
        for s in &config.static_listeners {
            let socket = bind(&s.bind)
                .map_err(|e| format!("static listener for {} on {}: {e}", s.upstream, s.bind))?;
            let slot = Arc::new(BrokerSlot {
                advertised: Advertised {
                    host: s.advertised.host.as_str().into(),
                    port: s.advertised.port as i32,
                },
                bind: s.bind.clone(),
                upstream: std::sync::RwLock::new(s.upstream.clone()),
                is_static: true,
                node_id: s.node_id,
                tls: s.tls,
                generation: std::sync::atomic::AtomicU64::new(1),
            });
            info!(upstream = %s.upstream, bind = %s.bind, advertised = %s.advertised, "static listener");
            let _ = spawn.send(NewListener {
                socket,
                target: Target::Broker(slot.clone()),
                proxy: s.proxy_protocol.unwrap_or(config.proxy_protocol),
            });
            if let Some(id) = s.node_id {
                inner.by_node.insert(id, slot.clone());
            }
            inner.by_static_upstream.insert(s.upstream.clone(), slot);
        }
        Ok(Registry {
            hosts: Hosts::new(&config)?,
            generation: std::sync::atomic::AtomicU64::new(1),
            config,
            inner: Mutex::new(inner),
            spawn,
        })
    }

    /// A cut-over: the upstream host allow-list follows the new cluster's
    /// settings (`upstream_hosts`, or patterns derived from its bootstrap
    /// servers and dial mapping).
    pub fn set_upstream(&self, config: &Config) -> Result<(), String> {
        self.hosts.set_upstream(config)
    }

    /// Broker addresses from now on belong to cluster generation `g`;
    /// slots learned earlier are stale until a response re-points them.
    pub fn set_generation(&self, g: u64) {
        self.generation.store(g, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records a broker whose listener could not be bound (a local failure:
    /// port taken, overflow, range full) and when to try again.
    fn bind_failed(&self, inner: &mut Inner, node_id: i32, e: MapError, now: std::time::Instant) -> MapError {
        let backoff = inner
            .failed
            .get(&node_id)
            .map(|f| (f.backoff * 2).min(std::time::Duration::from_secs(60)))
            .unwrap_or(std::time::Duration::from_secs(1));
        let why = format!(
            "local listener for broker {node_id} failed: {}; left out of responses, retry in {} s",
            e.0,
            backoff.as_secs()
        );
        inner.failed.insert(
            node_id,
            Failed {
                retry_at: now + backoff,
                backoff,
                why: e.0.clone(),
            },
        );
        crate::metrics::get()
            .listeners_failing
            .store(inner.failed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.hosts.refused("bind", node_id, &e.0, why)
    }

    /// The upstream probe's broker list (from the bootstrap servers, the
    /// cluster's own answer) no longer names these failed brokers: they stop
    /// counting against readiness. Client connections' lists are not used,
    /// since brokers can briefly disagree about membership.
    pub fn forget_unlisted(&self, node_ids: &[i32]) {
        let mut inner = self.lock();
        let before = inner.failed.len();
        inner.failed.retain(|id, _| node_ids.contains(id));
        if inner.failed.len() != before {
            info!(
                forgotten = before - inner.failed.len(),
                "brokers no longer in the cluster's list: their listener failures are forgotten"
            );
            crate::metrics::get()
                .listeners_failing
                .store(inner.failed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Why kgate is not fully serving, if a broker has no listener.
    pub fn problem(&self) -> Option<String> {
        let inner = self.lock();
        let mut ids: Vec<&i32> = inner.failed.keys().collect();
        ids.sort();
        let first = ids.first()?;
        let f = &inner.failed[*first];
        Some(format!(
            "{} broker(s) without a listener; broker {first}: {}",
            ids.len(),
            f.why
        ))
    }

    /// The broker slot for a node id, if one exists.
    pub fn slot(&self, node_id: i32) -> Option<Arc<BrokerSlot>> {
        self.lock().by_node.get(&node_id).cloned()
    }

    fn create(
        &self,
        inner: &mut Inner,
        node_id: i32,
        upstream: HostPort,
    ) -> Result<Arc<BrokerSlot>, MapError> {
        let c = &self.config;
        let (socket, port) = match c.port_range {
            Some((first, last)) => {
                let from = inner.next_range_port.unwrap_or(first);
                bind_in_range(&c.bind_host, from, first, last, node_id, &upstream)?
            }
            None => {
                let p = i64::from(c.port_base) + 1 + i64::from(node_id);
                if node_id < 0 || p > i64::from(u16::MAX) {
                    return Err(MapError(format!(
                        "broker {node_id} ({upstream}) would listen on port {p} (port_base {} + 1 + node id), outside 1-65535; configure a static listener for it or a port_range",
                        c.port_base
                    )));
                }
                let port = p as u16;
                let s = bind(&HostPort::new(c.bind_host.clone(), port)).map_err(|e| {
                    MapError(format!(
                        "cannot bind listener for broker {node_id} on {}:{port}: {e}",
                        c.bind_host
                    ))
                })?;
                (s, port)
            }
        };
        if c.port_range.is_some() {
            inner.next_range_port = port.checked_add(1);
        }
        let slot = Arc::new(BrokerSlot {
            advertised: Advertised {
                host: c.advertised_host.as_str().into(),
                port: port as i32,
            },
            bind: HostPort::new(c.bind_host.clone(), port),
            upstream: std::sync::RwLock::new(upstream.clone()),
            is_static: false,
            node_id: None,
            tls: None,
            generation: std::sync::atomic::AtomicU64::new(self.generation()),
        });
        crate::metrics::get()
            .dynamic_listeners_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        info!(node_id, upstream = %upstream, listener = %slot.bind, advertised = %format!("{}:{}", c.advertised_host, port), "dynamic listener created");
        self.spawn
            .send(NewListener {
                socket,
                target: Target::Broker(slot.clone()),
                proxy: c.proxy_protocol,
            })
            .map_err(|_| MapError("kgate is shutting down".into()))?;
        Ok(slot)
    }
}

/// The first port of `from..=last` that binds.
fn bind_in_range(
    host: &str,
    from: u16,
    first: u16,
    last: u16,
    node_id: i32,
    upstream: &HostPort,
) -> Result<(StdListener, u16), MapError> {
    // One line per search, not one per busy port: a range full of taken
    // ports would otherwise log each of them for every broker.
    let mut busy: Option<(u16, u16, std::io::Error)> = None;
    let note = |busy: &Option<(u16, u16, std::io::Error)>| {
        if let Some((lo, hi, e)) = busy {
            if let Some(suppressed) = crate::logs::allow("port-range-busy") {
                warn!(node_id, ports = %format!("{lo}-{hi}"), error = %e, suppressed, "ports of port_range are busy; skipped");
            }
        }
    };
    for port in from.max(first)..=last {
        match bind(&HostPort::new(host, port)) {
            Ok(s) => {
                note(&busy);
                return Ok((s, port));
            }
            Err(e) => busy = Some((busy.map_or(port, |b| b.0), port, e)),
        }
    }
    note(&busy);
    Err(MapError(format!(
        "no free port left in port_range {first}-{last} for broker {node_id} ({upstream}); widen the range"
    )))
}

impl Registry {
    /// The checks every broker address from the cluster passes before
    /// kgate would dial it: a valid host, the upstream allow-list, a port.
    pub fn check_upstream(&self, node_id: i32, host: &str, port: i32) -> Result<HostPort, MapError> {
        self.hosts.check(node_id, host, port)
    }
}

impl BrokerMapper for Registry {
    fn known(&self, node_id: i32) -> Result<Advertised, MapError> {
        self.lock()
            .by_node
            .get(&node_id)
            .map(|s| s.advertised.clone())
            .ok_or_else(|| {
                MapError(format!(
                    "broker {node_id} of a cluster being drained has no listener; left out"
                ))
            })
    }

    fn advertise(&self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        let upstream = self.check_upstream(node_id, host, port)?;
        let mut inner = self.lock();
        if let Some(slot) = inner.by_static_upstream.get(&upstream).cloned() {
            inner.by_node.entry(node_id).or_insert_with(|| slot.clone());
            if slot.node_id == Some(node_id) {
                // Back on the cluster it started with (a rollback).
                if slot.upstream() != upstream {
                    if let Some(suppressed) = crate::logs::allow(&format!("moved:{node_id}")) {
                        warn!(node_id, from = %slot.upstream(), to = %upstream, listener = %slot.bind, suppressed, "broker back at its static listener's address; listener re-pointed");
                    }
                    slot.repoint(upstream);
                }
                slot.set_generation(self.generation());
            }
            return Ok(slot.advertised.clone());
        }
        if let Some(slot) = inner.by_node.get(&node_id).cloned() {
            if slot.upstream() == upstream {
                slot.set_generation(self.generation());
                return Ok(slot.advertised.clone());
            }
            if !slot.is_static || slot.node_id == Some(node_id) {
                if let Some(suppressed) = crate::logs::allow(&format!("moved:{node_id}")) {
                    warn!(node_id, from = %slot.upstream(), to = %upstream, listener = %slot.bind, suppressed, "broker moved; listener re-pointed");
                }
                slot.repoint(upstream);
                slot.set_generation(self.generation());
                return Ok(slot.advertised.clone());
            }
        }
        if !self.config.dynamic_listeners {
            return Err(MapError(format!(
                "broker {node_id} at {upstream} has no static listener and dynamic listeners are off; add it to static_listeners"
            )));
        }
        if inner.dynamic >= self.config.max_dynamic_listeners {
            return Err(self.hosts.refused(
                "cap",
                node_id,
                "",
                format!(
                    "broker {node_id} at {upstream} gets no listener: max_dynamic_listeners ({}) reached",
                    self.config.max_dynamic_listeners
                ),
            ));
        }
        let now = std::time::Instant::now();
        if let Some(f) = inner.failed.get(&node_id).filter(|f| f.retry_at > now) {
            return Err(MapError(f.why.clone()));
        }
        let slot = match self.create(&mut inner, node_id, upstream) {
            Ok(s) => s,
            Err(e) => return Err(self.bind_failed(&mut inner, node_id, e, now)),
        };
        if inner.failed.remove(&node_id).is_some() {
            info!(node_id, listener = %slot.bind, "broker listener created after earlier failures");
        }
        crate::metrics::get()
            .listeners_failing
            .store(inner.failed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        inner.dynamic += 1;
        inner.by_node.insert(node_id, slot.clone());
        Ok(slot.advertised.clone())
    }
}
