//! Accept loops. An accept error (EMFILE, ECONNABORTED, …) is logged and
//! backed off; it never ends a listener. Connection limits refuse new
//! clients without touching existing ones.

pub mod hosts;
pub mod per_client;
pub mod proxy_protocol;
pub mod registry;
pub mod sni;

use crate::metrics;
use crate::session::target::Target;
use crate::Shared;
use proxy_protocol::{HeaderError, Mode as ProxyMode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

/// Accepts clients on `listener` and starts a session for each, after
/// the PROXY protocol header when `proxy` asks for one.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, target: Target, proxy: ProxyMode) {
    let label = target.label();
    let stats = metrics::get().listener(&label);
    let here = Arc::new(AtomicUsize::new(0));
    info!(listener = %label, "accepting");
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((sock, peer)) => {
                backoff = Duration::from_millis(5);
                let c = shared.live.get();
                let total = shared.open_connections.load(Relaxed);
                let open_here = here.load(Relaxed);
                let over = if total >= c.max_connections {
                    Some(format!("max_connections ({})", c.max_connections))
                } else {
                    c.max_connections_per_listener
                        .filter(|m| open_here >= *m)
                        .map(|m| format!("max_connections_per_listener ({m})"))
                };
                if let Some(limit) = over {
                    stats.refused.fetch_add(1, Relaxed);
                    if let Some(suppressed) = crate::logs::allow(&format!("limit:{label}")) {
                        warn!(listener = %label, client = %peer, %limit, suppressed, "connection refused: limit reached");
                    }
                    drop(sock);
                    continue;
                }
                // Without PROXY protocol the socket's peer is the client:
                // refuse at once, before the connection counts anywhere.
                let early = if proxy == ProxyMode::Off {
                    let Some(e) = per_client(&shared, &stats, &target, peer) else {
                        continue;
                    };
                    Some(e)
                } else {
                    None
                };
                let guard = ConnGuard::new(&shared, &here);
                let _ = sock.set_nodelay(true);
                let (shared, target, stats) = (shared.clone(), target.clone(), stats.clone());
                tokio::spawn(async move {
                    let mut sock = sock;
                    let Some(client) = proxied(&shared, &mut sock, peer, proxy, &target).await else {
                        return;
                    };
                    // Behind a load balancer the socket's peer is the
                    // balancer: count by the header's client instead.
                    let Some(entered) = early.or_else(|| per_client(&shared, &stats, &target, client)) else {
                        return;
                    };
                    crate::session::run(shared, sock, client, target, (guard, entered)).await
                });
            }
            Err(e) => {
                if let Some(suppressed) = crate::logs::allow(&format!("accept:{label}")) {
                    warn!(listener = %label, error = %e, backoff_ms = backoff.as_millis() as u64, suppressed, "accept failed; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Enters `client` into max_connections_per_client; `None`: refused.
fn per_client(
    shared: &Shared,
    stats: &metrics::ListenerStats,
    target: &Target,
    client: SocketAddr,
) -> Option<per_client::Entered> {
    let e = shared
        .clients
        .enter(client.ip(), shared.config.max_connections_per_client);
    if e.is_none() {
        stats.refused.fetch_add(1, Relaxed);
        metrics::get().per_client_refused.fetch_add(1, Relaxed);
        debug!(listener = %target.label(), %client, "connection refused: max_connections_per_client reached");
    }
    e
}

/// The original client's address: from the PROXY protocol header when
/// there is one, else the socket's peer. `None`: the connection was
/// refused (malformed header, or none where one is required).
async fn proxied(
    shared: &Shared,
    sock: &mut TcpStream,
    peer: SocketAddr,
    mode: ProxyMode,
    target: &Target,
) -> Option<SocketAddr> {
    if mode == ProxyMode::Off {
        return Some(peer);
    }
    let m = &metrics::get().proxy_protocol;
    match proxy_protocol::read_header(sock, mode, shared.config.first_request_timeout).await {
        Ok(Some(h)) => {
            let client = h.source.unwrap_or(peer);
            m.add(
                if h.source.is_none() {
                    "local"
                } else if h.version == 1 {
                    "v1"
                } else {
                    "v2"
                },
                1,
            );
            debug!(listener = %target.label(), proxy = %peer, %client, version = h.version, vpce = ?h.aws_vpce_id, "PROXY protocol header");
            Some(client)
        }
        Ok(None) => {
            m.add("absent", 1);
            Some(peer)
        }
        Err(HeaderError::Closed) => None,
        Err(e) => {
            m.add(
                match e {
                    HeaderError::Missing => "missing",
                    HeaderError::Timeout(_) => "timeout",
                    _ => "malformed",
                },
                1,
            );
            if let Some(suppressed) = crate::logs::allow(&format!("proxy:{}", target.label())) {
                warn!(listener = %target.label(), client = %peer, error = %e, suppressed, "connection closed: PROXY protocol");
            }
            None
        }
    }
}

/// Counts a connection as open (globally and on its listener) until dropped.
pub struct ConnGuard {
    shared: Arc<Shared>,
    listener: Arc<AtomicUsize>,
}

impl ConnGuard {
    fn new(shared: &Arc<Shared>, listener: &Arc<AtomicUsize>) -> Self {
        shared.open_connections.fetch_add(1, Relaxed);
        listener.fetch_add(1, Relaxed);
        ConnGuard {
            shared: shared.clone(),
            listener: listener.clone(),
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Relaxed);
        self.listener.fetch_sub(1, Relaxed);
    }
}
