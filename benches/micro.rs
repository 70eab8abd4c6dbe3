//! Micro benchmarks of the per-frame work: header peek, acks peek, each
//! rewriter, the MSK IAM signature, and the policy's per-request work.
//!
//!     cargo bench --bench micro

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kgate::protocol::decision::RewriteKind;
use kgate::protocol::header::{peek_produce_acks, peek_request_header};
use kgate::rewrite::{rewrite, Advertised, BrokerMapper, MapError};
use std::hint::black_box;
use std::sync::Arc;

struct Map(Arc<str>);
impl BrokerMapper for Map {
    fn advertise(&self, node_id: i32, _h: &str, _p: i32) -> Result<Advertised, MapError> {
        Ok(Advertised {
            host: self.0.clone(),
            port: 19093 + node_id,
        })
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn frame<M: Encodable>(key: ApiKey, v: i16, m: &M, request: bool) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    if request {
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_client_id(Some(s("bench-client")))
            .encode(&mut b, key.request_header_version(v))
            .unwrap();
    } else {
        ResponseHeader::default()
            .encode(&mut b, key.response_header_version(v))
            .unwrap();
    }
    m.encode(&mut b, v).unwrap();
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b.freeze()
}

fn metadata_3x1000() -> Bytes {
    let brokers = (1..=3)
        .map(|i| {
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(i))
                .with_host(s(&format!(
                    "b-{i}.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com"
                )))
                .with_port(9098)
                .with_rack(Some(s("use1-az1")))
        })
        .collect();
    let parts = (0..1000)
        .map(|p| {
            metadata_response::MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(1 + p % 3))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
                .with_isr_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
        })
        .collect();
    let topic = metadata_response::MetadataResponseTopic::default()
        .with_name(Some(TopicName(s("orders"))))
        .with_partitions(parts);
    frame(
        ApiKey::Metadata,
        12,
        &MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(vec![topic]),
        false,
    )
}

fn fetch(with_endpoints: bool) -> Bytes {
    let parts = (0..16)
        .map(|p| {
            fetch_response::PartitionData::default()
                .with_partition_index(p)
                .with_high_watermark(1_000_000)
                .with_records(Some(Bytes::from(vec![1u8; 64 * 1024])))
        })
        .collect();
    let topic = fetch_response::FetchableTopicResponse::default().with_partitions(parts);
    let eps = if with_endpoints {
        vec![fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(2))
            .with_host(s("b-2.example"))
            .with_port(9098)]
    } else {
        vec![]
    };
    frame(
        ApiKey::Fetch,
        17,
        &FetchResponse::default()
            .with_responses(vec![topic])
            .with_node_endpoints(eps),
        false,
    )
}

