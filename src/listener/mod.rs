//! Accept loops. An accept error (EMFILE, ECONNABORTED, …) is logged and
//! backed off; it never ends a listener.

pub mod registry;

use crate::Shared;
use registry::Target;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Accepts clients on `listener` and starts a session for each.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, target: Target) {
    let label = target.label();
    info!(listener = %label, "accepting");
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((sock, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = sock.set_nodelay(true);
                let shared = shared.clone();
                let target = target.clone();
                tokio::spawn(crate::session::run(shared, sock, peer, target));
            }
            Err(e) => {
                warn!(listener = %label, error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
