//! Each rewriter is checked against kafka-protocol as an independent
//! oracle: responses are encoded by kafka-protocol, rewritten here, and
//! decoded by kafka-protocol again.

use super::*;
use crate::protocol::decision::RewriteKind;
use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::sync::Mutex;
use uuid::Uuid;

/// Maps node N to kgate-N:(20000+N) and records what it was asked.
pub struct TestMapper {
    pub seen: Mutex<Vec<(i32, String, i32)>>,
}

impl TestMapper {
    pub fn new() -> Self {
        TestMapper {
            seen: Mutex::new(Vec::new()),
        }
    }
}

impl BrokerMapper for TestMapper {
    fn advertise(&self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        self.seen.lock().unwrap().push((node_id, host.to_string(), port));
        if node_id > 1000 {
            return Err(MapError(format!("node {node_id} overflows")));
        }
        Ok(Advertised {
            host: format!("kgate-{node_id}").into(),
            port: 20000 + node_id,
        })
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

pub fn frame<M: Encodable>(key: ApiKey, version: i16, msg: &M) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(42)
        .encode(&mut b, key.response_header_version(version))
        .unwrap();
    msg.encode(&mut b, version).unwrap();
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

fn decode<M: Decodable>(key: ApiKey, version: i16, f: &[u8]) -> M {
    let mut b = Bytes::copy_from_slice(f);
    let mut body = b.split_off(4);
    let _h = ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    let m = M::decode(&mut body, version).unwrap();
    assert!(body.is_empty(), "trailing bytes after decode");
    m
}

fn run(kind: RewriteKind, key: ApiKey, v: i16, f: &[u8], m: &TestMapper) -> Option<BytesMut> {
    rewrite(kind, f, key as i16, v, m).unwrap()
}

fn metadata(v: i16, partitions: i32) -> MetadataResponse {
    let brokers = (1..=3)
        .map(|i| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(i))
                .with_host(s(&format!("b-{i}.msk.example.com")))
                .with_port(9094)
                .with_rack(if v >= 1 { Some(s("use1-az1")) } else { None })
        })
        .collect();
    let parts = (0..partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(1 + p % 3))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
                .with_isr_nodes(vec![BrokerId(1), BrokerId(2)])
        })
        .collect();
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(s("orders"))))
        .with_partitions(parts);
    MetadataResponse::default()
        .with_throttle_time_ms(if v >= 3 { 5 } else { 0 })
        .with_brokers(brokers)
        .with_cluster_id(if v >= 2 { Some(s("cluster-x")) } else { None })
        .with_controller_id(BrokerId(if v >= 1 { 2 } else { -1 }))
        .with_topics(vec![topic])
}

pub fn metadata_frame(v: i16, partitions: i32) -> Bytes {
    frame(ApiKey::Metadata, v, &metadata(v, partitions))
}

#[test]
fn metadata_every_version() {
    for v in 0..=13 {
        let orig = metadata(v, 30);
        let f = frame(ApiKey::Metadata, v, &orig);
        let m = TestMapper::new();
        let out = run(RewriteKind::Metadata, ApiKey::Metadata, v, &f, &m).unwrap();
        let got: MetadataResponse = decode(ApiKey::Metadata, v, &out);
        let mut want = orig.clone();
        for b in want.brokers.iter_mut() {
            b.host = s(&format!("kgate-{}", b.node_id.0));
            b.port = 20000 + b.node_id.0;
        }
        assert_eq!(got, want, "v{v}");
        assert_eq!(m.seen.lock().unwrap()[0], (1, "b-1.msk.example.com".into(), 9094));
        assert_eq!(&out[4..8], &f[4..8], "correlation id kept");
    }
}

