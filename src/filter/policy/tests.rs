//! The policy filter against frames encoded by kafka-protocol: every
//! denial answer decoded back, split requests and merged responses.

use super::*;
use crate::filter::tests::TestConn;
use bytes::{BufMut, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub const RULES: &str = r#"
default = "allow"
[[principal]]
names = ["alice"]
topics = [{ prefix = "orders.", ops = ["read", "write", "describe"] }]
groups = [{ name = "orders-app", ops = ["read", "describe"] }]
transactional_ids = [{ prefix = "alice-", ops = ["write", "describe"] }]
[[principal]]
names = ["bob"]
apis_deny = ["Produce"]
[[principal]]
names = ["admin"]
apis_allow = ["all"]
"#;

pub fn policy(text: &str) -> Policy {
    let f: crate::config::policy::FilePolicy = toml::from_str(text).unwrap();
    let cfg = crate::config::policy::policy(Some(f)).unwrap().unwrap();
    Policy::new(cfg, Default::default())
}

pub fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

pub fn hdr(key: ApiKey, v: i16, corr: i32) -> crate::protocol::header::RequestHeader {
    crate::protocol::header::RequestHeader {
        api_key: key as i16,
        api_version: v,
        correlation_id: corr,
    }
}

/// A request frame: size, header (with a client id), body.
pub fn req<M: Encodable>(key: ApiKey, v: i16, corr: i32, body: &M) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    b.put_i32(0);
    kafka_protocol::messages::RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(corr)
        .with_client_id(Some(s("test")))
        .encode(&mut b, key.request_header_version(v))
        .unwrap();
    body.encode(&mut b, v).unwrap();
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b.to_vec()
}

/// A response frame as a broker would send it.
pub fn resp<M: Encodable>(key: ApiKey, v: i16, corr: i32, body: &M) -> Vec<u8> {
    frame::response_to(key, v, corr, body).unwrap().to_vec()
}

/// Decodes a response frame: its correlation id and body.
pub fn read<M: Decodable>(key: ApiKey, v: i16, f: &[u8]) -> (i32, M) {
    let mut b = Bytes::copy_from_slice(&f[4..]);
    let h = ResponseHeader::decode(&mut b, key.response_header_version(v)).unwrap();
    let m = M::decode(&mut b, v).unwrap();
    assert!(b.is_empty(), "bytes left after the response");
    (h.correlation_id, m)
}

/// Decodes a request frame's body.
pub fn read_req<M: Decodable>(key: ApiKey, v: i16, f: &[u8]) -> M {
    let mut b = Bytes::copy_from_slice(&f[4..]);
    kafka_protocol::messages::RequestHeader::decode(&mut b, key.request_header_version(v)).unwrap();
    M::decode(&mut b, v).unwrap()
}

pub fn answer(v: RequestVerdict) -> Bytes {
    match v {
        RequestVerdict::Answer(b) => b,
        other => panic!("expected an answer, got {other:?}"),
    }
}

pub fn replaced(v: RequestVerdict) -> Bytes {
    match v {
        RequestVerdict::Replace(b) => b,
        other => panic!("expected a replacement, got {other:?}"),
    }
}

pub fn run<M: Encodable>(
    p: &Policy,
    c: &TestConn,
    key: ApiKey,
    v: i16,
    corr: i32,
    body: &M,
) -> RequestVerdict {
    p.on_request(c, &hdr(key, v, corr), &req(key, v, corr, body))
        .unwrap()
}

fn produce(topics: &[&str]) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_topic_data(
        topics
            .iter()
            .map(|t| {
                TopicProduceData::default()
                    .with_name(TopicName(s(t)))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from_static(b"rec")))])
            })
            .collect(),
    )
}

#[test]
fn no_principal_and_allowed_entries_pass() {
    let p = policy(RULES);
    let anon = TestConn::default();
    assert!(matches!(
        run(&p, &anon, ApiKey::Produce, 9, 1, &produce(&["payments"])),
        RequestVerdict::Pass
    ));
    let alice = TestConn::as_principal("alice");
    assert!(matches!(
        run(&p, &alice, ApiKey::Produce, 9, 1, &produce(&["orders.eu"])),
        RequestVerdict::Pass
    ));
}

#[test]
fn produce_all_denied_is_answered_per_partition() {
    let p = policy(RULES);
    let alice = TestConn::as_principal("alice");
    for v in [3, 8, 9, 12] {
        let b = answer(run(
            &p,
            &alice,
            ApiKey::Produce,
            v,
            41,
            &produce(&["payments", "x"]),
        ));
        let (corr, r): (i32, ProduceResponse) = read(ApiKey::Produce, v, &b);
        assert_eq!(corr, 41);
        assert_eq!(r.responses.len(), 2);
        for t in &r.responses {
            assert_eq!(t.partition_responses[0].error_code, 29, "v{v}");
            assert_eq!(t.partition_responses[0].base_offset, -1);
        }
    }
    let m = crate::metrics::get();
    assert!(
        m.policy_denials.get(&("Produce", "topic")) >= 4,
        "counted by API and resource type"
    );
    // acks=0 has no response to carry the error: closed, as Kafka does.
    let f = produce(&["payments"]).with_acks(0);
    assert!(p
        .on_request(
            &alice,
            &hdr(ApiKey::Produce, 9, 2),
            &req(ApiKey::Produce, 9, 2, &f)
        )
        .is_err());
}

