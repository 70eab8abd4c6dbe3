//! The producer-id filter with real encodings: kafka-protocol builds the
//! requests and record batches and decodes (with CRC checks) what the
//! filter sends on.

use super::registry::{Key, Registry};
use super::*;
use crate::filter::tests::TestConn;
use crate::protocol::header::peek_request_header;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ProduceResponse, RequestHeader as KpHeader, ResponseHeader, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

fn records(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    super::batch::tests::batch(pid, epoch, seq, n).freeze()
}

fn framed(key: i16, v: i16, corr: i32, body: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(&[0; 4]);
    let k = ApiKey::try_from(key).expect("key");
    KpHeader::default()
        .with_request_api_key(key)
        .with_request_api_version(v)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut b, k.request_header_version(v))
        .expect("header");
    body(&mut b);
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b.to_vec()
}

fn produce(v: i16, pid: i64, epoch: i16, seqs: &[(i32, i32)]) -> Vec<u8> {
    let parts = seqs
        .iter()
        .map(|(p, seq)| {
            PartitionProduceData::default()
                .with_index(*p)
                .with_records(Some(records(pid, epoch, *seq, 3)))
        })
        .collect();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(parts)]);
    framed(0, v, 5, |b| req.encode(b, v).expect("body"))
}

fn init(v: i16, corr: i32, txn: Option<&'static str>, pid: i64, epoch: i16) -> Vec<u8> {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_static_str(t))))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch);
    framed(INIT_PRODUCER_ID, v, corr, |b| req.encode(b, v).expect("body"))
}

fn init_response(v: i16, corr: i32, pid: i64, epoch: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(&[0; 4]);
    let k = ApiKey::InitProducerId;
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut b, k.response_header_version(v))
        .expect("header");
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .encode(&mut b, v)
        .expect("body");
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b.to_vec()
}

fn on_request(f: &ProducerIds, c: &TestConn, frame: &[u8]) -> RequestVerdict {
    let h = peek_request_header(frame).expect("header");
    f.on_request(c, &h, frame).expect("verdict")
}

/// Learns `pid` as issued on `generation` through the filter itself.
fn learn(f: &ProducerIds, generation: u64, pid: i64) -> Option<BytesMut> {
    let c = TestConn {
        generation,
        ..Default::default()
    };
    let rq = init(4, 11, None, -1, -1);
    assert!(matches!(on_request(f, &c, &rq), RequestVerdict::Pass));
    let h = peek_request_header(&rq).expect("header");
    f.on_response(&c, &h, &init_response(4, 11, pid, 0))
        .expect("response")
}

/// (pid, epoch, first sequence) of every batch in a Produce request.
fn batches(frame: &[u8]) -> Vec<(i64, i16, i32)> {
    let h = peek_request_header(frame).expect("header");
    let (_, mut b) = split(frame, &bounds::PRODUCE).expect("split");
    let req: ProduceRequest = decode(&mut b, h.api_version).expect("decode");
    let mut out = Vec::new();
    for t in req.topic_data {
        for p in t.partition_data {
            let mut r = p.records.expect("records");
            for set in RecordBatchDecoder::decode_all(&mut r).expect("valid CRC") {
                let first = &set.records[0];
                out.push((first.producer_id, first.producer_epoch, first.sequence));
            }
        }
    }
    out
}

fn filter(rewrite: bool, ids: &Arc<Registry>) -> ProducerIds {
    ProducerIds {
        ids: ids.clone(),
        rewrite,
    }
}

#[test]
fn the_first_generation_only_learns_and_never_reads_produce() {
    let ids = Arc::new(Registry::default());
    let f = filter(false, &ids);
    assert_eq!(
        f.request_need(0, 9),
        Need::Skip,
        "Produce streams on generation 1"
    );
    assert_eq!(f.request_need(INIT_PRODUCER_ID, 4), Need::Whole);
    assert_eq!(f.response_need(INIT_PRODUCER_ID, 4), ResponseNeed::Whole);
    assert!(learn(&f, 1, 7).is_none(), "passed unchanged");
    assert_eq!(
        ids.lookup(7, 0, 2),
        registry::Lookup::Wait,
        "7 was learned as generation 1's"
    );
    assert_eq!(filter(true, &ids).request_need(0, 9), Need::Whole);
}

