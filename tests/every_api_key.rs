//! Every API key and version kafka-protocol knows goes through kgate to a
//! scripted upstream. Each is forwarded byte-identical, rewritten correctly,
//! answered by kgate, or refused by the allow-list, as the decision table
//! in `protocol::decision` says. Requests and responses are encoded and
//! decoded by kafka-protocol, independently of kgate's own wire code.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kgate::for_every_api;
use kgate::protocol::decision::{allowed_versions, decide, RequestAction, ResponseAction, RewriteKind};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn default_request(key: ApiKey, v: i16, corr: i32) -> Bytes {
    if key == ApiKey::Produce {
        // acks=-1 so a response is expected; acks=0 has its own test.
        return request_frame(key, v, corr, &ProduceRequest::default().with_acks(-1));
    }
    macro_rules! arms {
        ($($k:ident => $req:ident, $resp:ident;)*) => {
            match key { $(ApiKey::$k => request_frame(key, v, corr, &$req::default()),)* }
        };
    }
    for_every_api!(arms)
}

fn default_response(key: ApiKey, v: i16, corr: i32) -> Bytes {
    macro_rules! arms {
        ($($k:ident => $req:ident, $resp:ident;)*) => {
            match key { $(ApiKey::$k => response_frame(key, v, corr, &$resp::default()),)* }
        };
    }
    for_every_api!(arms)
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// The upstream's answer: address-carrying responses name the upstream
/// itself (node 1) and a second broker (node 2) at a made-up address.
fn scripted_response(key: ApiKey, v: i16, corr: i32, me: SocketAddr) -> Bytes {
    let (host, port) = (s(&me.ip().to_string()), me.port() as i32);
    match key {
        ApiKey::ApiVersions => {
            let keys = ApiKey::iter()
                .map(|k| {
                    api_versions_response::ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(k.valid_versions().min)
                        .with_max_version(k.valid_versions().max)
                })
                .collect();
            response_frame(key, v, corr, &ApiVersionsResponse::default().with_api_keys(keys))
        }
        ApiKey::Metadata => {
            let b = |id: i32, h: StrBytes, p: i32| {
                metadata_response::MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(h)
                    .with_port(p)
            };
            let m = MetadataResponse::default()
                .with_brokers(vec![b(1, host, port), b(2, s("b-2.internal"), 9999)]);
            response_frame(key, v, corr, &m)
        }
        ApiKey::FindCoordinator if v <= 3 => response_frame(
            key,
            v,
            corr,
            &FindCoordinatorResponse::default()
                .with_node_id(BrokerId(2))
                .with_host(s("b-2.internal"))
                .with_port(9999),
        ),
        ApiKey::FindCoordinator => {
            let c = find_coordinator_response::Coordinator::default()
                .with_key(s("g"))
                .with_node_id(BrokerId(1))
                .with_host(host)
                .with_port(port);
            response_frame(
                key,
                v,
                corr,
                &FindCoordinatorResponse::default().with_coordinators(vec![c]),
            )
        }
        ApiKey::DescribeCluster => {
            let b = describe_cluster_response::DescribeClusterBroker::default()
                .with_broker_id(BrokerId(2))
                .with_host(s("b-2.internal"))
                .with_port(9999);
            response_frame(
                key,
                v,
                corr,
                &DescribeClusterResponse::default().with_brokers(vec![b]),
            )
        }
        ApiKey::Produce if v >= 10 => {
            let e = produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s("b-2.internal"))
                .with_port(9999);
            response_frame(
                key,
                v,
                corr,
                &ProduceResponse::default().with_node_endpoints(vec![e]),
            )
        }
        ApiKey::Fetch if v >= 16 => {
            let e = fetch_response::NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(host)
                .with_port(port);
            response_frame(
                key,
                v,
                corr,
                &FetchResponse::default().with_node_endpoints(vec![e]),
            )
        }
        _ => default_response(key, v, corr),
    }
}

