//! Opens the TCP connection to a broker. The dial address may differ from
//! the broker's name (PrivateLink); the name is what TLS SNI, certificate
//! checks and IAM signing use. kgate dials only configured bootstrap
//! servers and brokers learned from the cluster, never a client's address.

use crate::config::{Config, HostPort};
use crate::listener::registry::Target;
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::{info, warn};

/// An open upstream connection and the broker it reaches.
pub struct Dialled {
    pub stream: TcpStream,
    /// The broker's real name (for SNI, certificate checks, signing).
    pub broker: HostPort,
    /// Where the TCP connection actually went.
    pub via: HostPort,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect to broker {broker} via {via}: {cause}")]
    Connect {
        broker: HostPort,
        via: HostPort,
        cause: String,
    },
    #[error("no bootstrap server reachable after {rounds} rounds ({last})")]
    Bootstrap { rounds: u32, last: String },
}

async fn connect(config: &Config, broker: &HostPort) -> Result<Dialled, DialError> {
    let via = config.dial_address(broker);
    let fut = TcpStream::connect((via.host.as_str(), via.port));
    let cause = match tokio::time::timeout(config.connect_timeout, fut).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            return Ok(Dialled {
                stream,
                broker: broker.clone(),
                via,
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

const BOOTSTRAP_ROUNDS: u32 = 4;

/// Connects to what a listener stands for. The bootstrap listener tries
/// each bootstrap server in turn, with backoff between rounds.
pub async fn dial(config: &Config, target: &Target) -> Result<Dialled, DialError> {
    match target {
        Target::Broker(slot) => connect(config, &slot.upstream()).await,
        Target::Bootstrap => {
            let mut backoff = Duration::from_millis(100);
            let mut last = String::new();
            for round in 1..=BOOTSTRAP_ROUNDS {
                for b in &config.bootstrap {
                    match connect(config, b).await {
                        Ok(d) => {
                            info!(bootstrap = %d.broker, via = %d.via, "reached bootstrap server");
                            return Ok(d);
                        }
                        Err(e) => {
                            warn!(round, error = %e, "bootstrap server unreachable; trying the next");
                            last = e.to_string();
                        }
                    }
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
