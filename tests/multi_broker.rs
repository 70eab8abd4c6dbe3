//! Three brokers (ids 1–3) behind kgate: every address in every response
//! the client receives is a kgate listener, produce and consume work on
//! every leader, a leader move's KIP-951 node_endpoints are rewritten, and
//! a broker that comes back at a new address is re-pointed.

mod common;

use bytes::Bytes;
use common::mock_cluster::{MockCluster, COORDINATOR, PARTITIONS, TOPIC, TOPIC_ID};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::HashSet;
use tokio::net::TcpStream;

struct Client {
    kgate_listeners: HashSet<(String, i32)>,
    mock_ports: Vec<i32>,
    seen: Vec<(String, i32)>,
    corr: i32,
}

impl Client {
    /// Records an address the client received; it must be a kgate listener.
    fn saw(&mut self, what: &str, host: &StrBytes, port: i32) {
        let a = (host.to_string(), port);
        assert!(
            self.kgate_listeners.contains(&a),
            "{what}: {a:?} is not a kgate listener"
        );
        assert!(!self.mock_ports.contains(&port), "{what}: upstream port leaked");
        self.seen.push(a);
    }

    async fn connect(&self, port: i32) -> TcpStream {
        TcpStream::connect(("127.0.0.1", port as u16)).await.unwrap()
    }

    fn next(&mut self) -> i32 {
        self.corr += 1;
        self.corr
    }