#[test]
fn a_producer_from_an_earlier_generation_retries_then_goes_out_under_a_fresh_id() {
    let ids = Arc::new(Registry::default());
    learn(&filter(false, &ids), 1, 7);
    let f = filter(true, &ids);
    let c = TestConn {
        generation: 2,
        ..Default::default()
    };
    for v in [3i16, 9, 12] {
        let rq = produce(v, 7, 0, &[(0, 1500), (1, 20)]);
        let RequestVerdict::Answer(resp) = on_request(&f, &c, &rq) else {
            panic!("v{v}: expected a retriable answer");
        };
        let mut b = Bytes::copy_from_slice(&resp[4..]);
        ResponseHeader::decode(&mut b, ApiKey::Produce.response_header_version(v)).expect("header");
        let r = ProduceResponse::decode(&mut b, v).expect("body");
        let codes: Vec<i16> = r.responses[0]
            .partition_responses
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![NOT_ENOUGH_REPLICAS; 2], "v{v}");
    }
    let keys = ids.take_pending(2);
    assert_eq!(
        keys,
        vec![Key {
            pid: 7,
            epoch: 0,
            generation: 2
        }]
    );
    ids.fill(keys[0], 4000, 0);
    let rq = produce(9, 7, 0, &[(0, 1500), (1, 20)]);
    let RequestVerdict::Replace(out) = on_request(&f, &c, &rq) else {
        panic!("expected the request rewritten");
    };
    assert_eq!(
        batches(&out),
        vec![(4000, 0, 0), (4000, 0, 0)],
        "fresh id, sequences from 0 per partition"
    );
    let again = produce(9, 7, 0, &[(0, 1503)]);
    let RequestVerdict::Replace(out) = on_request(&f, &c, &again) else {
        panic!("expected the request rewritten");
    };
    assert_eq!(batches(&out), vec![(4000, 0, 3)]);
    // A producer this generation issued, and one never seen, pass.
    learn(&f, 2, 8);
    assert!(matches!(
        on_request(&f, &c, &produce(9, 8, 0, &[(0, 5)])),
        RequestVerdict::Pass
    ));
    assert!(matches!(
        on_request(&f, &c, &produce(9, 99, 0, &[(0, 5)])),
        RequestVerdict::Pass
    ));
}

#[test]
fn a_clashing_id_goes_to_the_client_as_kgates_own_and_back_to_the_cluster() {
    let ids = Arc::new(Registry::default());
    learn(&filter(false, &ids), 1, 5);
    let f = filter(true, &ids);
    let out = learn(&f, 2, 5).expect("rewritten response");
    let mut b = Bytes::copy_from_slice(&out[4..]);
    ResponseHeader::decode(&mut b, ApiKey::InitProducerId.response_header_version(4)).expect("header");
    let r = InitProducerIdResponse::decode(&mut b, 4).expect("body");
    let v = r.producer_id.0;
    assert!(v >= registry::VIRTUAL_BASE, "{v}");
    let c = TestConn {
        generation: 2,
        ..Default::default()
    };
    let RequestVerdict::Replace(rq) = on_request(&f, &c, &produce(9, v, 0, &[(0, 42)])) else {
        panic!("expected the request rewritten");
    };
    assert_eq!(
        batches(&rq),
        vec![(5, 0, 42)],
        "the cluster's id, the client's sequences"
    );
}

#[test]
fn an_epoch_bump_goes_out_as_the_mapped_id_and_transactions_are_left_alone() {
    let ids = Arc::new(Registry::default());
    learn(&filter(false, &ids), 1, 7);
    let f = filter(true, &ids);
    let c = TestConn {
        generation: 2,
        ..Default::default()
    };
    let RequestVerdict::Replace(rq) = on_request(&f, &c, &init(4, 12, None, 7, 0)) else {
        panic!("an id from another generation asks for a new one");
    };
    let (_, mut b) = split(&rq, &bounds::INIT_PRODUCER_ID).expect("split");
    let r: InitProducerIdRequest = decode(&mut b, 4).expect("decode");
    assert_eq!((r.producer_id.0, r.producer_epoch), (-1, -1));
    ids.lookup(7, 0, 2);
    let k = ids.take_pending(2);
    ids.fill(k[0], 4000, 2);
    let RequestVerdict::Replace(rq) = on_request(&f, &c, &init(4, 13, None, 7, 0)) else {
        panic!("a mapped id bumps as the cluster's id");
    };
    let (_, mut b) = split(&rq, &bounds::INIT_PRODUCER_ID).expect("split");
    let r: InitProducerIdRequest = decode(&mut b, 4).expect("decode");
    assert_eq!((r.producer_id.0, r.producer_epoch), (4000, 2));
    // Transactional: never stashed, never learned.
    let t = init(4, 14, Some("tx"), -1, -1);
    assert!(matches!(on_request(&f, &c, &t), RequestVerdict::Pass));
    let h = peek_request_header(&t).expect("header");
    assert!(f
        .on_response(&c, &h, &init_response(4, 14, 7, 0))
        .expect("ok")
        .is_none());
    assert_eq!(
        ids.lookup(7, 0, 3),
        registry::Lookup::Wait,
        "still generation 1's"
    );
}

#[test]
fn malformed_requests_are_errors_and_acks_zero_passes() {
    let ids = Arc::new(Registry::default());
    learn(&filter(false, &ids), 1, 7);
    let f = filter(true, &ids);
    let c = TestConn {
        generation: 2,
        ..Default::default()
    };
    let rq = produce(9, 7, 0, &[(0, 1)]);
    let h = peek_request_header(&rq).expect("header");
    for cut in [20, rq.len() / 2, rq.len() - 1] {
        assert!(f.on_request(&c, &h, &rq[..cut]).is_err(), "cut at {cut}");
    }
    let (head, mut b) = split(&rq, &bounds::PRODUCE).expect("split");
    let mut req: ProduceRequest = decode(&mut b, 9).expect("decode");
    req.acks = 0;
    let zero = frame::request(&head, &req).expect("encode").to_vec();
    assert!(matches!(on_request(&f, &c, &zero), RequestVerdict::Pass));
}
