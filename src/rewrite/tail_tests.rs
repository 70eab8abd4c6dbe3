//! The streamed Fetch path, checked against kafka-protocol: a Fetch v16+
//! response is walked by the streaming scanner in small chunks, its tail
//! rewritten in place, and the reassembled frame must decode to the same
//! response with kgate's addresses — and the same length.

use super::tests::{fetch_response, frame, TestMapper};
use super::*;
use crate::protocol::fetch_scan::{FetchScan, Step};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};

/// Where the tail starts, found the way the pump finds it: fed `chunk`
/// bytes at a time. Also returns how many record bytes were skipped.
fn scan(frame: &[u8], chunk: usize) -> (usize, usize) {
    let mut s = FetchScan::new();
    let (mut pos, mut have, mut records) = (8, 8 + chunk, 0);
    loop {
        let avail = &frame[pos..have.min(frame.len())];
        match s.step(avail, frame.len() - pos).unwrap() {
            Step::Pass { head, records: n } => {
                pos += head + n;
                records += n;
                have = have.max(pos);
            }
            Step::NeedMore => have += chunk,
            Step::Tail => return (pos, records),
        }
    }
}

fn decode_fetch(v: i16, f: &[u8]) -> FetchResponse {
    let mut b = bytes::Bytes::copy_from_slice(&f[4..]);
    kafka_protocol::messages::ResponseHeader::decode(&mut b, ApiKey::Fetch.response_header_version(v))
        .unwrap();
    FetchResponse::decode(&mut b, v).unwrap()
}

/// Maps every broker to a host longer than any upstream name.
struct LongNames;
impl BrokerMapper for LongNames {
    fn advertise(&self, node_id: i32, _: &str, _: i32) -> Result<Advertised, MapError> {
        Ok(Advertised {
            host: format!("kgate-{node_id}.{}", "x".repeat(60)).into(),
            port: 19000,
        })
    }
}

#[test]
fn a_streamed_tail_is_rewritten_in_place_with_the_same_length() {
    for v in 16..=18 {
        for chunk in [1, 7, 64, 4096] {
            let orig = fetch_response(v, true, 5000);
            let f = frame(ApiKey::Fetch, v, &orig);
            let (at, records) = scan(&f, chunk);
            assert_eq!(records, 5000, "records are skipped, not parsed");
            let tail = rewrite_fetch_tail(&f[at..], &TestMapper::new()).unwrap().unwrap();
            assert_eq!(tail.len(), f.len() - at, "same length: the size already went out");
            let mut out = f[..at].to_vec();
            out.extend_from_slice(&tail);
            let got = decode_fetch(v, &out);
            assert_eq!(got.node_endpoints.len(), 1);
            assert_eq!(got.node_endpoints[0].host, StrBytes::from_static_str("kgate-2"));
            assert_eq!(got.node_endpoints[0].port, 20002);
            assert_eq!(got.responses, orig.responses, "v{v} chunk {chunk}");
            assert!(!out.windows(6).any(|w| w == b"b-2.ms"), "no upstream name left");
        }
    }
}

#[test]
fn endpoints_that_do_not_fit_are_dropped_never_leaked() {
    let orig = fetch_response(17, true, 100);
    let f = frame(ApiKey::Fetch, 17, &orig);
    let (at, _) = scan(&f, 16);
    let tail = rewrite_fetch_tail(&f[at..], &LongNames).unwrap().unwrap();
    assert_eq!(tail.len(), f.len() - at);
    let mut out = f[..at].to_vec();
    out.extend_from_slice(&tail);
    let got = decode_fetch(17, &out);
    assert!(got.node_endpoints.is_empty());
    assert_eq!(got.responses, orig.responses);
    assert!(!out.windows(6).any(|w| w == b"b-2.ms"));
}

#[test]
fn a_tail_without_endpoints_passes_and_unmappable_brokers_are_left_out() {
    let f = frame(ApiKey::Fetch, 16, &fetch_response(16, false, 10));
    let (at, _) = scan(&f, 3);
    assert!(rewrite_fetch_tail(&f[at..], &TestMapper::new())
        .unwrap()
        .is_none());
    let mut r = fetch_response(16, true, 10);
    r.node_endpoints[0].node_id = BrokerId(5000); // TestMapper refuses > 1000
    let f = frame(ApiKey::Fetch, 16, &r);
    let (at, _) = scan(&f, 3);
    let tail = rewrite_fetch_tail(&f[at..], &TestMapper::new()).unwrap().unwrap();
    let mut out = f[..at].to_vec();
    out.extend_from_slice(&tail);
    assert!(decode_fetch(16, &out).node_endpoints.is_empty());
}

#[test]
fn filler_reaches_every_length() {
    for total in 0..3000 {
        for n in 1..=2 {
            if let Some(sizes) = node_endpoints::fillers_for_tests(n, total) {
                let used: usize = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        crate::protocol::wire::uvarint_len(16368 + i as u32)
                            + crate::protocol::wire::uvarint_len(*s as u32)
                            + s
                    })
                    .sum();
                assert_eq!(used, total);
            }
        }
        // From 3 bytes up, one or two fillers always fit.
        if total >= 3 {
            assert!(
                node_endpoints::fillers_for_tests(1, total).is_some()
                    || node_endpoints::fillers_for_tests(2, total).is_some(),
                "{total}"
            );
        }
    }
}
