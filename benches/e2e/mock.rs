//! A fast mock broker for the benchmark: answers Produce at once and
//! serves Fetch from a preloaded record blob, with optional TLS. Responses
//! are pre-encoded by kafka-protocol; only the correlation id is patched.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub const PRODUCE_V: i16 = 11;
pub const FETCH_V: i16 = 17;
pub const TOPIC_ID: u128 = 42;

pub fn frame<M: Encodable>(key: ApiKey, v: i16, m: &M, request: bool) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    if request {
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("bench")))
            .encode(&mut b, key.request_header_version(v))
            .unwrap();
    } else {
        ResponseHeader::default()
            .encode(&mut b, key.response_header_version(v))
            .unwrap();
    }
    m.encode(&mut b, v).unwrap();
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b.freeze()
}

pub struct Responses {
    produce: Bytes,
    fetch: Bytes,
    metadata: Bytes,
    /// Metadata v12 naming topic `bench` and its id (for requests v10+):
    /// how kgate's policy learns the id Fetch v17 names.
    metadata12: Bytes,
    api_versions: Bytes,
}

impl Responses {
    pub fn new(records: Bytes, me: SocketAddr) -> Self {
        let part = produce_response::PartitionProduceResponse::default().with_index(0);
        let topic = produce_response::TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_responses(vec![part]);
        let produce = frame(
            ApiKey::Produce,
            PRODUCE_V,
            &ProduceResponse::default().with_responses(vec![topic]),
            false,
        );
        let p = fetch_response::PartitionData::default()
            .with_high_watermark(1 << 40)
            .with_records(Some(records));
        let t = fetch_response::FetchableTopicResponse::default()
            .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
            .with_partitions(vec![p]);
        let fetch = frame(
            ApiKey::Fetch,
            FETCH_V,
            &FetchResponse::default().with_responses(vec![t]),
            false,
        );
        let b = metadata_response::MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_string(me.ip().to_string()))
            .with_port(me.port() as i32);
        let metadata = frame(
            ApiKey::Metadata,
            4,
            &MetadataResponse::default().with_brokers(vec![b]),
            false,
        );
        let t = metadata_response::MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("bench"))))
            .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
            .with_partitions(vec![metadata_response::MetadataResponsePartition::default()]);
        let metadata12 = frame(
            ApiKey::Metadata,
            12,
            &MetadataResponse::default()
                .with_brokers(vec![metadata_response::MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_string(me.ip().to_string()))
                    .with_port(me.port() as i32)])
                .with_topics(vec![t]),
            false,
        );
        let av = |k: ApiKey| {
            api_versions_response::ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(0)
                .with_max_version(k.valid_versions().max)
        };
        let api_versions = frame(
            ApiKey::ApiVersions,
            0,
            &ApiVersionsResponse::default().with_api_keys(vec![
                av(ApiKey::Produce),
                av(ApiKey::Fetch),
                av(ApiKey::Metadata),
            ]),
            false,
        );
        Responses {
            produce,
            fetch,
            metadata,
            metadata12,
            api_versions,
        }
    }
}

/// Serves one connection: read frame, answer with the canned response.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(s: S, r: Arc<Responses>) {
    let (mut rd, mut wr) = tokio::io::split(s);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut out = BytesMut::with_capacity(256 * 1024);
    loop {
        // Answer every complete request in the buffer with one write.
        loop {
            if buf.len() < 4 {
                break;
            }
            let n = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize + 4;
            if buf.len() < n {
                buf.reserve(n - buf.len());
                break;
            }
            let req = buf.split_to(n);
            let key = i16::from_be_bytes([req[4], req[5]]);
            let tpl = match key {
                0 => &r.produce,
                1 => &r.fetch,
                3 if i16::from_be_bytes([req[6], req[7]]) >= 10 => &r.metadata12,
                3 => &r.metadata,
                18 => &r.api_versions,
                _ => continue,
            };
            let start = out.len();
            out.extend_from_slice(tpl);
            out[start + 4..start + 8].copy_from_slice(&req[8..12]);
        }
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

pub async fn start(records: Bytes, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let r = Arc::new(Responses::new(records, addr));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            let r = r.clone();
            match &tls {
                Some(cfg) => {
                    let acc = tokio_rustls::TlsAcceptor::from(cfg.clone());
                    tokio::spawn(async move {
                        if let Ok(t) = acc.accept(s).await {
                            serve(t, r).await
                        }
                    });
                }
                None => {
                    tokio::spawn(serve(s, r));
                }
            }
        }
    });
    addr
}
