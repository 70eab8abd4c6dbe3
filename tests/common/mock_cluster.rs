//! A mock Kafka cluster for layouts no single real broker shows: three
//! brokers (ids 1–3), partition leaders spread over them, the group
//! coordinator on broker 2, leader moves answered with KIP-951
//! `node_endpoints`, and brokers that come back at a new address.
//! Requests are decoded and responses encoded by kafka-protocol.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, StrBytes};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const TOPIC: &str = "orders";
pub const TOPIC_ID: u128 = 0x0123_4567_89ab_cdef;
pub const PARTITIONS: i32 = 6;
pub const COORDINATOR: i32 = 2;
const NOT_LEADER: i16 = 6;

#[derive(Default)]
pub struct State {
    pub addrs: HashMap<i32, SocketAddr>,
    pub leaders: HashMap<i32, i32>,
    pub log: HashMap<i32, Vec<Bytes>>,
}

pub struct MockCluster {
    pub state: Arc<Mutex<State>>,
    tasks: HashMap<i32, JoinHandle<()>>,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

impl MockCluster {
    pub async fn start() -> Self {
        let mut c = MockCluster {
            state: Arc::default(),
            tasks: HashMap::new(),
        };
        for p in 0..PARTITIONS {
            c.state.lock().unwrap().leaders.insert(p, 1 + p % 3);
        }
        for id in 1..=3 {
            c.start_broker(id).await;
        }
        c
    }

    pub fn addr(&self, id: i32) -> SocketAddr {
        self.state.lock().unwrap().addrs[&id]
    }

    /// (Re)starts broker `id` on a new port.
    pub async fn start_broker(&mut self, id: i32) {
        if let Some(t) = self.tasks.remove(&id) {
            t.abort();
            let _ = t.await;
        }
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.state
            .lock()
            .unwrap()
            .addrs
            .insert(id, l.local_addr().unwrap());
        let state = self.state.clone();
        self.tasks.insert(
            id,
            tokio::spawn(async move {
                let mut conns = tokio::task::JoinSet::new();
                while let Ok((sock, _)) = l.accept().await {
                    conns.spawn(serve_conn(id, sock, state.clone()));
                }
            }),
        );
    }

    pub fn move_leader(&self, partition: i32, to: i32) {
        self.state.lock().unwrap().leaders.insert(partition, to);
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.abort();
        }
    }
}

async fn serve_conn(me: i32, mut sock: TcpStream, state: Arc<Mutex<State>>) {
    while let Some(frame) = super::read_frame(&mut sock).await {
        let mut body = frame.slice(4..);
        let Ok(h) = decode_request_header_from_buffer(&mut body) else {
            return;
        };
        let Ok(key) = ApiKey::try_from(h.request_api_key) else {
            return;
        };
        let v = h.request_api_version;
        let corr = h.correlation_id;
        let resp = {
            let st = state.lock().unwrap();
            respond(me, key, v, corr, body, st)
        };
        let Some(resp) = resp else { continue };
        if sock.write_all(&resp).await.is_err() {
            return;
        }
    }
}

fn endpoint_of(st: &State, id: i32) -> (StrBytes, i32) {
    let a = st.addrs[&id];
    (s(&a.ip().to_string()), a.port() as i32)
}

