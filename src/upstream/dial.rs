//! Opens the TCP connection to a broker. The dial address may differ from
//! the broker's name (PrivateLink); the name is what TLS SNI, certificate
//! checks and IAM signing use. kgate dials only configured bootstrap
//! servers and brokers learned from the cluster, never a client's address.

use super::storm::{Refused, Slot, Storm};
use crate::config::{Config, HostPort};
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::{debug, warn};

/// Where a connection must go: any bootstrap server, or one broker by its
/// real name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Bootstrap,
    Broker(HostPort),
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Bootstrap => f.write_str("bootstrap"),
            Route::Broker(b) => b.fmt(f),
        }
    }
}

/// An open upstream connection and the broker it reaches.
pub struct Dialled {
    pub stream: TcpStream,
    /// The broker's real name (for SNI, certificate checks, signing).
    pub broker: HostPort,
    /// Where the TCP connection actually went.
    pub via: HostPort,
    /// Counts against the broker's connection limit while held.
    pub slot: Slot,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect to broker {broker} via {via}: {cause}")]
    Connect {
        broker: HostPort,
        via: HostPort,
        cause: String,
    },
    #[error("broker {broker}: {cause}")]
    Refused { broker: HostPort, cause: Refused },
    #[error("no bootstrap server reachable after {rounds} rounds ({last})")]
    Bootstrap { rounds: u32, last: String },
}

async fn connect(config: &Config, storm: &Storm, broker: &HostPort) -> Result<Dialled, DialError> {
    let slot = storm
        .admit(&broker.to_string())
        .await
        .map_err(|cause| DialError::Refused {
            broker: broker.clone(),
            cause,
        })?;
    let via = config.dial_address(broker);
    let fut = connect_checked(via.host.as_str(), via.port, config.allow_link_local);
    let cause = match tokio::time::timeout(config.connect_timeout, fut).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            return Ok(Dialled {
                stream,
                broker: broker.clone(),
                via,
                slot,
            });
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("timed out after {} ms", config.connect_timeout.as_millis()),
    };
    Err(DialError::Connect {
        broker: broker.clone(),
        via,
        cause,
    })
}

/// Resolves, drops link-local addresses (cloud metadata services) unless
/// allowed, and connects to the first address that answers. A name that
/// resolves to a metadata address is refused here even if it passed the
/// host patterns.
async fn connect_checked(host: &str, port: u16, allow_link_local: bool) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "name resolved to no address");
    for sa in tokio::net::lookup_host((host, port)).await? {
        if !allow_link_local && super::allow::is_link_local(sa.ip()) {
            last = std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is link-local (cloud metadata); refused unless allow_link_local is set",
                    sa.ip()
                ),
            );
            continue;
        }
        match TcpStream::connect(sa).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

const BOOTSTRAP_ROUNDS: u32 = 4;

/// Connects to `route`, within the per-broker storm limits. The bootstrap
/// route tries each bootstrap server in turn, with backoff between rounds.
pub async fn dial(config: &Config, storm: &Storm, route: &Route) -> Result<Dialled, DialError> {
    match route {
        Route::Broker(b) => connect(config, storm, b).await,
        Route::Bootstrap => {
            let mut backoff = Duration::from_millis(100);
            let mut last = String::new();
            for round in 1..=BOOTSTRAP_ROUNDS {
                let mut refused = None;
                for b in &config.bootstrap {
                    match connect(config, storm, b).await {
                        Ok(d) => {
                            debug!(bootstrap = %d.broker, via = %d.via, "reached bootstrap server");
                            return Ok(d);
                        }
                        Err(e @ DialError::Refused { .. }) => refused = Some(e),
                        Err(e) => {
                            if let Some(suppressed) = crate::logs::allow(&format!("dial:{b}")) {
                                warn!(round, error = %e, suppressed, "bootstrap server unreachable; trying the next");
                            }
                            last = e.to_string();
                        }
                    }
                }
                // Every bootstrap server at its limit: waiting rounds
                // would only add load; the client is refused now.
                if let (Some(e), true) = (refused, last.is_empty()) {
                    return Err(e);
                }
                if round < BOOTSTRAP_ROUNDS {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            Err(DialError::Bootstrap {
                rounds: BOOTSTRAP_ROUNDS,
                last,
            })
        }
    }
}
