//! Broker-address rewriting: every response that can carry a broker
//! endpoint has its host and port replaced with kgate's listener, so no
//! upstream address reaches a client. Metadata, FindCoordinator,
//! DescribeCluster and Produce v10+ (KIP-951) are rewritten whole; Fetch
//! v16+ streams, and only its top-level tagged-field tail — where KIP-951
//! `node_endpoints` lives — is held back and rewritten in place.

use super::{Conn, Filter, FilterError, ResponseNeed};
use crate::metrics;
use crate::protocol::decision::{response_action, ResponseAction, RewriteKind};
use crate::protocol::header::RequestHeader;
use crate::rewrite::{rewrite, rewrite_fetch_tail, BrokerMapper, KnownOnly};
use bytes::BytesMut;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub struct BrokerAddress {
    pub mapper: Arc<dyn BrokerMapper>,
    /// The current cluster generation. A response on a connection to an
    /// older cluster (draining after a cut-over) is rewritten with the
    /// existing listeners only, so it cannot re-point them back.
    pub generation: Option<Arc<AtomicU64>>,
}

fn label(kind: RewriteKind) -> &'static str {
    match kind {
        RewriteKind::Metadata => "metadata",
        RewriteKind::FindCoordinator => "find_coordinator",
        RewriteKind::DescribeCluster => "describe_cluster",
        RewriteKind::ProduceEndpoints => "produce",
        RewriteKind::FetchEndpoints => "fetch",
    }
}

impl BrokerAddress {
    /// Whether `conn` reaches a cluster kgate has switched away from.
    fn stale(&self, conn: &dyn Conn) -> bool {
        let mine = conn.cluster_generation();
        mine != 0 && self.generation.as_ref().is_some_and(|g| g.load(Relaxed) != mine)
    }
}

impl Filter for BrokerAddress {
    fn name(&self) -> &'static str {
        "broker_address"
    }

    fn response_need(&self, api_key: i16, version: i16) -> ResponseNeed {
        match response_action(api_key, version) {
            ResponseAction::Rewrite(RewriteKind::FetchEndpoints) => ResponseNeed::FetchTail,
            ResponseAction::Rewrite(_) => ResponseNeed::Whole,
            _ => ResponseNeed::Skip,
        }
    }

    fn on_response(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        let ResponseAction::Rewrite(kind) = response_action(h.api_key, h.api_version) else {
            return Ok(None);
        };
        let base = conn.broker_mapper().unwrap_or(self.mapper.as_ref());
        let known = KnownOnly(base);
        let mapper: &dyn BrokerMapper = if self.stale(conn) { &known } else { base };
        let out = rewrite(kind, frame, h.api_key, h.api_version, mapper).map_err(|e| {
            FilterError::MalformedResponse {
                api_key: h.api_key,
                api_version: h.api_version,
                cause: e.to_string(),
            }
        })?;
        if out.is_some() {
            metrics::get().address_rewrites.add(label(kind), 1);
        }
        Ok(out)
    }

    fn on_response_tail(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        tail: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        let base = conn.broker_mapper().unwrap_or(self.mapper.as_ref());
        let known = KnownOnly(base);
        let mapper: &dyn BrokerMapper = if self.stale(conn) { &known } else { base };
        let out = rewrite_fetch_tail(tail, mapper).map_err(|e| FilterError::MalformedResponse {
            api_key: h.api_key,
            api_version: h.api_version,
            cause: e.to_string(),
        })?;
        if out.is_some() {
            metrics::get().address_rewrites.add("fetch", 1);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declares_exactly_the_address_carrying_responses() {
        struct Nowhere;
        impl BrokerMapper for Nowhere {
            fn advertise(
                &self,
                _: i32,
                _: &str,
                _: i32,
            ) -> Result<crate::rewrite::Advertised, crate::rewrite::MapError> {
                Err(crate::rewrite::MapError("unused".into()))
            }
        }
        let f = BrokerAddress {
            mapper: Arc::new(Nowhere),
            generation: None,
        };
        assert_eq!(f.response_need(3, 12), ResponseNeed::Whole);
        assert_eq!(f.response_need(10, 4), ResponseNeed::Whole);
        assert_eq!(f.response_need(60, 1), ResponseNeed::Whole);
        assert_eq!(f.response_need(0, 10), ResponseNeed::Whole);
        assert_eq!(f.response_need(0, 9), ResponseNeed::Skip);
        assert_eq!(f.response_need(1, 16), ResponseNeed::FetchTail);
        assert_eq!(f.response_need(1, 15), ResponseNeed::Skip);
        assert_eq!(f.response_need(19, 7), ResponseNeed::Skip);
    }
}
