//! One TLS port for every broker, routed by SNI, in front of the Rust mock
//! cluster (brokers 1–3, leaders spread): the bootstrap name reaches the
//! cluster, every advertised address is a pattern name on the shared
//! port, each broker name reaches exactly that broker (the mock answers
//! NOT_LEADER otherwise), a broker that appears later is reachable without
//! a restart, unknown and missing names get a TLS alert, the certificate
//! check names what it does not cover, and PROXY protocol headers set the
//! client address.

mod common;

use bytes::Bytes;
use common::mock_cluster::{MockCluster, COORDINATOR, PARTITIONS, TOPIC};
use common::sni::*;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kgate::config::HostPort;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn produce(partition: i32) -> ProduceRequest {
    let pd = produce_request::PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(Bytes::from_static(b"sni-record")));
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![pd])])
}

/// Every address a client is told must be a pattern name on the port.
fn pattern_name(what: &str, host: &str, port: i32, sni_port: u16) -> i32 {
    assert_eq!(
        port,
        i32::from(sni_port),
        "{what}: {host}:{port} is not on the shared port"
    );
    host.strip_prefix("b-")
        .and_then(|h| h.strip_suffix(SUFFIX))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{what}: {host} is not a pattern name"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tls_port_reaches_every_broker_by_name() {
    let pki = pki(&[BOOT, "*.kafka.example.internal"]);
    let mut cluster = MockCluster::start().await;
    let port = free_port_base(1);
    let kg = start_with(config(&cluster, pki.path(), port)).await;
    let mut boot = tls(pki.path(), port, BOOT)
        .await
        .expect("bootstrap name accepted");
    let m: MetadataResponse = tcall(
        &mut boot,
        ApiKey::Metadata,
        12,
        1,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    let mut ids: Vec<i32> = m
        .brokers
        .iter()
        .map(|b| pattern_name("metadata", &b.host, b.port, port))
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3]);
    for b in &m.brokers {
        assert_eq!(pattern_name("metadata", &b.host, b.port, port), b.node_id.0);
    }
    let fc: FindCoordinatorResponse = tcall(
        &mut boot,
        ApiKey::FindCoordinator,
        3,
        2,
        &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
    )
    .await;
    assert_eq!(
        pattern_name("find_coordinator", &fc.host, fc.port, port),
        COORDINATOR
    );
    // Each leader's name reaches that broker: it accepts the write.
    let leaders: Vec<(i32, i32)> = m.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    assert_eq!(leaders.len(), PARTITIONS as usize);
    for (i, (partition, leader)) in leaders.iter().enumerate() {
        let mut s = tls(pki.path(), port, &format!("b-{leader}{SUFFIX}"))
            .await
            .unwrap();
        let r: ProduceResponse =
            tcall(&mut s, ApiKey::Produce, 11, 10 + i as i32, &produce(*partition)).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "partition {partition} via b-{leader}"
        );
    }
    // A wrong broker answers NOT_LEADER with KIP-951 node_endpoints,
    // which must name the leader by its pattern name too.
    let (partition, leader) = leaders[0];
    let other = 1 + leader % 3;
    let mut s = tls(pki.path(), port, &format!("b-{other}{SUFFIX}"))
        .await
        .unwrap();
    let r: ProduceResponse = tcall(&mut s, ApiKey::Produce, 11, 30, &produce(partition)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 6);
    assert_eq!(r.node_endpoints.len(), 1);
    let e = &r.node_endpoints[0];
    assert_eq!(
        pattern_name("produce node_endpoints", &e.host, e.port, port),
        leader
    );

    // A broker that appears later: unknown until a Metadata response
    // names it, then reachable on the same port without a restart.
    cluster.start_broker(4).await;
    let refused = tls(pki.path(), port, &format!("b-4{SUFFIX}")).await;
    assert!(refused.is_err(), "b-4 routed before kgate learned it");
    let m: MetadataResponse = tcall(
        &mut boot,
        ApiKey::Metadata,
        12,
        40,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    assert!(m
        .brokers
        .iter()
        .any(|b| pattern_name("metadata", &b.host, b.port, port) == 4));
    let mut s = tls(pki.path(), port, &format!("b-4{SUFFIX}"))
        .await
        .expect("b-4 reachable after Metadata");
    let av: ApiVersionsResponse =
        tcall(&mut s, ApiKey::ApiVersions, 3, 41, &ApiVersionsRequest::default()).await;
    assert_eq!(av.error_code, 0);

    // The port-per-broker listeners keep working beside the SNI port and
    // keep advertising their own ports.
    let mut own = tls(pki.path(), kg.bootstrap.port(), BOOT).await.unwrap();
    let m: MetadataResponse = tcall(
        &mut own,
        ApiKey::Metadata,
        12,
        50,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    for b in &m.brokers {
        assert_eq!(b.host.as_str(), "127.0.0.1");
        assert_ne!(b.port, i32::from(port));
    }
    let snap = kgate::metrics::get().sni_routes.snapshot();
    assert!(snap.iter().any(|(k, n)| *k == "refused" && *n >= 1), "{snap:?}");
    kg.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_missing_sni_gets_an_alert() {
    let pki = pki(&[BOOT, "*.kafka.example.internal", "evil.example.com", "127.0.0.1"]);
    let cluster = MockCluster::start().await;
    let port = free_port_base(1);
    let kg = start_with(config(&cluster, pki.path(), port)).await;
    // The certificate would verify for these names: only routing refuses.
    for name in ["evil.example.com", "b-x.kafka.example.internal", "127.0.0.1"] {
        let e = tls(pki.path(), port, name)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} accepted"));
        assert!(
            e.contains("AccessDenied") || e.to_lowercase().contains("access denied"),
            "{name}: {e}"
        );
    }
    // Plaintext Kafka on the SNI port is closed, never forwarded.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    plain
        .write_all(&request_frame(
            ApiKey::ApiVersions,
            3,
            1,
            &ApiVersionsRequest::default(),
        ))
        .await
        .unwrap();
    assert!(closed(&mut plain).await);
    kg.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_check_names_what_is_not_covered() {
    let cluster = MockCluster::start().await;
    let port = free_port_base(1);
    let only_boot = pki(&[BOOT]);
    let e = kgate::start(config(&cluster, only_boot.path(), port))
        .await
        .err()
        .expect("refused");
    assert!(e.contains("b-{node_id}.kafka.example.internal"), "{e}");
    assert!(!e.contains("the bootstrap name"), "{e}");
    let only_pattern = pki(&["*.other.example.internal", "b-1.kafka.example.internal"]);
    let e = kgate::start(config(&cluster, only_pattern.path(), port))
        .await
        .err()
        .expect("refused");
    assert!(
        e.contains("the bootstrap name bootstrap.kafka.example.internal"),
        "{e}"
    );
    // Per-name SANs: starts (with a warning naming the ids covered).
    let per_name = pki(&[BOOT, "b-1.kafka.example.internal", "b-2.kafka.example.internal"]);
    let kg = start_with(config(&cluster, per_name.path(), port)).await;
    kg.stop();
}

fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&9092u16.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_on_the_sni_port_and_required_refuses_direct_clients() {
    let pki = pki(&[BOOT, "*.kafka.example.internal"]);
    let cluster = MockCluster::start().await;
    let port = free_port_base(1);
    let mut c = config(&cluster, pki.path(), port);
    c.proxy_protocol = kgate::config::ProxyMode::Required;
    if let Some(s) = c.sni.as_mut() {
        s.proxy_protocol = kgate::config::ProxyMode::Required;
    }
    // Counted by the header's address, not the proxy's.
    c.max_connections_per_client = Some(1);
    let kg = start_with(c).await;
    let m = &kgate::metrics::get().proxy_protocol;
    let before = m.get(&"v2");
    // The bootstrap listener (TLS, like every listener here): v2 header,
    // then TLS, then Kafka.
    let boot = kg.bootstrap.port();
    let mut t = TcpStream::connect(kg.bootstrap).await.unwrap();
    t.write_all(&v2_header([198, 51, 100, 7], 40000)).await.unwrap();
    let mut t = tls_over(pki.path(), t, BOOT)
        .await
        .expect("TLS after a v2 header");
    let _: ApiVersionsResponse =
        tcall(&mut t, ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default()).await;
    // v1 works too.
    let mut t = TcpStream::connect(kg.bootstrap).await.unwrap();
    t.write_all(b"PROXY TCP4 198.51.100.8 127.0.0.1 40001 9092\r\n")
        .await
        .unwrap();
    let mut t = tls_over(pki.path(), t, BOOT)
        .await
        .expect("TLS after a v1 header");
    let _: ApiVersionsResponse =
        tcall(&mut t, ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default()).await;
    // Both connections above stay open: their header addresses differ,
    // although both sockets come from 127.0.0.1. A second connection with
    // the first one's address is over max_connections_per_client.
    let refused_before = kgate::metrics::get()
        .per_client_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut again = TcpStream::connect(kg.bootstrap).await.unwrap();
    again
        .write_all(&v2_header([198, 51, 100, 7], 40002))
        .await
        .unwrap();
    assert!(
        tls_over(pki.path(), again, BOOT).await.is_err(),
        "per-client limit by header address"
    );
    let refused_after = kgate::metrics::get()
        .per_client_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused_after > refused_before);
    drop(t);
    // A direct client is refused before TLS.
    assert!(
        tls(pki.path(), boot, BOOT).await.is_err(),
        "a direct client must be refused"
    );
    // Malformed header: closed.
    let mut d = TcpStream::connect(kg.bootstrap).await.unwrap();
    d.write_all(b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n")
        .await
        .unwrap();
    assert!(closed(&mut d).await, "a malformed header must be refused");
    // The SNI port: header first, then TLS with the bootstrap name.
    let mut t = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    t.write_all(&v2_header([203, 0, 113, 9], 50000)).await.unwrap();
    let mut t = tls_over(pki.path(), t, BOOT)
        .await
        .expect("TLS after the PROXY header");
    let m2: MetadataResponse = tcall(
        &mut t,
        ApiKey::Metadata,
        12,
        2,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    assert_eq!(m2.brokers.len(), 3);
    assert!(m.get(&"v2") >= before + 2);
    assert!(m.get(&"v1") >= 1 && m.get(&"missing") >= 1 && m.get(&"malformed") >= 1);
    kg.stop();
}

#[test]
fn sni_without_tls_is_refused_by_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k.toml");
    std::fs::write(
        &f,
        "bootstrap = [\"127.0.0.1:9092\"]\n[sni]\nlisten = \"127.0.0.1:29092\"\nbootstrap_name = \"boot.example.internal\"\nbroker_pattern = \"b-{node_id}.example.internal\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kgate"))
        .args(["check-config", "--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plaintext carries no server name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_routes_through_dial_mapping() {
    let pki = pki(&[BOOT, "*.kafka.example.internal"]);
    let cluster = MockCluster::start().await;
    let port = free_port_base(1);
    let mut c = config(&cluster, pki.path(), port);
    // PrivateLink: the bootstrap's name does not resolve; the mapping
    // dials broker 1's real address, and broker 2 too.
    let fake = HostPort::new("broker-one.invalid", 9092);
    c.bootstrap = vec![fake.clone()];
    c.dial.push(kgate::config::DialMapping {
        broker: fake,
        connect: hp(cluster.addr(1)),
    });
    let kg = start_with(c).await;
    let mut boot = tls(pki.path(), port, BOOT).await.unwrap();
    let m: MetadataResponse = tcall(
        &mut boot,
        ApiKey::Metadata,
        12,
        1,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    assert_eq!(m.brokers.len(), 3);
    for b in &m.brokers {
        assert_eq!(pattern_name("metadata", &b.host, b.port, port), b.node_id.0);
    }
    let leader = m.topics[0].partitions[0].leader_id.0;
    let partition = m.topics[0].partitions[0].partition_index;
    let mut s = tls(pki.path(), port, &format!("b-{leader}{SUFFIX}"))
        .await
        .unwrap();
    let r: ProduceResponse = tcall(&mut s, ApiKey::Produce, 11, 2, &produce(partition)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    kg.stop();
}