#[test]
fn produce_mixed_is_split_and_merged() {
    let p = policy(RULES);
    let alice = TestConn::as_principal("alice");
    let v = 9;
    let out = replaced(run(
        &p,
        &alice,
        ApiKey::Produce,
        v,
        7,
        &produce(&["orders.eu", "payments"]),
    ));
    let fwd: ProduceRequest = read_req(ApiKey::Produce, v, &out);
    assert_eq!(fwd.topic_data.len(), 1);
    assert_eq!(&*fwd.topic_data[0].name.0, "orders.eu");
    assert_eq!(
        &fwd.topic_data[0].partition_data[0].records.as_deref().unwrap(),
        b"rec"
    );
    let broker = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(s("orders.eu")))
        .with_partition_responses(vec![PartitionProduceResponse::default().with_base_offset(5)])]);
    let merged = p
        .on_response(
            &alice,
            &hdr(ApiKey::Produce, v, 7),
            &resp(ApiKey::Produce, v, 7, &broker),
        )
        .unwrap()
        .unwrap();
    let (corr, r): (i32, ProduceResponse) = read(ApiKey::Produce, v, &merged);
    assert_eq!(corr, 7);
    let by: Vec<(&str, i16)> = r
        .responses
        .iter()
        .map(|t| (&*t.name.0, t.partition_responses[0].error_code))
        .collect();
    // Denied entries go in front; the broker's own follow untouched.
    assert_eq!(by, [("payments", 29), ("orders.eu", 0)]);
    assert_eq!(r.responses[1].partition_responses[0].base_offset, 5);
    assert!(alice.stash.lock().unwrap().is_empty(), "the stash is taken back");
}

#[test]
fn transactional_produce_needs_the_transactional_id() {
    let p = policy(RULES);
    let alice = TestConn::as_principal("alice");
    let f = produce(&["orders.eu"]).with_transactional_id(Some(TransactionalId(s("bob-tx"))));
    let b = answer(run(&p, &alice, ApiKey::Produce, 9, 3, &f));
    let (_, r): (i32, ProduceResponse) = read(ApiKey::Produce, 9, &b);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 53);
}

#[test]
fn api_denied_produce_is_answered_per_entry() {
    let p = policy(RULES);
    let bob = TestConn::as_principal("bob");
    let b = answer(run(&p, &bob, ApiKey::Produce, 9, 3, &produce(&["anything"])));
    let (_, r): (i32, ProduceResponse) = read(ApiKey::Produce, 9, &b);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 29);
    // Unmatched principals get nothing but Metadata and ApiVersions.
    let eve = TestConn::as_principal("eve");
    let b = answer(run(&p, &eve, ApiKey::Produce, 9, 3, &produce(&["orders.eu"])));
    let (_, r): (i32, ProduceResponse) = read(ApiKey::Produce, 9, &b);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 29);
}

fn fetch(v: i16, topics: &[(&str, uuid::Uuid)]) -> FetchRequest {
    FetchRequest::default().with_session_epoch(-1).with_topics(
        topics
            .iter()
            .map(|(n, id)| {
                let t =
                    FetchTopic::default().with_partitions(vec![FetchPartition::default().with_partition(2)]);
                if v >= 13 {
                    t.with_topic_id(*id)
                } else {
                    t.with_topic(TopicName(s(n)))
                }
            })
            .collect(),
    )
}

