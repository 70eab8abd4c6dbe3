//! The policy and Fetch by topic id (issue 12): an id kgate has never
//! seen in a Metadata response is not let through. kgate answers
//! UNKNOWN_TOPIC_ID and asks the cluster for its topics itself, so the
//! client's retry is decided by the topic's name. Here the client sends no
//! Metadata through kgate at all: only kgate's own request can teach it
//! the id.

mod common;

use common::mock_cluster::{MockCluster, TOPIC, TOPIC_ID};
use common::*;
use kafka_protocol::messages::*;
use kgate::config::Config;
use std::time::Duration;
use tokio::net::TcpStream;

fn policy(text: &str) -> std::sync::Arc<kgate::config::policy::PolicyConfig> {
    let f: kgate::config::policy::FilePolicy = toml::from_str(text).expect("policy parses");
    kgate::config::policy::policy(Some(f)).unwrap().expect("a policy")
}

fn fetch_by_id(id: u128) -> FetchRequest {
    let p = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(0)
        .with_partition_max_bytes(1 << 20);
    FetchRequest::default()
        .with_max_wait_ms(10)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic_id(uuid::Uuid::from_u128(id))
            .with_partitions(vec![p])])
}

async fn fetch_error(s: &mut TcpStream, corr: i32, id: u128) -> i16 {
    let r: FetchResponse = call(s, ApiKey::Fetch, 13, corr, &fetch_by_id(id)).await;
    r.responses[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_id_makes_kgate_ask_the_cluster_itself() {
    let cluster = MockCluster::start().await;
    let mut c = Config::with_bootstrap(vec![hp(cluster.addr(1))]);
    c.port_base = free_port_base(4);
    c.admin_listen = None;
    // Connections without a principal may read `orders` only.
    c.policy = Some(policy(&format!(
        "[default]\ntopics = [{{ name = \"{TOPIC}\", ops = [\"read\", \"describe\"] }}]\n"
    )));
    let kg = start_with(c).await;
    // The bootstrap server is broker 1, which leads partition 0.
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    assert_eq!(
        fetch_error(&mut s, 1, TOPIC_ID).await,
        100,
        "unknown id: UNKNOWN_TOPIC_ID, not forwarded"
    );
    // kgate learns the id by itself; the client just retries.
    let mut got = 100;
    for corr in 2..200 {
        got = fetch_error(&mut s, corr, TOPIC_ID).await;
        if got != 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        got, 0,
        "after kgate's own Metadata request the id names `orders`, which may be read"
    );
    // An id the cluster does not have stays unknown, never let through.
    assert_eq!(fetch_error(&mut s, 300, 0xdead_beef).await, 100);
}