fn respond(
    me: i32,
    key: ApiKey,
    v: i16,
    corr: i32,
    mut body: Bytes,
    mut st: std::sync::MutexGuard<'_, State>,
) -> Option<Bytes> {
    use super::response_frame as frame;
    Some(match key {
        ApiKey::ApiVersions => {
            let av = |k: ApiKey, lo: i16, hi: i16| {
                api_versions_response::ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(lo)
                    .with_max_version(hi)
            };
            let r = ApiVersionsResponse::default().with_api_keys(vec![
                av(ApiKey::Produce, 3, 12),
                av(ApiKey::Fetch, 4, 17),
                av(ApiKey::Metadata, 0, 12),
                av(ApiKey::FindCoordinator, 0, 6),
                av(ApiKey::ApiVersions, 0, 4),
                av(ApiKey::DescribeCluster, 0, 1),
            ]);
            frame(key, v, corr, &r)
        }
        ApiKey::Metadata => {
            let mut ids: Vec<i32> = st.addrs.keys().copied().collect();
            ids.sort();
            let brokers = ids
                .iter()
                .map(|&id| {
                    let (h, p) = endpoint_of(&st, id);
                    metadata_response::MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(h)
                        .with_port(p)
                })
                .collect();
            let parts = (0..PARTITIONS)
                .map(|p| {
                    metadata_response::MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(st.leaders[&p]))
                        .with_replica_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
                        .with_isr_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
                })
                .collect();
            let topic = metadata_response::MetadataResponseTopic::default()
                .with_name(Some(TopicName(s(TOPIC))))
                .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
                .with_partitions(parts);
            let r = MetadataResponse::default()
                .with_brokers(brokers)
                .with_cluster_id(Some(s("mock")))
                .with_controller_id(BrokerId(1))
                .with_topics(vec![topic]);
            frame(key, v, corr, &r)
        }
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::decode(&mut body, v).ok()?;
            let (h, p) = endpoint_of(&st, COORDINATOR);
            let r = if v <= 3 {
                FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(COORDINATOR))
                    .with_host(h)
                    .with_port(p)
            } else {
                let cs = req
                    .coordinator_keys
                    .iter()
                    .map(|k| {
                        find_coordinator_response::Coordinator::default()
                            .with_key(k.clone())
                            .with_node_id(BrokerId(COORDINATOR))
                            .with_host(h.clone())
                            .with_port(p)
                    })
                    .collect();
                FindCoordinatorResponse::default().with_coordinators(cs)
            };
            frame(key, v, corr, &r)
        }
        ApiKey::DescribeCluster => {
            let brokers = (1..=3)
                .map(|id| {
                    let (h, p) = endpoint_of(&st, id);
                    describe_cluster_response::DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(h)
                        .with_port(p)
                })
                .collect();
            let r = DescribeClusterResponse::default()
                .with_cluster_id(s("mock"))
                .with_controller_id(BrokerId(1))
                .with_brokers(brokers);
            frame(key, v, corr, &r)
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut body, v).ok()?;
            let mut moved = Vec::new();
            let mut topics = Vec::new();
            for t in req.topic_data {
                let mut parts = Vec::new();
                for p in t.partition_data {
                    let leader = st.leaders[&p.index];
                    let mut r = produce_response::PartitionProduceResponse::default().with_index(p.index);
                    if leader == me {
                        let log = st.log.entry(p.index).or_default();
                        r.base_offset = log.len() as i64;
                        log.push(p.records.unwrap_or_default());
                    } else {
                        r.error_code = NOT_LEADER;
                        r.current_leader = produce_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(1);
                        moved.push(leader);
                    }
                    parts.push(r);
                }
                topics.push(
                    produce_response::TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_partition_responses(parts),
                );
            }
            if req.acks == 0 {
                return None;
            }
            let eps = if v >= 10 {
                moved
                    .iter()
                    .map(|&id| {
                        let (h, p) = endpoint_of(&st, id);
                        produce_response::NodeEndpoint::default()
                            .with_node_id(BrokerId(id))
                            .with_host(h)
                            .with_port(p)
                    })
                    .collect()
            } else {
                vec![]
            };
            frame(
                key,
                v,
                corr,
                &ProduceResponse::default()
                    .with_responses(topics)
                    .with_node_endpoints(eps),
            )
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut body, v).ok()?;
            let mut moved = Vec::new();
            let mut topics = Vec::new();
            for t in req.topics {
                let mut parts = Vec::new();
                for p in t.partitions {
                    let leader = st.leaders[&p.partition];
                    let mut r = fetch_response::PartitionData::default().with_partition_index(p.partition);
                    if leader == me {
                        let log = st.log.entry(p.partition).or_default();
                        let mut out = BytesMut::new();
                        for b in log.iter().skip(p.fetch_offset.max(0) as usize) {
                            out.extend_from_slice(b);
                        }
                        r.high_watermark = log.len() as i64;
                        r.records = Some(out.freeze());
                    } else {
                        r.error_code = NOT_LEADER;
                        r.current_leader = fetch_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(1);
                        moved.push(leader);
                    }
                    parts.push(r);
                }
                topics.push(
                    fetch_response::FetchableTopicResponse::default()
                        .with_topic_id(t.topic_id)
                        .with_topic(t.topic)
                        .with_partitions(parts),
                );
            }
            let eps = if v >= 16 {
                moved
                    .iter()
                    .map(|&id| {
                        let (h, p) = endpoint_of(&st, id);
                        fetch_response::NodeEndpoint::default()
                            .with_node_id(BrokerId(id))
                            .with_host(h)
                            .with_port(p)
                    })
                    .collect()
            } else {
                vec![]
            };
            frame(
                key,
                v,
                corr,
                &FetchResponse::default()
                    .with_responses(topics)
                    .with_node_endpoints(eps),
            )
        }
        _ => return None,
    })
}
