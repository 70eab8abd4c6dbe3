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

    /// Hands out kgate-N:(20000+N) and records who asked for what; only
    /// broker 1 has a listener already (`known`).
    struct Listeners {
        advertised: std::sync::Mutex<Vec<i32>>,
    }

    impl BrokerMapper for Listeners {
        fn advertise(&self, id: i32, _: &str, _: i32) -> Result<Advertised, MapError> {
            self.advertised.lock().unwrap().push(id);
            Ok(Advertised {
                host: format!("kgate-{id}").into(),
                port: 20000 + id,
            })
        }
        fn known(&self, id: i32) -> Result<Advertised, MapError> {
            match id {
                1 => Ok(Advertised {
                    host: "kgate-1".into(),
                    port: 20001,
                }),
                _ => Err(MapError(format!("broker {id} has no listener"))),
            }
        }
    }

    use crate::filter::tests::TestConn;
    use crate::rewrite::tests::{fetch_response, frame, metadata_frame};
    use crate::rewrite::{Advertised, MapError};
    use kafka_protocol::messages::{ApiKey, MetadataResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;

    /// The filter on cluster generation 2, and its mapper.
    fn filter() -> (BrokerAddress, Arc<Listeners>) {
        let m = Arc::new(Listeners {
            advertised: std::sync::Mutex::new(Vec::new()),
        });
        let f = BrokerAddress {
            mapper: m.clone(),
            generation: Some(Arc::new(AtomicU64::new(2))),
        };
        (f, m)
    }

    fn h(api_key: i16, api_version: i16) -> RequestHeader {
        RequestHeader {
            api_key,
            api_version,
            correlation_id: 42,
        }
    }

    fn broker_ids(f: &[u8]) -> Vec<(i32, String)> {
        let mut b = bytes::Bytes::copy_from_slice(&f[4..]);
        ResponseHeader::decode(&mut b, ApiKey::Metadata.response_header_version(12)).unwrap();
        let m = MetadataResponse::decode(&mut b, 12).unwrap();
        m.brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string()))
            .collect()
    }

    #[test]
    fn a_current_cluster_s_metadata_is_rewritten_to_kgate_listeners() {
        let (f, m) = filter();
        let conn = TestConn {
            generation: 2,
            ..Default::default()
        };
        let out = f
            .on_response(&conn, &h(3, 12), &metadata_frame(12, 3))
            .unwrap()
            .expect("rewritten");
        let want: Vec<(i32, String)> = (1..=3).map(|i| (i, format!("kgate-{i}"))).collect();
        assert_eq!(broker_ids(&out), want);
        assert_eq!(*m.advertised.lock().unwrap(), [1, 2, 3]);
        let heartbeat = f.on_response(&conn, &h(12, 4), b"\0\0\0\x04\0\0\0\x2a").unwrap();
        assert!(heartbeat.is_none(), "nothing to rewrite in other responses");
    }

    #[test]
    fn a_stale_cluster_s_response_uses_existing_listeners_only() {
        let (f, m) = filter();
        let conn = TestConn {
            generation: 1,
            ..Default::default()
        };
        let out = f
            .on_response(&conn, &h(3, 12), &metadata_frame(12, 3))
            .unwrap()
            .expect("rewritten");
        assert_eq!(
            broker_ids(&out),
            [(1, "kgate-1".to_string())],
            "the rest are left out"
        );
        assert!(
            m.advertised.lock().unwrap().is_empty(),
            "no listener created or re-pointed"
        );
    }

    #[test]
    fn a_fetch_tail_is_rewritten_in_place() {
        let (f, _) = filter();
        let with = frame(ApiKey::Fetch, 16, &fetch_response(16, true, 10));
        let without = frame(ApiKey::Fetch, 16, &fetch_response(16, false, 10));
        // Without node_endpoints the tail is one byte (no tagged fields);
        // everything before it is the same in both frames.
        let at = without.len() - 1;
        let tail = &with[at..];
        for (gen, host) in [(2, "kgate-2"), (1, "")] {
            let conn = TestConn {
                generation: gen,
                ..Default::default()
            };
            let out = f
                .on_response_tail(&conn, &h(1, 16), tail)
                .unwrap()
                .expect("rewritten");
            assert_eq!(out.len(), tail.len(), "same length: the size already went out");
            assert!(!out.windows(6).any(|w| w == b"b-2.ms"), "no upstream name left");
            let named = out.windows(7).any(|w| w == b"kgate-2");
            assert_eq!(named, !host.is_empty(), "generation {gen}: {out:?}");
        }
    }
}
