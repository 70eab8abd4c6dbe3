//! Cut-over (issue 14): kgate is pointed at another cluster without
//! touching clients. Two mock clusters with the same node ids (1–3); after
//! the switch, existing connections finish what is in flight and close,
//! new ones reach the new cluster through the same listener ports, and a
//! rollback is the same operation in reverse.

mod common;

use bytes::Bytes;
use common::mock_cluster::{MockCluster, TOPIC};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kgate::config::Config;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn listeners(port: u16, corr: i32) -> BTreeSet<(String, i32, i32)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let m: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        corr,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    m.brokers
        .iter()
        .map(|b| (b.host.to_string(), b.port, b.node_id.0))
        .collect()
}

/// Produces one record batch to partition 0 (leader: broker 1) through
/// the listener at `port`.
async fn produce(port: i32, corr: i32, data: &'static [u8]) -> i16 {
    let mut s = TcpStream::connect(("127.0.0.1", port as u16)).await.unwrap();
    produce_on(&mut s, corr, data).await
}

async fn produce_on(s: &mut TcpStream, corr: i32, data: &'static [u8]) -> i16 {
    let pd = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from_static(data)));
    let td = produce_request::TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partition_data(vec![pd]);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![td]);
    let r: ProduceResponse = call(s, ApiKey::Produce, 11, corr, &req).await;
    r.responses[0].partition_responses[0].error_code
}

fn log_len(c: &MockCluster) -> usize {
    c.state.lock().unwrap().log.get(&0).map_or(0, Vec::len)
}

