//! Broker-address rewriting: the single entry point for every response that
//! can carry a broker endpoint. Each rewriter walks the wire format with the
//! bounds-checked [`Reader`], replaces only host and port, and copies every
//! other byte unchanged. Untrusted bytes never reach a decoder that sizes
//! allocations from the wire.

mod describe_cluster;
mod find_coordinator;
mod metadata;
mod node_endpoints;
mod splice;

use crate::protocol::decision::RewriteKind;
use crate::protocol::header::response_body_offset;
use crate::protocol::wire::{put_string, Reader, WireError};
use bytes::{BufMut, BytesMut};
pub use node_endpoints::rewrite_fetch_tail;
use splice::Splice;
use std::sync::Arc;

/// Where clients should connect for one upstream broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub host: Arc<str>,
    pub port: i32,
}

/// Maps an upstream broker to its kgate listener, creating the listener if
/// needed (so it exists before the response reaches the client).
pub trait BrokerMapper: Send + Sync {
    fn advertise(&self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError>;

    /// Called with every node id of a complete broker list (Metadata).
    fn listed(&self, _node_ids: &[i32]) {}

    /// The listener node `node_id` already has, without creating or
    /// re-pointing one: for responses from a cluster kgate is switching
    /// away from (see `upstream::cluster`).
    fn known(&self, node_id: i32) -> Result<Advertised, MapError> {
        Err(MapError(format!("broker {node_id}: no listener yet")))
    }
}

/// A mapper that only hands out listeners that exist, never re-pointing
/// them (responses from a cluster being drained).
pub struct KnownOnly<'a>(pub &'a dyn BrokerMapper);

impl BrokerMapper for KnownOnly<'_> {
    fn advertise(&self, node_id: i32, _host: &str, _port: i32) -> Result<Advertised, MapError> {
        self.0.known(node_id)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MapError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("malformed response: {0}")]
    Wire(#[from] WireError),
    #[error("cannot map broker: {0}")]
    Map(#[from] MapError),
}

/// Rewrites a whole response frame (length prefix included). Returns
/// `None` when the frame carries no broker address and passes unchanged.
pub fn rewrite(
    kind: RewriteKind,
    frame: &[u8],
    api_key: i16,
    version: i16,
    mapper: &dyn BrokerMapper,
) -> Result<Option<BytesMut>, RewriteError> {
    let body = response_body_offset(frame, api_key, version)?;
    match kind {
        RewriteKind::Metadata => metadata::rewrite(frame, body, version, mapper).map(Some),
        RewriteKind::FindCoordinator => find_coordinator::rewrite(frame, body, version, mapper).map(Some),
        RewriteKind::DescribeCluster => describe_cluster::rewrite(frame, body, version, mapper).map(Some),
        RewriteKind::ProduceEndpoints => node_endpoints::rewrite_produce(frame, body, version, mapper),
        RewriteKind::FetchEndpoints => node_endpoints::rewrite_fetch(frame, body, version, mapper),
    }
}

/// Rewrites an array of brokers at the reader's position (count first).
/// Each entry is node_id, host, port, then fields `rest` skips. A broker
/// that cannot get a listener (cap reached, invalid host, port taken) is
/// left out of the array, so its partitions look leaderless and everything
/// else keeps working; the registry logs why.
fn broker_array(
    r: &mut Reader<'_>,
    sp: &mut Splice<'_>,
    compact: bool,
    min_elem: usize,
    mapper: &dyn BrokerMapper,
    rest: impl Fn(&mut Reader<'_>) -> Result<(), WireError>,
) -> Result<(), RewriteError> {
    let count_at = r.pos();
    let Some(n) = r.array_len(compact, min_elem)? else {
        return Ok(());
    };
    let mut out = BytesMut::with_capacity(n.min(1024) * 32);
    let mut kept = 0usize;
    let mut listed = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let node_id = r.i32()?;
        listed.push(node_id);
        let host = r.any_string(compact)?;
        let port = r.i32()?;
        let after = r.pos();
        rest(r)?;
        let adv = match host {
            Some(h) if node_id >= 0 && !h.is_empty() => match mapper.advertise(node_id, h, port) {
                Ok(a) => Some(a),
                Err(_) => continue,
            },
            _ => None,
        };
        kept += 1;
        out.put_i32(node_id);
        match adv {
            Some(a) => {
                put_string(&mut out, &a.host, compact);
                out.put_i32(a.port);
            }
            None => {
                put_string(&mut out, "", compact);
                out.put_i32(-1);
            }
        }
        out.put_slice(r.slice(after, r.pos()));
    }
    mapper.listed(&listed);
    sp.copy_until(count_at);
    if compact {
        crate::protocol::wire::put_uvarint(sp.out(), kept as u32 + 1);
    } else {
        sp.out().put_i32(kept as i32);
    }
    sp.out().put_slice(&out);
    sp.skip_to(r.pos());
    Ok(())
}

/// Replaces the host and port at the reader's position (a node id has just
/// been read). Unknown nodes (id < 0), and brokers that cannot get a
/// listener, become an empty host and port -1, so no upstream address can
/// pass through.
fn endpoint(
    r: &mut Reader<'_>,
    sp: &mut Splice<'_>,
    compact: bool,
    node_id: i32,
    mapper: &dyn BrokerMapper,
) -> Result<(), RewriteError> {
    let start = r.pos();
    let host = r.any_string(compact)?;
    let port = r.i32()?;
    sp.copy_until(start);
    let adv = match host {
        Some(h) if node_id >= 0 && !h.is_empty() => mapper.advertise(node_id, h, port).ok(),
        _ => None,
    };
    match adv {
        Some(adv) => {
            put_string(sp.out(), &adv.host, compact);
            sp.out().put_i32(adv.port);
        }
        None => {
            put_string(sp.out(), "", compact);
            sp.out().put_i32(-1);
        }
    }
    sp.skip_to(r.pos());
    Ok(())
}

#[cfg(test)]
mod tail_tests;
#[cfg(test)]
pub(crate) mod tests;
