//! The SNI port through a cut-over (issue 14): a broker name keeps its
//! meaning, broker N of whichever cluster is current. Before the switch
//! `b-1` reaches cluster A's broker 1; after it, a new connection to the
//! same name reaches cluster B's broker 1 (the name is refreshed from the
//! new cluster before it is dialled); after the rollback, A's again.

mod common;

use bytes::Bytes;
use common::mock_cluster::{MockCluster, TOPIC};
use common::sni::*;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kgate::config::Config;

fn produce() -> ProduceRequest {
    let pd = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from_static(b"sni-cutover")));
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![pd])])
}

fn log_len(c: &MockCluster) -> usize {
    c.state.lock().unwrap().log.get(&0).map_or(0, Vec::len)
}

/// Produces to partition 0 (leader: broker 1) by the name `b-1`.
async fn produce_by_name(pki: &std::path::Path, port: u16, corr: i32) -> i16 {
    let mut s = tls(pki, port, &format!("b-1{SUFFIX}"))
        .await
        .expect("b-1 accepted");
    let r: ProduceResponse = tcall(&mut s, ApiKey::Produce, 11, corr, &produce()).await;
    r.responses[0].partition_responses[0].error_code
}

fn pointed_at(base: &Config, c: &MockCluster) -> Config {
    let mut n = base.clone();
    n.bootstrap = vec![hp(c.addr(1))];
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_name_follows_the_cut_over_and_the_rollback() {
    let pki = pki(&[BOOT, "*.kafka.example.internal"]);
    let a = MockCluster::start().await;
    let b = MockCluster::start().await;
    let port = free_port_base(1);
    let k = start_with(config(&a, pki.path(), port)).await;
    let base = (*k.shared.config).clone();
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
    assert_eq!(m.brokers.len(), 3);
    assert_eq!(produce_by_name(pki.path(), port, 2).await, 0);
    assert_eq!((log_len(&a), log_len(&b)), (1, 0));

    k.shared.reload(pointed_at(&base, &b)).await;
    assert_eq!(produce_by_name(pki.path(), port, 3).await, 0);
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (1, 1),
        "b-1 reached cluster B after the switch"
    );

    k.shared.reload(pointed_at(&base, &a)).await;
    assert_eq!(produce_by_name(pki.path(), port, 4).await, 0);
    assert_eq!(
        (log_len(&a), log_len(&b)),
        (2, 1),
        "and cluster A after the rollback"
    );
}