fn pointed_at(base: &Config, c: &MockCluster) -> Config {
    let mut n = base.clone();
    n.bootstrap = vec![hp(c.addr(1))];
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_drains_old_connections_keeps_ports_and_rolls_back() {
    let a = MockCluster::start().await;
    let b = MockCluster::start().await;
    let k = start_kgate(vec![hp(a.addr(1))], 4).await;
    let base = (*k.shared.config).clone();
    let boot = k.bootstrap.port();

    let before = listeners(boot, 1).await;
    assert_eq!(before.len(), 3);
    let b1 = before.iter().find(|(_, _, id)| *id == 1).unwrap().1;
    assert_eq!(produce(b1, 2, b"on-a").await, 0);
    assert_eq!((log_len(&a), log_len(&b)), (1, 0));

    // A connection that is open and idle at the switch is closed by kgate.
    let mut idle = TcpStream::connect(("127.0.0.1", b1 as u16)).await.unwrap();
    let _: MetadataResponse = call(
        &mut idle,
        ApiKey::Metadata,
        12,
        3,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    k.shared.reload(pointed_at(&base, &b)).await;
    assert!(
        closed(&mut idle).await,
        "the old connection closes at a request boundary"
    );

    // Same listener ports, now standing for cluster B's brokers.
    let after = listeners(boot, 4).await;
    assert_eq!(after, before, "ports stay stable across clusters (by node id)");
    assert_eq!(produce(b1, 5, b"on-b").await, 0);
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (1, 1),
        "new connections reach cluster B"
    );

    let snap = k.shared.connector.clusters.snapshot();
    let current: Vec<_> = snap.iter().filter(|c| c.3).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].0, hp(b.addr(1)).to_string());

    // Rollback: the same operation in reverse.
    k.shared.reload(pointed_at(&base, &a)).await;
    assert_eq!(listeners(boot, 6).await, before);
    assert_eq!(produce(b1, 7, b"back-on-a").await, 0);
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (2, 1),
        "after the rollback, cluster A again"
    );
    assert_eq!(k.shared.connector.clusters.current().generation, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_the_switch_is_answered_before_the_close() {
    // A front that answers each request 300 ms late.
    let slow = serve(|mut sock: TcpStream| async move {
        loop {
            let mut len = [0u8; 4];
            if sock.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut body = vec![0u8; (i32::from_be_bytes(len).clamp(8, 1 << 20)) as usize];
            if sock.read_exact(&mut body).await.is_err() {
                return;
            }
            let corr = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = response_frame(ApiKey::Heartbeat, 1, corr, &HeartbeatResponse::default());
            if sock.write_all(&r).await.is_err() {
                return;
            }
        }
    })
    .await;
    let other = MockCluster::start().await;
    let k = start_kgate(vec![hp(slow)], 4).await;
    let base = (*k.shared.config).clone();
    let mut c = TcpStream::connect(k.bootstrap).await.unwrap();
    let hb = |corr| {
        let req = HeartbeatRequest::default()
            .with_group_id(StrBytes::from_static_str("g").into())
            .with_member_id(StrBytes::from_static_str("m"));
        request_frame(ApiKey::Heartbeat, 1, corr, &req)
    };
    c.write_all(&hb(1)).await.unwrap();
    let f = read_frame(&mut c).await.expect("first answer");
    assert_eq!(
        decode_response::<HeartbeatResponse>(ApiKey::Heartbeat, 1, &f).0,
        1
    );
    c.write_all(&hb(2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    k.shared.reload(pointed_at(&base, &other)).await;
    let f = read_frame(&mut c)
        .await
        .expect("the in-flight request is answered");
    assert_eq!(
        decode_response::<HeartbeatResponse>(ApiKey::Heartbeat, 1, &f).0,
        2
    );
    assert!(closed(&mut c).await, "then the connection closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hold_keeps_new_connections_waiting_until_released() {
    let a = MockCluster::start().await;
    let b = MockCluster::start().await;
    let k = start_kgate(vec![hp(a.addr(1))], 4).await;
    let base = (*k.shared.config).clone();
    let before = listeners(k.bootstrap.port(), 1).await;
    let b1 = before.iter().find(|(_, _, id)| *id == 1).unwrap().1;

    let mut held = pointed_at(&base, &b);
    held.upstream_hold = true;
    k.shared.reload(held.clone()).await;
    assert!(k.shared.connector.clusters.held());
    let waiting = tokio::spawn(produce(b1, 2, b"after-the-sync"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the client waits while the hold is on");
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (0, 0),
        "nothing reaches either cluster"
    );

    held.upstream_hold = false;
    k.shared.reload(held).await;
    assert_eq!(
        waiting.await.unwrap(),
        0,
        "released: the waiting request completes"
    );
    assert_eq!((log_len(&a), log_len(&b)), (0, 1), "on the new cluster");
}

async fn metadata_on(s: &mut TcpStream, corr: i32) -> usize {
    let m: MetadataResponse = call(
        s,
        ApiKey::Metadata,
        12,
        corr,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    m.brokers.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_first_moves_producing_connections_before_the_rest() {
    let a = MockCluster::start().await;
    let b = MockCluster::start().await;
    let k = start_kgate(vec![hp(a.addr(1))], 4).await;
    let base = (*k.shared.config).clone();
    let before = listeners(k.bootstrap.port(), 1).await;
    let b1 = before.iter().find(|(_, _, id)| *id == 1).unwrap().1 as u16;

    let mut producer = TcpStream::connect(("127.0.0.1", b1)).await.unwrap();
    assert_eq!(produce_on(&mut producer, 2, b"p-on-a").await, 0);
    let mut consumer = TcpStream::connect(("127.0.0.1", b1)).await.unwrap();
    assert_eq!(metadata_on(&mut consumer, 3).await, 3);
    let mut later = TcpStream::connect(("127.0.0.1", b1)).await.unwrap();
    assert_eq!(metadata_on(&mut later, 4).await, 3);

    let mut next = pointed_at(&base, &b);
    next.cutover_order = kgate::config::CutoverOrder::ProducersFirst {
        consumer_delay: Duration::from_secs(6),
    };
    k.shared.reload(next).await;
    assert!(
        closed(&mut producer).await,
        "the producing connection moves at once"
    );

    // The consumer is still served by cluster A after the producer left.
    assert_eq!(metadata_on(&mut consumer, 5).await, 3);
    // Producing on it now makes it a producer: this last request still
    // lands on A, then it moves too.
    assert_eq!(produce_on(&mut consumer, 6, b"c-on-a").await, 0);
    assert_eq!((log_len(&a), log_len(&b)), (2, 0), "both records on cluster A");
    assert!(
        closed(&mut consumer).await,
        "a connection that produced moves at once"
    );

    // The connection that never produced is still on A, and follows
    // after the delay.
    assert_eq!(metadata_on(&mut later, 8).await, 3);
    let mut byte = [0u8; 1];
    let end = tokio::time::timeout(Duration::from_secs(60), later.read(&mut byte)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "the rest follow after cutover_consumer_delay_ms: {end:?}"
    );
    assert_eq!(produce(b1 as i32, 7, b"on-b").await, 0);
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (2, 1),
        "new connections reach cluster B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_listener_with_a_node_id_follows_the_cut_over_and_the_rollback() {
    let a = MockCluster::start().await;
    let b = MockCluster::start().await;
    let mut c = Config::with_bootstrap(vec![hp(a.addr(1))]);
    c.port_base = free_port_base(4);
    c.admin_listen = None;
    let fixed = free_port_base(1);
    c.static_listeners.push(kgate::config::StaticListener {
        upstream: hp(a.addr(1)),
        node_id: Some(1),
        bind: kgate::config::HostPort::new("127.0.0.1", fixed),
        advertised: kgate::config::HostPort::new("127.0.0.1", fixed),
        tls: None,
        proxy_protocol: None,
    });
    let k = start_with(c).await;
    let base = (*k.shared.config).clone();
    let boot = k.bootstrap.port();
    let before = listeners(boot, 1).await;
    assert!(
        before.contains(&("127.0.0.1".into(), fixed as i32, 1)),
        "{before:?}"
    );
    assert_eq!(produce(fixed as i32, 2, b"on-a").await, 0);
    assert_eq!((log_len(&a), log_len(&b)), (1, 0));

    k.shared.reload(pointed_at(&base, &b)).await;
    assert_eq!(
        listeners(boot, 3).await,
        before,
        "the static port stands for broker 1 of B now"
    );
    assert_eq!(produce(fixed as i32, 4, b"on-b").await, 0);
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (1, 1),
        "the static listener reached cluster B"
    );

    k.shared.reload(pointed_at(&base, &a)).await;
    assert_eq!(listeners(boot, 5).await, before);
    assert_eq!(produce(fixed as i32, 6, b"back-on-a").await, 0);
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (2, 1),
        "and back to A after the rollback"
    );
}
