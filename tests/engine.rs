//! The engine against scripted brokers: cut-through forwarding keeps the
//! no-leak guarantee, large frames are streamed rather than assembled,
//! dynamic listeners are capped, invalid broker hosts are refused, and a
//! TLS client reading slowly receives every byte.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kgate::metrics;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fetch_response(records: usize, endpoint_host: Option<&str>) -> FetchResponse {
    let part = fetch_response::PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(1)
        .with_records(Some(Bytes::from(vec![0x5a; records])));
    let topic = fetch_response::FetchableTopicResponse::default()
        .with_topic_id(uuid::Uuid::from_u128(1))
        .with_partitions(vec![part.clone(), part.with_partition_index(1)]);
    let eps = endpoint_host
        .map(|h| {
            vec![fetch_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_string(h.to_string()))
                .with_port(9094)]
        })
        .unwrap_or_default();
    FetchResponse::default()
        .with_responses(vec![topic])
        .with_node_endpoints(eps)
}

/// A broker that answers every Fetch with `resp` (at the request's
/// version) and Metadata with `meta`.
async fn broker(resp: FetchResponse, meta: MetadataResponse) -> std::net::SocketAddr {
    serve(move |mut sock: TcpStream| {
        let (resp, meta) = (resp.clone(), meta.clone());
        async move {
            while let Some(f) = read_frame(&mut sock).await {
                let key = i16::from_be_bytes([f[4], f[5]]);
                let v = i16::from_be_bytes([f[6], f[7]]);
                let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
                let out = match ApiKey::try_from(key) {
                    Ok(ApiKey::Fetch) => response_frame(ApiKey::Fetch, v, corr, &resp),
                    _ => response_frame(ApiKey::Metadata, v, corr, &meta),
                };
                if sock.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

fn fetch_request(v: i16, corr: i32) -> Bytes {
    request_frame(
        ApiKey::Fetch,
        v,
        corr,
        &FetchRequest::default().with_max_wait_ms(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_fetch_has_its_node_endpoints_rewritten_and_nothing_leaks() {
    let up = broker(
        fetch_response(3 << 20, Some("b-2.internal.example.com")),
        MetadataResponse::default(),
    )
    .await;
    let kg = start_kgate(vec![hp(up)], 8).await;
    let m = metrics::get();
    let streamed = m.frames_streamed[1].load(Relaxed);
    let rewrites = m.address_rewrites.get(&"fetch");
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    for v in [16i16, 17, 18] {
        s.write_all(&fetch_request(v, v as i32)).await.unwrap();
        let f = read_frame(&mut s).await.expect("a response");
        assert!(
            !f.windows(11).any(|w| w == b"b-2.interna"),
            "v{v}: an upstream name reached the client"
        );
        let (corr, r): (i32, FetchResponse) = decode_response(ApiKey::Fetch, v, &f);
        assert_eq!(corr, v as i32);
        assert_eq!(r.node_endpoints.len(), 1, "v{v}");
        assert_eq!(r.node_endpoints[0].host.as_str(), "127.0.0.1");
        assert_eq!(r.node_endpoints[0].port, i32::from(kg.bootstrap.port()) + 1 + 2);
        let recs = r.responses[0].partitions[1].records.as_ref().unwrap();
        assert_eq!(recs.len(), 3 << 20);
        assert!(recs.iter().all(|b| *b == 0x5a));
    }
    assert!(
        m.frames_streamed[1].load(Relaxed) >= streamed + 3,
        "responses were cut through"
    );
    assert!(m.address_rewrites.get(&"fetch") >= rewrites + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_stream_without_drawing_on_the_budget() {
    let up = broker(fetch_response(16 << 20, None), MetadataResponse::default()).await;
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(up)]);
    c.port_base = free_port_base(4);
    c.admin_listen = None;
    c.buffer_budget_bytes = 1 << 20;
    let kg = start_with(c).await;
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    // Fetch v12 passes untouched (no filter needs it): pure cut-through.
    for corr in 0..3 {
        s.write_all(&fetch_request(12, corr)).await.unwrap();
        let f = read_frame(&mut s).await.expect("a response");
        let (got, r): (i32, FetchResponse) = decode_response(ApiKey::Fetch, 12, &f);
        assert_eq!(got, corr);
        assert_eq!(r.responses[0].partitions.len(), 2);
    }
    // A budget of 1 MiB would have blocked a 32 MiB frame being assembled.
    assert_eq!(kg.shared.budget.available(), 1 << 20);
}

/// A request whose claimed size is huge reserves nothing up front: the
/// buffer grows only with bytes that arrive.
#[tokio::test]
async fn a_claimed_size_is_not_reserved() {
    use kgate::protocol::frame::FrameReader;
    let mut head = BytesMut::new();
    head.put_i32(90 << 20);
    head.put_slice(&[0, 1, 0, 12, 0, 0, 0, 1]);
    let mut r = FrameReader::new(&head[..], 100 << 20, 8, true);
    assert_eq!(r.next_len().await.unwrap(), Some((90 << 20) + 4));
    assert!(r.capacity() < 64 * 1024, "reserved {} bytes", r.capacity());
}

fn many_brokers(n: i32, host: impl Fn(i32) -> String) -> MetadataResponse {
    let brokers = (1..=n)
        .map(|i| {
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(i))
                .with_host(StrBytes::from_string(host(i)))
                .with_port(9092)
        })
        .collect();
    MetadataResponse::default().with_brokers(brokers)
}

async fn metadata_through(kg: &kgate::Running) -> MetadataResponse {
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    call(&mut s, ApiKey::Metadata, 12, 1, &MetadataRequest::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_listeners_are_capped_and_the_rest_still_works() {
    let up = broker(
        FetchResponse::default(),
        many_brokers(300, |i| format!("b-{i}.example")),
    )
    .await;
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(up)]);
    c.port_base = free_port_base(310);
    c.admin_listen = None;
    c.max_dynamic_listeners = 5;
    c.upstream_hosts = Some(vec!["*.example".into()]);
    let kg = start_with(c).await;
    let refused = metrics::get().dynamic_listeners_refused.load(Relaxed);
    let r = metadata_through(&kg).await;
    assert_eq!(r.brokers.len(), 5, "only capped brokers are advertised");
    assert!(r.brokers.iter().all(|b| b.host.as_str() == "127.0.0.1"));
    assert!(metrics::get().dynamic_listeners_refused.load(Relaxed) >= refused + 295);
    // The advertised ones are reachable.
    let port = r.brokers[0].port as u16;
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_ok());
    // The same connection keeps working.
    assert_eq!(metadata_through(&kg).await.brokers.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_broker_hosts_are_refused_and_left_out() {
    let bad = |i: i32| match i {
        1 => "good-1.example".to_string(),
        2 => "x".repeat(30_000),
        3 => "bad host!".to_string(),
        4 => "-leading.dash".to_string(),
        _ => "10.1.2.3".to_string(),
    };
    let up = broker(FetchResponse::default(), many_brokers(5, bad)).await;
    let kg = start_kgate(vec![hp(up)], 8).await;
    let r = metadata_through(&kg).await;
    let ids: Vec<i32> = r.brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(ids, vec![1, 5], "only valid hosts get listeners");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_cut_through_and_answers_stay_in_order() {
    // A 4 MiB Produce (acks=1) is streamed to the broker after its head
    // is read; the broker sees every byte.
    let up = serve(|mut sock: TcpStream| async move {
        while let Some(f) = read_frame(&mut sock).await {
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            let v = i16::from_be_bytes([f[6], f[7]]);
            let r = ProduceResponse::default().with_throttle_time_ms(f.len() as i32);
            let _ = sock
                .write_all(&response_frame(ApiKey::Produce, v, corr, &r))
                .await;
        }
    })
    .await;
    let kg = start_kgate(vec![hp(up)], 4).await;
    let before = metrics::get().frames_streamed[0].load(Relaxed);
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    // The first request on a connection is bounded (512 KiB, nothing is
    // dialled before it): clients always start small.
    let small = ProduceRequest::default()
        .with_acks(1)
        .with_topic_data(topic_data(10));
    s.write_all(&request_frame(ApiKey::Produce, 9, 4, &small))
        .await
        .unwrap();
    let _ = read_frame(&mut s).await.unwrap();
    let data = topic_data(4 << 20);
    let req = ProduceRequest::default().with_acks(1).with_topic_data(data);
    let frame = request_frame(ApiKey::Produce, 9, 5, &req);
    s.write_all(&frame).await.unwrap();
    let f = read_frame(&mut s).await.unwrap();
    let (corr, r): (i32, ProduceResponse) = decode_response(ApiKey::Produce, 9, &f);
    assert_eq!(corr, 5);
    assert_eq!(
        r.throttle_time_ms as usize,
        frame.len(),
        "broker got the whole frame"
    );
    assert!(metrics::get().frames_streamed[0].load(Relaxed) > before);
}

/// A large Produce starts moving once kgate has read up to its acks: the
/// broker gets its first bytes while the client has sent only 2 KiB (a
/// fixed 66 KiB head would hold them back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_produce_moves_before_a_fixed_head_arrives() {
    use tokio::io::AsyncReadExt;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let up = serve(move |mut sock: TcpStream| {
        let tx = tx.clone();
        async move {
            // The first (small) request, answered.
            let Some(f) = read_frame(&mut sock).await else {
                return;
            };
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            let r = ProduceResponse::default();
            let _ = sock
                .write_all(&response_frame(ApiKey::Produce, 9, corr, &r))
                .await;
            // Then raw bytes of the large one, reported as they come.
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                got += n;
                let _ = tx.send(got);
            }
        }
    })
    .await;
    let kg = start_kgate(vec![hp(up)], 4).await;
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    let small = ProduceRequest::default()
        .with_acks(1)
        .with_topic_data(topic_data(10));
    s.write_all(&request_frame(ApiKey::Produce, 9, 4, &small))
        .await
        .unwrap();
    let _ = read_frame(&mut s).await.unwrap();
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_topic_data(topic_data(4 << 20));
    let frame = request_frame(ApiKey::Produce, 9, 5, &req);
    s.write_all(&frame[..2048]).await.unwrap();
    let mut seen = 0;
    while seen < 1024 {
        seen = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
            .await
            .expect("the broker got the Produce's first bytes while the client had sent 2 KiB")
            .expect("broker running");
    }
    assert!(seen <= 2048, "only what the client sent: {seen}");
    drop(kg);
}

fn topic_data(bytes: usize) -> Vec<produce_request::TopicProduceData> {
    let p = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from(vec![1u8; bytes])));
    vec![produce_request::TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![p])]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_reader_gets_every_byte() {
    use kgate::config::DownstreamTlsConfig;
    let pki = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/certs-dev/gen.sh"))
        .arg(pki.path())
        .output()
        .expect("bash runs certs-dev/gen.sh");
    assert!(
        out.status.success(),
        "gen.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = broker(fetch_response(4 << 20, None), MetadataResponse::default()).await;
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(up)]);
    c.port_base = free_port_base(4);
    c.admin_listen = None;
    c.downstream_tls = Some(DownstreamTlsConfig {
        cert_file: pki.path().join("kgate-server.pem"),
        key_file: pki.path().join("kgate-server.key"),
        passphrase: None,
        client_ca_file: None,
        allowed_subjects: vec![],
        principal: None,
    });
    let kg = start_with(c).await;
    let mut tls = tls_client(&pki.path().join("ca.pem"), kg.bootstrap).await;
    // 26 responses of 8 MiB: over 200 MB, read in small slow bites. The
    // last response must arrive without any further write by the client.
    let mut total = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    for corr in 0..26 {
        tls.write_all(&fetch_request(12, corr)).await.unwrap();
        tls.flush().await.unwrap();
        let mut len = [0u8; 4];
        tls.read_exact(&mut len).await.unwrap();
        let mut left = i32::from_be_bytes(len) as usize;
        let mut reads = 0;
        while left > 0 {
            let n = tokio::time::timeout(TIMEOUT, tls.read(&mut buf[..left.min(16 * 1024)]))
                .await
                .unwrap_or_else(|_| panic!("stalled at response {corr} with {left} bytes left, {total} read"))
                .unwrap_or_else(|e| panic!("response {corr}: {e} with {left} bytes left, {total} read"));
            assert!(n > 0, "closed with {left} bytes missing");
            left -= n;
            total += n;
            reads += 1;
            if reads % 64 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    assert!(total >= 200_000_000, "read {total} bytes");
}

async fn tls_client(
    ca: &std::path::Path,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    kgate::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.unwrap();
    conn.connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with kgate")
}

/// Only hosts on the upstream allow-list get a listener; the rest are left
/// out of the response. Everything here is loopback: link-local and other
/// non-loopback refusals are covered by `upstream::allow`'s unit tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allow_listed_hosts_are_dialled() {
    let host = |i: i32| match i {
        2 => "127.0.0.2".to_string(),
        3 => "localhost".to_string(),
        _ => "127.0.0.1".to_string(),
    };
    let up = broker(FetchResponse::default(), many_brokers(4, host)).await;
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(up)]);
    c.port_base = free_port_base(8);
    c.admin_listen = None;
    c.upstream_hosts = Some(vec!["127.0.0.1".into()]);
    let refused = || metrics::get().dynamic_listeners_refused.load(Relaxed);
    let before = refused();
    let kg = start_with(c).await;
    let r = metadata_through(&kg).await;
    let ids: Vec<i32> = r.brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(ids, vec![1, 4], "hosts upstream_hosts does not name are left out");
    assert!(refused() >= before + 2, "each refusal is counted");
    use kgate::rewrite::BrokerMapper;
    let e = kg.shared.registry.advertise(2, "127.0.0.2", 9092).unwrap_err();
    assert!(e.0.contains("127.0.0.2:9092 is not dialled"), "{e}");
}

/// Nothing happens upstream until a client sends a complete request: a
/// flood of empty connects and a slowloris cost the broker no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_connects_and_slowloris_never_reach_the_broker() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let dialled = Arc::new(AtomicUsize::new(0));
    let d = dialled.clone();
    let up = serve(move |mut sock: TcpStream| {
        let d = d.clone();
        async move {
            let mut first = true;
            loop {
                let f = tokio::time::timeout(Duration::from_secs(30), read_frame_or_eof(&mut sock)).await;
                let Ok(Some(f)) = f else {
                    if first {
                        d.fetch_add(1, Relaxed); // a connection that never spoke
                    }
                    return;
                };
                // The probe says client id "kgate"; anything else is a client's.
                let id_len = i16::from_be_bytes([f[12], f[13]]).max(0) as usize;
                if first && &f[14..14 + id_len] != b"kgate" {
                    d.fetch_add(1, Relaxed);
                }
                first = false;
                let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
                let v = i16::from_be_bytes([f[6], f[7]]);
                let m = response_frame(ApiKey::Metadata, v, corr, &MetadataResponse::default());
                let _ = sock.write_all(&m).await;
            }
        }
    })
    .await;
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(up)]);
    c.port_base = free_port_base(4);
    c.admin_listen = None;
    c.first_request_timeout = Duration::from_millis(500);
    let kg = start_with(c).await;
    let timeouts = metrics::get().first_request_timeouts.load(Relaxed);
    for _ in 0..200 {
        drop(TcpStream::connect(kg.bootstrap).await.unwrap());
    }
    // A slowloris: a byte at a time, never a whole request.
    let mut slow = TcpStream::connect(kg.bootstrap).await.unwrap();
    let mut cut = false;
    for b in [0u8, 0, 0, 40, 0, 3] {
        if slow.write_all(&[b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(cut || closed(&mut slow).await, "the slowloris was cut off");
    assert!(metrics::get().first_request_timeouts.load(Relaxed) > timeouts);
    // A real client still gets through, and is the only one that dialled.
    let r = metadata_through(&kg).await;
    assert!(r.brokers.is_empty());
    assert_eq!(
        dialled.load(Relaxed),
        1,
        "only the real client's connection reached the broker"
    );
}

async fn read_frame_or_eof(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body).await.ok()?;
    let mut f = len.to_vec();
    f.extend_from_slice(&body);
    Some(Bytes::from(f))
}

/// A broker whose listener cannot be bound makes /readyz fail, naming it;
/// once the cluster stops listing it, readiness comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listener_is_forgotten_when_the_cluster_stops_naming_it() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let named = Arc::new(AtomicBool::new(true));
    let n = named.clone();
    let up = serve(move |mut sock: TcpStream| {
        let n = n.clone();
        async move {
            while let Some(f) = read_frame(&mut sock).await {
                let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
                let v = i16::from_be_bytes([f[6], f[7]]);
                let ids = if n.load(Relaxed) { 2 } else { 1 };
                // node 70000 overflows the port space
                let m = many_brokers(ids, |_| "127.0.0.1".into());
                let mut m = m;
                if ids == 2 {
                    m.brokers[1].node_id = BrokerId(70000);
                }
                let _ = sock
                    .write_all(&response_frame(ApiKey::Metadata, v, corr, &m))
                    .await;
            }
        }
    })
    .await;
    let kg = start_kgate(vec![hp(up)], 8).await;
    assert_eq!(metadata_through(&kg).await.brokers.len(), 1);
    let why = kg.shared.health.ready().unwrap_err();
    assert!(why.contains("70000"), "{why}");
    named.store(false, Relaxed);
    assert_eq!(metadata_through(&kg).await.brokers.len(), 1);
    // The upstream probe (every few seconds) carries the cluster's own list.
    let mut forgotten = false;
    for _ in 0..120 {
        if kg.shared.registry.problem().is_none() {
            forgotten = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        forgotten,
        "node 70000 forgotten once the cluster stopped naming it"
    );
    assert!(kg.shared.health.ready().is_ok());
}