#[test]
fn fetch_by_name_and_by_id() {
    let p = policy(RULES);
    let alice = TestConn::as_principal("alice");
    let (orders, payments, unknown) = (
        uuid::Uuid::from_u128(1),
        uuid::Uuid::from_u128(2),
        uuid::Uuid::from_u128(3),
    );
    p.ids.learn(orders, &s("orders.eu"));
    p.ids.learn(payments, &s("payments"));
    let b = answer(run(
        &p,
        &alice,
        ApiKey::Fetch,
        12,
        5,
        &fetch(12, &[("payments", payments)]),
    ));
    let (corr, r): (i32, FetchResponse) = read(ApiKey::Fetch, 12, &b);
    assert_eq!(corr, 5);
    assert_eq!(r.responses[0].partitions[0].error_code, 29);
    assert_eq!(r.responses[0].partitions[0].partition_index, 2);
    for v in [13, 16, 17] {
        let topics = [("orders.eu", orders), ("payments", payments), ("?", unknown)];
        let out = replaced(run(&p, &alice, ApiKey::Fetch, v, 6, &fetch(v, &topics)));
        let fwd: FetchRequest = read_req(ApiKey::Fetch, v, &out);
        assert_eq!(fwd.topics.len(), 1);
        assert_eq!(fwd.topics[0].topic_id, orders);
        let broker = FetchResponse::default().with_responses(vec![
            kafka_protocol::messages::fetch_response::FetchableTopicResponse::default().with_topic_id(orders),
        ]);
        let merged = p
            .on_response(
                &alice,
                &hdr(ApiKey::Fetch, v, 6),
                &resp(ApiKey::Fetch, v, 6, &broker),
            )
            .unwrap()
            .unwrap();
        let (_, r): (i32, FetchResponse) = read(ApiKey::Fetch, v, &merged);
        let codes: Vec<(uuid::Uuid, i16)> = r
            .responses
            .iter()
            .take(2)
            .map(|t| (t.topic_id, t.partitions[0].error_code))
            .collect();
        assert_eq!(codes, [(payments, 29), (unknown, 100)], "v{v}");
        assert_eq!(r.responses[2].topic_id, orders);
    }
}

fn md_topic(name: &str, id: u128) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(name))))
        .with_topic_id(uuid::Uuid::from_u128(id))
        .with_partitions(vec![MetadataResponsePartition::default()])
}

#[test]
fn metadata_shows_only_describable_topics_and_learns_ids() {
    let p = policy(RULES);
    let alice = TestConn::as_principal("alice");
    let v = 12;
    // All topics: nothing to change in the request.
    let all = MetadataRequest::default().with_topics(None);
    assert!(matches!(
        run(&p, &alice, ApiKey::Metadata, v, 8, &all),
        RequestVerdict::Pass
    ));
    let broker =
        MetadataResponse::default().with_topics(vec![md_topic("orders.eu", 10), md_topic("payments", 11)]);
    let out = p
        .on_response(
            &alice,
            &hdr(ApiKey::Metadata, v, 8),
            &resp(ApiKey::Metadata, v, 8, &broker),
        )
        .unwrap()
        .unwrap();
    let (_, r): (i32, MetadataResponse) = read(ApiKey::Metadata, v, &out);
    let names: Vec<&str> = r.topics.iter().map(|t| &*t.name.as_ref().unwrap().0).collect();
    assert_eq!(names, ["orders.eu"]);
    assert_eq!(
        p.ids.name(uuid::Uuid::from_u128(11)).as_deref(),
        Some("payments"),
        "ids are cluster-wide"
    );
    // The same response for an unrestricted connection is left alone.
    let anon = TestConn::default();
    let untouched = p
        .on_response(
            &anon,
            &hdr(ApiKey::Metadata, v, 8),
            &resp(ApiKey::Metadata, v, 8, &broker),
        )
        .unwrap();
    assert!(untouched.is_none());
}

#[test]
fn metadata_named_topics_denied_and_no_auto_create() {
    let p = policy(RULES);
    let alice = TestConn::as_principal("alice");
    let v = 9;
    let named = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(
            ["orders.new", "payments"]
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(s(n)))))
                .collect(),
        ));
    let out = replaced(run(&p, &alice, ApiKey::Metadata, v, 9, &named));
    let fwd: MetadataRequest = read_req(ApiKey::Metadata, v, &out);
    assert!(!fwd.allow_auto_topic_creation, "alice may not create");
    assert_eq!(fwd.topics.as_ref().unwrap().len(), 1);
    let broker = MetadataResponse::default().with_topics(vec![md_topic("orders.new", 12).with_error_code(3)]);
    let merged = p
        .on_response(
            &alice,
            &hdr(ApiKey::Metadata, v, 9),
            &resp(ApiKey::Metadata, v, 9, &broker),
        )
        .unwrap()
        .unwrap();
    let (corr, r): (i32, MetadataResponse) = read(ApiKey::Metadata, v, &merged);
    assert_eq!(corr, 9);
    let got: Vec<(&str, i16)> = r
        .topics
        .iter()
        .map(|t| (&*t.name.as_ref().unwrap().0, t.error_code))
        .collect();
    assert_eq!(got, [("orders.new", 3), ("payments", 29)]);
    // A principal allowed to create keeps auto-creation.
    let q = policy("[[principal]]\nnames = [\"c\"]\ntopics = [{ prefix = \"orders.\", ops = [\"all\"] }]");
    let c = TestConn::as_principal("c");
    let one = named.clone().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(s("orders.new"))))
    ]));
    assert!(matches!(
        run(&q, &c, ApiKey::Metadata, v, 9, &one),
        RequestVerdict::Pass
    ));
}

#[path = "tests_more.rs"]
mod more;