    async fn metadata(&mut self, s: &mut TcpStream, v: i16) -> MetadataResponse {
        let c = self.next();
        let m: MetadataResponse = call(
            s,
            ApiKey::Metadata,
            v,
            c,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
        for b in &m.brokers {
            self.saw("metadata", &b.host, b.port);
        }
        m
    }

    async fn produce(&mut self, port: i32, partition: i32, data: &'static [u8]) -> ProduceResponse {
        let mut s = self.connect(port).await;
        let pd = produce_request::PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(Bytes::from_static(data)));
        let td = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![pd]);
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![td]);
        let c = self.next();
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 11, c, &req).await;
        for e in &r.node_endpoints {
            self.saw("produce node_endpoints", &e.host, e.port);
        }
        r
    }

    async fn fetch(&mut self, port: i32, partition: i32) -> FetchResponse {
        let mut s = self.connect(port).await;
        let fp = fetch_request::FetchPartition::default()
            .with_partition(partition)
            .with_partition_max_bytes(1 << 20);
        let ft = fetch_request::FetchTopic::default()
            .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
            .with_partitions(vec![fp]);
        let req = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![ft]);
        let c = self.next();
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 16, c, &req).await;
        for e in &r.node_endpoints {
            self.saw("fetch node_endpoints", &e.host, e.port);
        }
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_behind_kgate() {
    let mut cluster = MockCluster::start().await;
    let kg = start_kgate(vec![hp(cluster.addr(1))], 8).await;
    let base = kg.shared.config.port_base as i32;
    let listener = |id: i32| base + 1 + id;
    let mut cl = Client {
        kgate_listeners: (1..=3)
            .map(|id| ("127.0.0.1".to_string(), listener(id)))
            .collect(),
        mock_ports: (1..=3).map(|id| cluster.addr(id).port() as i32).collect(),
        seen: Vec::new(),
        corr: 0,
    };

    // Metadata through the bootstrap listener, old and new versions.
    let mut boot = TcpStream::connect(kg.bootstrap).await.unwrap();
    for v in [0, 1, 5, 9, 12] {
        let m = cl.metadata(&mut boot, v).await;
        assert_eq!(m.brokers.len(), 3);
        let leaders: HashSet<i32> = m.topics[0].partitions.iter().map(|p| p.leader_id.0).collect();
        assert_eq!(
            leaders,
            HashSet::from([1, 2, 3]),
            "leaders spread over all brokers"
        );
    }

    // The group coordinator lives on broker 2, single and batched.
    for v in [0, 3, 4, 6] {
        let req = if v <= 3 {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g1"))
        } else {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![
                StrBytes::from_static_str("g1"),
                StrBytes::from_static_str("g2"),
            ])
        };
        let c = cl.next();
        let r: FindCoordinatorResponse = call(&mut boot, ApiKey::FindCoordinator, v, c, &req).await;
        if v <= 3 {
            assert_eq!(r.node_id.0, COORDINATOR);
            cl.saw("coordinator", &r.host, r.port);
            assert_eq!(r.port, listener(COORDINATOR));
        } else {
            assert_eq!(r.coordinators.len(), 2);
            for co in &r.coordinators {
                cl.saw("coordinator", &co.host, co.port);
                assert_eq!(co.port, listener(COORDINATOR));
            }
        }
    }
    let c = cl.next();
    let dc: DescribeClusterResponse = call(
        &mut boot,
        ApiKey::DescribeCluster,
        1,
        c,
        &DescribeClusterRequest::default(),
    )
    .await;
    for b in &dc.brokers {
        cl.saw("describe cluster", &b.host, b.port);
    }

    // Produce and consume on every partition through its leader's listener.
    let md = cl.metadata(&mut boot, 12).await;
    for p in &md.topics[0].partitions {
        let leader = md.brokers.iter().find(|b| b.node_id == p.leader_id).unwrap();
        let r = cl.produce(leader.port, p.partition_index, b"record-batch").await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        let f = cl.fetch(leader.port, p.partition_index).await;
        let pd = &f.responses[0].partitions[0];
        assert_eq!(pd.error_code, 0);
        assert_eq!(pd.records.as_deref(), Some(&b"record-batch"[..]));
    }
    assert_eq!(md.topics[0].partitions.len() as i32, PARTITIONS);

    // Leader move: partition 0 goes from broker 1 to broker 3. The old
    // leader answers with KIP-951 node_endpoints naming broker 3.
    cluster.move_leader(0, 3);
    let r = cl.produce(listener(1), 0, b"after-move").await;
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!(pr.error_code, 6);
    assert_eq!(pr.current_leader.leader_id.0, 3);
    assert_eq!(r.node_endpoints.len(), 1);
    assert_eq!(
        (r.node_endpoints[0].node_id.0, r.node_endpoints[0].port),
        (3, listener(3))
    );
    let f = cl.fetch(listener(1), 0).await;
    assert_eq!(f.node_endpoints[0].port, listener(3));
    // The client follows node_endpoints without a metadata refresh.
    let r = cl.produce(r.node_endpoints[0].port, 0, b"after-move").await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let f = cl.fetch(listener(3), 0).await;
    assert!(f.responses[0].partitions[0]
        .records
        .as_deref()
        .unwrap()
        .ends_with(b"after-move"));

    // Broker 3 comes back at a new address; its listener is re-pointed.
    let old = cluster.addr(3);
    cluster.start_broker(3).await;
    assert_ne!(cluster.addr(3), old);
    cl.mock_ports.push(cluster.addr(3).port() as i32);
    let m = cl.metadata(&mut boot, 12).await;
    let b3 = m.brokers.iter().find(|b| b.node_id.0 == 3).unwrap();
    assert_eq!(b3.port, listener(3), "same listener after the move");
    let slot = kg.shared.registry.slot(3).unwrap();
    assert_eq!(slot.upstream().port, cluster.addr(3).port());
    let r = cl.produce(listener(3), 0, b"new-address").await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let f = cl.fetch(listener(3), 0).await;
    assert!(f.responses[0].partitions[0]
        .records
        .as_deref()
        .unwrap()
        .ends_with(b"new-address"));

    assert!(cl.seen.len() > 20, "addresses checked: {}", cl.seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_that_overflow_the_port_space_are_left_out_with_a_clear_error() {
    // A broker with node id 70000 would need port base + 70001.
    let upstream = serve(|mut sock: TcpStream| async move {
        use tokio::io::AsyncWriteExt;
        while let Some(f) = read_frame(&mut sock).await {
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            let b = metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(70000))
                .with_host(StrBytes::from_static_str("b-70000"))
                .with_port(9092);
            let m = MetadataResponse::default().with_brokers(vec![b]);
            let _ = sock
                .write_all(&response_frame(ApiKey::Metadata, 12, corr, &m))
                .await;
        }
    })
    .await;
    let kg = start_kgate(vec![hp(upstream)], 2).await;
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    // The unmappable broker is left out; the response and the connection
    // are fine (its partitions look leaderless to the client).
    for corr in 1..=2 {
        let r: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, corr, &MetadataRequest::default()).await;
        assert!(r.brokers.is_empty(), "{:?}", r.brokers);
    }
    use kgate::rewrite::BrokerMapper;
    let e = kg.shared.registry.advertise(70000, "b-70000", 9092).unwrap_err();
    assert!(
        e.0.contains("static listener") && e.0.contains("port_range"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_listeners_port_ranges_and_dial_mapping() {
    let cluster = MockCluster::start().await;
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(cluster.addr(1))]);
    c.port_base = free_port_base(1);
    c.admin_listen = None;
    let range_start = free_port_base(6);
    c.port_range = Some((range_start, range_start + 5));
    let static_port = free_port_base(1);
    // Broker 2 has a static listener; the others get ports from the range.
    c.static_listeners.push(kgate::config::StaticListener {
        upstream: hp(cluster.addr(2)),
        node_id: None,
        bind: kgate::config::HostPort::new("127.0.0.1", static_port),
        advertised: kgate::config::HostPort::new("localhost", static_port),
        tls: None,
        proxy_protocol: None,
    });
    // Dial mapping: the bootstrap name is not reachable; the mapping is.
    let fake = kgate::config::HostPort::new("broker-one.invalid", 9092);
    c.bootstrap = vec![fake.clone()];
    c.dial.push(kgate::config::DialMapping {
        broker: fake,
        connect: hp(cluster.addr(1)),
    });
    let kg = start_with(c).await;
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    let m: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, 1, &MetadataRequest::default()).await;
    let by_id = |id: i32| m.brokers.iter().find(|b| b.node_id.0 == id).unwrap();
    assert_eq!(
        (by_id(2).host.as_str(), by_id(2).port),
        ("localhost", static_port as i32)
    );
    for id in [1, 3] {
        let p = by_id(id).port as u16;
        assert!((range_start..=range_start + 5).contains(&p), "node {id} on {p}");
        assert_eq!(by_id(id).host.as_str(), "127.0.0.1");
    }
    // Each listener reaches its broker: produce through all three.
    for (id, part) in [(1, 0), (2, 1), (3, 2)] {
        let mut b = TcpStream::connect(("127.0.0.1", by_id(id).port as u16))
            .await
            .unwrap();
        let pd = produce_request::PartitionProduceData::default()
            .with_index(part)
            .with_records(Some(Bytes::from_static(b"x")));
        let td = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![pd]);
        let r: ProduceResponse = call(
            &mut b,
            ApiKey::Produce,
            9,
            2,
            &ProduceRequest::default().with_acks(1).with_topic_data(vec![td]),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "node {id}");
    }
}
