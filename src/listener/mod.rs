//! Accept loops. An accept error (EMFILE, ECONNABORTED, …) is logged and
//! backed off; it never ends a listener. Connection limits refuse new
//! clients without touching existing ones.

pub mod per_client;
pub mod registry;

use crate::metrics;
use crate::session::target::Target;
use crate::Shared;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Accepts clients on `listener` and starts a session for each.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, target: Target) {
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
                let Some(per_client) = shared
                    .clients
                    .enter(peer.ip(), shared.config.max_connections_per_client)
                else {
                    stats.refused.fetch_add(1, Relaxed);
                    metrics::get().per_client_refused.fetch_add(1, Relaxed);
                    debug!(listener = %label, client = %peer, "connection refused: max_connections_per_client reached");
                    continue;
                };
                let guard = (ConnGuard::new(&shared, &here), per_client);
                let _ = sock.set_nodelay(true);
                tokio::spawn(crate::session::run(
                    shared.clone(),
                    sock,
                    peer,
                    target.clone(),
                    guard,
                ));
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