/// Every (host, port) in a rewritten response, decoded by kafka-protocol.
fn addresses(kind: RewriteKind, key: ApiKey, v: i16, f: &Bytes) -> Vec<(String, i32)> {
    let a = |h: &StrBytes, p: i32| (h.to_string(), p);
    match kind {
        RewriteKind::Metadata => {
            let (_, m): (_, MetadataResponse) = decode_response(key, v, f);
            m.brokers.iter().map(|b| a(&b.host, b.port)).collect()
        }
        RewriteKind::FindCoordinator => {
            let (_, m): (_, FindCoordinatorResponse) = decode_response(key, v, f);
            if v <= 3 {
                vec![a(&m.host, m.port)]
            } else {
                m.coordinators.iter().map(|c| a(&c.host, c.port)).collect()
            }
        }
        RewriteKind::DescribeCluster => {
            let (_, m): (_, DescribeClusterResponse) = decode_response(key, v, f);
            m.brokers.iter().map(|b| a(&b.host, b.port)).collect()
        }
        RewriteKind::ProduceEndpoints => {
            let (_, m): (_, ProduceResponse) = decode_response(key, v, f);
            m.node_endpoints.iter().map(|b| a(&b.host, b.port)).collect()
        }
        RewriteKind::FetchEndpoints => {
            let (_, m): (_, FetchResponse) = decode_response(key, v, f);
            m.node_endpoints.iter().map(|b| a(&b.host, b.port)).collect()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_key_and_version_follows_the_decision_table() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Bytes>();
    let upstream = serve(move |mut sock: TcpStream| {
        let seen_tx = seen_tx.clone();
        async move {
            let me = sock.local_addr().unwrap();
            while let Some(f) = read_frame(&mut sock).await {
                let key = ApiKey::try_from(i16::from_be_bytes([f[4], f[5]])).unwrap();
                let v = i16::from_be_bytes([f[6], f[7]]);
                let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
                // kgate's own upstream probe (client id "kgate") is not under test.
                if &f[12..19] != b"\x00\x05kgate" {
                    let _ = seen_tx.send(f);
                }
                let _ = sock.write_all(&scripted_response(key, v, corr, me)).await;
            }
        }
    })
    .await;
    let kg = start_kgate(vec![hp(upstream)], 4).await;
    let base = kg.shared.config.port_base as i32;
    let listeners = [
        ("127.0.0.1".to_string(), base + 2),
        ("127.0.0.1".to_string(), base + 3),
    ];
    let mut outcome: BTreeMap<&str, usize> = BTreeMap::new();

    for key in ApiKey::iter() {
        let r = kgate::protocol::catalog::parseable_versions(key);
        for v in r.min..=r.max {
            let corr = 1000 + v as i32;
            let req = default_request(key, v, corr);
            let mut c = TcpStream::connect(kg.bootstrap).await.unwrap();
            c.write_all(&req).await.unwrap();
            let what = format!("{key:?} v{v}");
            match decide(key as i16, v) {
                RequestAction::Forward(action) => {
                    let got = seen.recv().await.unwrap();
                    assert_eq!(got, req, "{what}: request not forwarded byte-identical");
                    let resp = read_frame(&mut c)
                        .await
                        .unwrap_or_else(|| panic!("{what}: no response"));
                    let upstream_resp = scripted_response(key, v, corr, upstream);
                    match action {
                        ResponseAction::PassThrough => {
                            assert_eq!(resp, upstream_resp, "{what}: response not byte-identical");
                            *outcome.entry("forwarded byte-identical").or_default() += 1;
                        }
                        ResponseAction::ApiVersions => {
                            let (_, m): (_, ApiVersionsResponse) = decode_response(key, v, &resp);
                            assert!(m.api_keys.len() > 50, "{what}");
                            for a in &m.api_keys {
                                let (lo, hi) = allowed_versions(a.api_key).expect("denied key offered");
                                assert!(a.min_version >= lo && a.max_version <= hi, "{what}: {a:?}");
                            }
                            assert!(!m.api_keys.iter().any(|a| a.api_key == ApiKey::ShareFetch as i16));
                            *outcome.entry("ApiVersions filtered").or_default() += 1;
                        }
                        ResponseAction::Rewrite(kind) => {
                            let addrs = addresses(kind, key, v, &resp);
                            assert!(!addrs.is_empty(), "{what}");
                            for a in &addrs {
                                assert!(listeners.contains(a), "{what}: {a:?} is not a kgate listener");
                            }
                            *outcome.entry("rewritten").or_default() += 1;
                        }
                    }
                }
                RequestAction::RefuseSasl => {
                    let resp = read_frame(&mut c).await.expect("SASL answered by kgate");
                    assert_eq!(&resp[4..8], &corr.to_be_bytes(), "{what}");
                    *outcome.entry("answered by kgate (SASL refused)").or_default() += 1;
                }
                RequestAction::ApiVersionsTooNew => {
                    unreachable!("kafka-protocol knows ApiVersions <= 4")
                }
                RequestAction::Reject(_) => {
                    assert!(closed(&mut c).await, "{what}: connection not closed");
                    *outcome.entry("refused by the allow-list").or_default() += 1;
                }
            }
            // Whatever happened, the next request the upstream sees is this
            // probe: nothing refused or answered locally was forwarded.
            let mut p = TcpStream::connect(kg.bootstrap).await.unwrap();
            let probe = default_request(ApiKey::Heartbeat, 4, 7);
            p.write_all(&probe).await.unwrap();
            assert_eq!(seen.recv().await.unwrap(), probe, "after {what}");
            read_frame(&mut p).await.unwrap();
        }
    }
    println!("outcomes: {outcome:?}");
    let total: usize = ApiKey::iter()
        .map(kgate::protocol::catalog::parseable_versions)
        .map(|r| (r.max - r.min + 1) as usize)
        .sum();
    assert_eq!(outcome.values().sum::<usize>(), total);
    assert!(outcome["forwarded byte-identical"] > 200);
    assert!(outcome["refused by the allow-list"] >= 20);
    assert_eq!(outcome["rewritten"], 14 + 7 + 3 + 4 + 3);
    assert_eq!(outcome["ApiVersions filtered"], 5);
    assert_eq!(outcome["answered by kgate (SASL refused)"], 2 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_produce_is_not_waited_for_and_pipelining_works() {
    let upstream = serve(|mut sock: TcpStream| async move {
        while let Some(f) = read_frame(&mut sock).await {
            let key = ApiKey::try_from(i16::from_be_bytes([f[4], f[5]])).unwrap();
            let v = i16::from_be_bytes([f[6], f[7]]);
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            if key == ApiKey::Produce {
                continue; // acks=0: a broker sends nothing
            }
            let _ = sock.write_all(&default_response(key, v, corr)).await;
        }
    })
    .await;
    let kg = start_kgate(vec![hp(upstream)], 4).await;
    let mut c = TcpStream::connect(kg.bootstrap).await.unwrap();
    // 3 acks=0 produces interleaved with 8 pipelined heartbeats.
    let mut batch = Vec::new();
    for i in 0..8 {
        batch.extend_from_slice(&request_frame(
            ApiKey::Heartbeat,
            4,
            100 + i,
            &HeartbeatRequest::default(),
        ));
        if i % 3 == 0 {
            batch.extend_from_slice(&request_frame(
                ApiKey::Produce,
                9,
                500 + i,
                &ProduceRequest::default().with_acks(0),
            ));
        }
    }
    c.write_all(&batch).await.unwrap();
    for i in 0..8 {
        let f = read_frame(&mut c).await.unwrap();
        let (corr, _m): (_, HeartbeatResponse) = decode_response(ApiKey::Heartbeat, 4, &f);
        assert_eq!(corr, 100 + i);
    }
}
