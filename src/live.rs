//! Settings that change without a restart: on SIGHUP the configuration is
//! read again and these take effect for new connections; any other change
//! is reported as needing a restart. New `bootstrap` or `dial` settings are
//! a cut-over to another cluster (`upstream::cluster`).

use crate::config::Config;
use std::sync::RwLock;
use std::time::Duration;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub max_connections: usize,
    pub max_connections_per_listener: Option<usize>,
    pub idle_timeout: Option<Duration>,
    pub request_timeout: Duration,
}

impl Live {
    pub fn from(c: &Config) -> Self {
        Live {
            max_connections: c.max_connections,
            max_connections_per_listener: c.max_connections_per_listener,
            idle_timeout: c.idle_timeout,
            request_timeout: c.request_timeout,
        }
    }
}

pub struct LiveCell(RwLock<Live>);

impl LiveCell {
    pub fn new(c: &Config) -> Self {
        LiveCell(RwLock::new(Live::from(c)))
    }

    pub fn get(&self) -> Live {
        match self.0.read() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    /// Applies the live part of `new`; says which other settings differ
    /// from `running` and need a restart.
    pub fn apply(&self, running: &Config, new: &Config) {
        let live = Live::from(new);
        let old = self.get();
        if live != old {
            match self.0.write() {
                Ok(mut g) => *g = live,
                Err(p) => *p.into_inner() = live,
            }
            info!(?live, "SIGHUP: limits and timeouts updated for new connections");
        }
        let restart = needs_restart(running, new);
        if !restart.is_empty() {
            warn!(changed = ?restart, "SIGHUP: these settings changed but need a restart to apply");
        }
    }
}

/// The settings that differ between `running` and `new` and need a restart.
fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut restart = Vec::new();
    if new.bind_host != running.bind_host || new.port_base != running.port_base {
        restart.push("bind_host/port_base");
    }
    // bootstrap and dial are a cut-over (Shared::reload), not a restart.
    if new.static_listeners != running.static_listeners {
        restart.push("static_listeners");
    }
    // upstream_tls and upstream_sasl are a cut-over too.
    if new.downstream_tls != running.downstream_tls {
        restart.push("downstream_tls settings (certificate files themselves reload live)");
    }
    if new.upstream_identity != running.upstream_identity {
        restart.push("upstream_identity/upstream_identity_unmapped");
    }
    if new.storm != running.storm {
        restart.push("upstream_connect_rate/upstream_connect_burst/upstream_max_connections_per_broker/upstream_connect_wait_ms");
    }
    if new.admin_listen != running.admin_listen {
        restart.push("admin_listen");
    }
    if crate::admin::Limits::from_config(new) != crate::admin::Limits::from_config(running) {
        restart.push("admin_max_connections/admin_header_timeout_ms/admin_request_timeout_ms");
    }
    restart
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPort;

    #[test]
    fn live_settings_apply_and_the_rest_waits_for_a_restart() {
        let running = Config::with_bootstrap(vec![HostPort::new("a", 1)]);
        let cell = LiveCell::new(&running);
        let mut new = running.clone();
        new.max_connections = 7;
        new.idle_timeout = None;
        new.port_base = 1;
        cell.apply(&running, &new);
        assert_eq!(cell.get().max_connections, 7);
        assert_eq!(cell.get().idle_timeout, None);
        assert_eq!(cell.get().request_timeout, running.request_timeout);
        assert_eq!(needs_restart(&running, &new), vec!["bind_host/port_base"]);
        let mut ids = running.clone();
        ids.upstream_identity.unmapped = crate::config::Unmapped::Refuse;
        assert_eq!(
            needs_restart(&running, &ids),
            vec!["upstream_identity/upstream_identity_unmapped"]
        );
    }
}
