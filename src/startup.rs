//! Start-up pieces of [`crate::start`]: the open-file limit, kgate's own
//! upstream SASL and per-principal identities, the client SASL server,
//! and the SNI port.

use crate::config::{self, Config};
use crate::listener::registry::{bind, NewListener};
use crate::session::target::Target;
use crate::{downstream, fd_limit, listener, upstream, Shared};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Raises the open-file limit and says when it is still short: each client
/// connection holds two descriptors, each listener one.
pub(crate) fn open_files(c: &Config) {
    let Some((before, after)) = fd_limit::raise() else {
        return;
    };
    if after != before {
        info!(before, after, "raised the open-file soft limit to the hard limit");
    }
    let needed = (2 * c.max_connections + c.max_dynamic_listeners + 64) as u64;
    if after < needed {
        warn!(limit = after, needed, max_connections = c.max_connections, "the open-file limit is below what max_connections needs; raise the hard limit (LimitNOFILE, ulimit -Hn) or lower max_connections");
    }
}

/// kgate's SASL server for clients, when `[client_auth]` is configured.
pub(crate) fn client_auth(config: &Config) -> Result<Option<Arc<downstream::sasl::Server>>, String> {
    let Some(a) = &config.client_auth else {
        return Ok(None);
    };
    let s = downstream::sasl::Server::new(a)?;
    let mechanisms: Vec<&str> = a.mechanisms.iter().map(|m| m.wire_name()).collect();
    info!(mechanisms = ?mechanisms, users = s.users(), session_lifetime_ms = a.session_lifetime_ms, "client SASL");
    Ok(Some(Arc::new(s)))
}

/// The one SNI-routed TLS port (client TLS already checked that its
/// certificate covers the names: `DownstreamTls::new`).
pub(crate) fn start_sni(
    sni: &config::SniConfig,
    shared: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<NewListener>,
) -> Result<(), String> {
    if shared.downstream_tls.is_none() {
        return Err("[sni] needs [downstream_tls]: plaintext carries no server name".into());
    }
    let socket =
        bind(&sni.listen).map_err(|e| format!("cannot bind the SNI listener on {}: {e}", sni.listen))?;
    let router = listener::sni::SniRouter::new(
        sni.clone(),
        shared.config.max_dynamic_listeners,
        shared.registry.clone(),
    );
    info!(listener = %sni.listen, routes = %router.describe(), "SNI listener");
    let _ = shared.sni.set(router.clone());
    let _ = tx.send(NewListener {
        socket,
        target: Target::Sni(router),
        proxy: sni.proxy_protocol,
    });
    Ok(())
}

/// kgate's own SASL toward the brokers, if configured.
pub(crate) async fn authenticator(config: &Config) -> Option<Arc<upstream::sasl::Authenticator>> {
    match &config.upstream_sasl {
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
    }
}

/// Per-principal upstream identities, when `[[upstream_identity]]` or
/// `upstream_identity_unmapped = "refuse"` is configured. Roles are
/// assumed with kgate's own credentials.
pub(crate) async fn identities(
    config: &Config,
    own: Option<&upstream::sasl::Authenticator>,
) -> Option<upstream::identity::Identities> {
    let map = &config.upstream_identity;
    let sasl = config.upstream_sasl.as_ref()?;
    if map.entries.is_empty() && map.unmapped == config::Unmapped::Default {
        return None;
    }
    // Roles exist only with an IAM mechanism (check-config makes sure);
    // without one, nothing is ever assumed.
    let roles = match own.and_then(|a| a.credentials()) {
        Some(c) => upstream::identity::sts_roles(&sasl.aws, c.provider()).await,
        None => upstream::identity::no_roles(),
    };
    info!(entries = map.entries.len(), unmapped = ?map.unmapped, "per-principal upstream identities");
    Some(upstream::identity::Identities::new(
        map.clone(),
        sasl.clone(),
        roles,
    ))
}