fn benches(c: &mut Criterion) {
    let map = Map("127.0.0.1".into());
    let produce = frame(
        ApiKey::Produce,
        11,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_transactional_id(Some(TransactionalId(s("txn-1")))),
        true,
    );
    c.bench_function("frame_header_peek", |b| {
        b.iter(|| peek_request_header(black_box(&produce)).unwrap())
    });
    let h = peek_request_header(&produce).unwrap();
    c.bench_function("acks_peek_produce_v11", |b| {
        b.iter(|| peek_produce_acks(black_box(&produce), &h).unwrap())
    });

    let md = metadata_3x1000();
    c.bench_function("rewrite_metadata_3_brokers_1000_partitions", |b| {
        b.iter(|| rewrite(RewriteKind::Metadata, black_box(&md), 3, 12, &map).unwrap())
    });
    let keys: Vec<StrBytes> = (0..50).map(|i| s(&format!("group-{i}"))).collect();
    let coords = keys
        .iter()
        .map(|k| {
            find_coordinator_response::Coordinator::default()
                .with_key(k.clone())
                .with_node_id(BrokerId(2))
                .with_host(s("b-2.example"))
                .with_port(9098)
        })
        .collect();
    let fc = frame(
        ApiKey::FindCoordinator,
        6,
        &FindCoordinatorResponse::default().with_coordinators(coords),
        false,
    );
    c.bench_function("rewrite_find_coordinator_batched_50", |b| {
        b.iter(|| rewrite(RewriteKind::FindCoordinator, black_box(&fc), 10, 6, &map).unwrap())
    });
    let dc_brokers = (1..=3)
        .map(|i| {
            describe_cluster_response::DescribeClusterBroker::default()
                .with_broker_id(BrokerId(i))
                .with_host(s("b.example"))
                .with_port(9098)
        })
        .collect();
    let dc = frame(
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterResponse::default().with_brokers(dc_brokers),
        false,
    );
    c.bench_function("rewrite_describe_cluster_3", |b| {
        b.iter(|| rewrite(RewriteKind::DescribeCluster, black_box(&dc), 60, 1, &map).unwrap())
    });
    let f0 = fetch(false);
    c.bench_function("scan_fetch_v17_1MiB_without_node_endpoints", |b| {
        b.iter(|| {
            assert!(rewrite(RewriteKind::FetchEndpoints, black_box(&f0), 1, 17, &map)
                .unwrap()
                .is_none())
        })
    });
    let f1 = fetch(true);
    c.bench_function("rewrite_fetch_v17_1MiB_with_node_endpoints", |b| {
        b.iter(|| {
            rewrite(RewriteKind::FetchEndpoints, black_box(&f1), 1, 17, &map)
                .unwrap()
                .unwrap()
        })
    });
    let keys = kgate::upstream::sasl::sigv4::Keys {
        access_key: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("FwoGZXIvYXdzEXAMPLETOKEN".into()),
    };
    c.bench_function("msk_iam_payload_signature", |b| {
        b.iter(|| {
            kgate::upstream::sasl::msk_iam::iam_payload(
                black_box(&keys),
                "us-east-1",
                "b-1.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com",
                std::time::SystemTime::now(),
            )
        })
    });
    c.bench_function("msk_iam_oauthbearer_token_signature", |b| {
        b.iter(|| {
            kgate::upstream::sasl::msk_iam::oauth_token(
                black_box(&keys),
                "us-east-1",
                std::time::SystemTime::now(),
            )
        })
    });
}

/// A connection without a principal (the policy's `default` rules apply).
struct Anon;
impl kgate::filter::Conn for Anon {
    fn listener(&self) -> &str {
        "bench"
    }
    fn client(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], 1).into()
    }
    fn identity(&self) -> Option<&str> {
        None
    }
    fn broker(&self) -> Option<kgate::config::HostPort> {
        None
    }
    fn session_lifetime_ms(&self) -> i64 {
        0
    }
    fn set_session_lifetime_ms(&self, _: i64) {}
    fn reauth_due(&self) -> Option<tokio::time::Instant> {
        None
    }
    fn set_reauth_due(&self, _: Option<tokio::time::Instant>) {}
}

/// The policy filter's cost per request: a 64 KiB Produce to an allowed
/// topic (read whole, bounds walk, decode, pass) and a Metadata response
/// of 1,000 partitions (decode, learn ids, filter, re-encode).
fn policy_benches(c: &mut Criterion) {
    use kgate::config::policy::{op, Pattern, PolicyConfig, ResourceRule, Rules};
    use kgate::filter::Filter;
    let mut rules = Rules::everything();
    rules.topics = Some(vec![ResourceRule {
        pattern: Pattern::Prefix("orders".into()),
        ops: op::READ | op::WRITE | op::DESCRIBE,
    }]);
    let cfg = PolicyConfig {
        default: rules,
        principals: vec![],
        unmatched: Rules::nothing(),
    };
    let p = kgate::filter::policy::Policy::new(Arc::new(cfg), Default::default());
    let pd = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from(vec![0x5au8; 64 * 1024])));
    let td = produce_request::TopicProduceData::default()
        .with_name(TopicName(s("orders.eu")))
        .with_partition_data(vec![pd]);
    let produce = frame(
        ApiKey::Produce,
        9,
        &ProduceRequest::default().with_acks(-1).with_topic_data(vec![td]),
        true,
    );
    let h = peek_request_header(&produce).unwrap();
    c.bench_function("policy_produce_64KiB_allowed_topic", |b| {
        b.iter(|| p.on_request(&Anon, &h, black_box(&produce)).unwrap())
    });
    let md = metadata_3x1000();
    let hm = kgate::protocol::header::RequestHeader {
        api_key: 3,
        api_version: 12,
        correlation_id: 0,
    };
    c.bench_function("policy_metadata_response_1000_partitions", |b| {
        b.iter(|| p.on_response(&Anon, &hm, black_box(&md)).unwrap())
    });
}

criterion_group! {
    name = micro;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches, policy_benches
}
criterion_main!(micro);