#[test]
fn find_coordinator_single_and_batched() {
    for v in 0..=6 {
        let orig = if v <= 3 {
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(2))
                .with_host(s("b-2.msk.example.com"))
                .with_port(9094)
        } else {
            let ok = find_coordinator_response::Coordinator::default()
                .with_key(s("group-a"))
                .with_node_id(BrokerId(2))
                .with_host(s("b-2.msk.example.com"))
                .with_port(9094);
            let failed = find_coordinator_response::Coordinator::default()
                .with_key(s("group-b"))
                .with_node_id(BrokerId(3))
                .with_host(s("b-3.msk.example.com"))
                .with_port(9094)
                .with_error_code(15);
            FindCoordinatorResponse::default().with_coordinators(vec![ok, failed])
        };
        let f = frame(ApiKey::FindCoordinator, v, &orig);
        let m = TestMapper::new();
        let out = run(RewriteKind::FindCoordinator, ApiKey::FindCoordinator, v, &f, &m).unwrap();
        let got: FindCoordinatorResponse = decode(ApiKey::FindCoordinator, v, &out);
        let mut want = orig.clone();
        if v <= 3 {
            want.host = s("kgate-2");
            want.port = 20002;
        } else {
            want.coordinators[0].host = s("kgate-2");
            want.coordinators[0].port = 20002;
            // an errored entry never leaks the address it carried
            want.coordinators[1].host = s("");
            want.coordinators[1].port = -1;
        }
        assert_eq!(got, want, "v{v}");
    }
}

#[test]
fn describe_cluster_every_version() {
    for v in 0..=2 {
        let brokers = (1..=3)
            .map(|i| {
                describe_cluster_response::DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(i))
                    .with_host(s(&format!("b-{i}.internal")))
                    .with_port(9098)
                    .with_rack(Some(s("r1")))
            })
            .collect();
        let orig = DescribeClusterResponse::default()
            .with_cluster_id(s("c1"))
            .with_controller_id(BrokerId(1))
            .with_endpoint_type(1)
            .with_brokers(brokers);
        let f = frame(ApiKey::DescribeCluster, v, &orig);
        let m = TestMapper::new();
        let out = run(RewriteKind::DescribeCluster, ApiKey::DescribeCluster, v, &f, &m).unwrap();
        let got: DescribeClusterResponse = decode(ApiKey::DescribeCluster, v, &out);
        let mut want = orig.clone();
        for b in want.brokers.iter_mut() {
            b.host = s(&format!("kgate-{}", b.broker_id.0));
            b.port = 20000 + b.broker_id.0;
        }
        assert_eq!(got, want, "v{v}");
    }
}

fn endpoints() -> Vec<produce_response::NodeEndpoint> {
    vec![produce_response::NodeEndpoint::default()
        .with_node_id(BrokerId(3))
        .with_host(s("b-3.msk.example.com"))
        .with_port(9094)
        .with_rack(Some(s("az3")))]
}

pub fn produce_response(v: i16, with_endpoints: bool) -> ProduceResponse {
    let part = produce_response::PartitionProduceResponse::default()
        .with_index(0)
        .with_error_code(if with_endpoints { 6 } else { 0 })
        .with_error_message(Some(s("not leader")))
        .with_record_errors(vec![produce_response::BatchIndexAndErrorMessage::default()
            .with_batch_index(1)
            .with_batch_index_error_message(Some(s("bad")))])
        .with_current_leader(
            produce_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(3))
                .with_leader_epoch(7),
        );
    let mut topic = produce_response::TopicProduceResponse::default().with_partition_responses(vec![part]);
    if v >= 13 {
        topic.topic_id = Uuid::from_u128(77);
    } else {
        topic.name = TopicName(s("orders"));
    }
    ProduceResponse::default()
        .with_responses(vec![topic])
        .with_throttle_time_ms(3)
        .with_node_endpoints(if with_endpoints { endpoints() } else { vec![] })
}

#[test]
fn produce_node_endpoints_rewritten_and_absent_passes_unchanged() {
    for v in 10..=13 {
        let m = TestMapper::new();
        let plain = frame(ApiKey::Produce, v, &produce_response(v, false));
        assert!(run(RewriteKind::ProduceEndpoints, ApiKey::Produce, v, &plain, &m).is_none());
        let orig = produce_response(v, true);
        let f = frame(ApiKey::Produce, v, &orig);
        let out = run(RewriteKind::ProduceEndpoints, ApiKey::Produce, v, &f, &m).unwrap();
        let got: ProduceResponse = decode(ApiKey::Produce, v, &out);
        let mut want = orig.clone();
        want.node_endpoints[0].host = s("kgate-3");
        want.node_endpoints[0].port = 20003;
        assert_eq!(got, want, "v{v}");
    }
}

pub fn fetch_response(_v: i16, with_endpoints: bool, records: usize) -> FetchResponse {
    let part = fetch_response::PartitionData::default()
        .with_partition_index(1)
        .with_high_watermark(100)
        .with_aborted_transactions(Some(vec![fetch_response::AbortedTransaction::default()
            .with_producer_id(ProducerId(9))
            .with_first_offset(3)]))
        .with_records(Some(Bytes::from(vec![7u8; records])))
        .with_current_leader(
            fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(4),
        );
    let topic = fetch_response::FetchableTopicResponse::default()
        .with_topic_id(Uuid::from_u128(5))
        .with_partitions(vec![
            part.clone(),
            part.with_partition_index(2).with_records(None),
        ]);
    let eps = if with_endpoints {
        vec![fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(2))
            .with_host(s("b-2.msk.example.com"))
            .with_port(9094)]
    } else {
        vec![]
    };
    FetchResponse::default()
        .with_session_id(11)
        .with_responses(vec![topic])
        .with_node_endpoints(eps)
}

#[test]
fn fetch_node_endpoints_rewritten_and_absent_passes_unchanged() {
    for v in 16..=18 {
        let m = TestMapper::new();
        let plain = frame(ApiKey::Fetch, v, &fetch_response(v, false, 1000));
        assert!(run(RewriteKind::FetchEndpoints, ApiKey::Fetch, v, &plain, &m).is_none());
        let orig = fetch_response(v, true, 1000);
        let f = frame(ApiKey::Fetch, v, &orig);
        let out = run(RewriteKind::FetchEndpoints, ApiKey::Fetch, v, &f, &m).unwrap();
        let got: FetchResponse = decode(ApiKey::Fetch, v, &out);
        let mut want = orig.clone();
        want.node_endpoints[0].host = s("kgate-2");
        want.node_endpoints[0].port = 20002;
        assert_eq!(got, want, "v{v}");
    }
}

#[test]
fn every_truncation_of_every_rewritable_frame_is_an_error_not_a_panic() {
    let cases: Vec<(RewriteKind, ApiKey, i16, Bytes)> = vec![
        (RewriteKind::Metadata, ApiKey::Metadata, 12, metadata_frame(12, 3)),
        (RewriteKind::Metadata, ApiKey::Metadata, 1, metadata_frame(1, 3)),
        (
            RewriteKind::ProduceEndpoints,
            ApiKey::Produce,
            11,
            frame(ApiKey::Produce, 11, &produce_response(11, true)),
        ),
        (
            RewriteKind::FetchEndpoints,
            ApiKey::Fetch,
            17,
            frame(ApiKey::Fetch, 17, &fetch_response(17, true, 20)),
        ),
    ];
    for (kind, key, v, f) in cases {
        for cut in 4..f.len() {
            let r = rewrite(kind, &f[..cut], key as i16, v, &TestMapper::new());
            // Metadata copies everything after `brokers` unchecked, so cuts
            // in the topics may succeed; every other cut must be an error.
            if kind != RewriteKind::Metadata {
                assert!(r.is_err(), "{key:?} v{v} cut at {cut} accepted");
            }
        }
    }
}

#[test]
fn lying_counts_are_errors_and_unmappable_brokers_are_left_out() {
    let mut f = metadata_frame(12, 1).to_vec();
    // brokers count (compact, right after throttle) set to a huge varint
    let pos = 4 + 4 + 1 + 4;
    f.splice(pos..pos + 1, [0xff, 0xff, 0xff, 0xff, 0x07]);
    assert!(rewrite(RewriteKind::Metadata, &f, 3, 12, &TestMapper::new()).is_err());

    // One broker the mapper refuses (node id over 1000): it is left out,
    // the others are rewritten, and every version still decodes.
    for v in 0..=13 {
        let mut m = metadata(v, 3);
        m.brokers[1].node_id = BrokerId(5000);
        let f = frame(ApiKey::Metadata, v, &m);
        let out = rewrite(RewriteKind::Metadata, &f, 3, v, &TestMapper::new())
            .unwrap()
            .unwrap();
        let d: MetadataResponse = decode(ApiKey::Metadata, v, &out);
        let ids: Vec<i32> = d.brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(ids, vec![m.brokers[0].node_id.0, m.brokers[2].node_id.0], "v{v}");
        assert!(d.brokers.iter().all(|b| b.host.starts_with("kgate-")));
        assert_eq!(d.topics.len(), m.topics.len());
    }
}
