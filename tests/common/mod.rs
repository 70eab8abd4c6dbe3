//! Test support: a minimal Kafka client built on kafka-protocol (an
//! independent encoder/decoder), a scripted upstream, and kgate started
//! in-process on free ports.
#![allow(dead_code)]

pub mod mock_cluster;
pub mod sni;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kgate::config::{Config, HostPort};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A port base with base..=base+span all free right now.
pub fn free_port_base(span: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16 % 200) * 100;
    loop {
        let off = NEXT.fetch_add(span + 1, Ordering::SeqCst);
        let base = 21000u16.wrapping_add(seed).wrapping_add(off % 20000);
        let all_free = (0..=span).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
}

/// Starts kgate in-process in front of `bootstrap`.
pub async fn start_kgate(bootstrap: Vec<HostPort>, span: u16) -> kgate::Running {
    let mut c = Config::with_bootstrap(bootstrap);
    c.port_base = free_port_base(span);
    c.connect_timeout = Duration::from_secs(2);
    c.admin_listen = None;
    // Scripted brokers name hosts like b-1.msk.example.com; the default
    // derived allow-list has its own tests (engine.rs, upstream::allow).
    c.upstream_hosts = Some(vec!["*".into()]);
    start_with(c).await
}

pub async fn start_with(c: Config) -> kgate::Running {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("kgate=debug")
        .try_init();
    kgate::start(c).await.expect("kgate starts")
}

pub fn request_frame<M: Encodable>(key: ApiKey, version: i16, corr: i32, msg: &M) -> Bytes {
    request_frame_as(key, version, corr, "kgate-test", msg)
}

pub fn request_frame_as<M: Encodable>(
    key: ApiKey,
    version: i16,
    corr: i32,
    client_id: &str,
    msg: &M,
) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
        .encode(&mut b, key.request_header_version(version))
        .unwrap();
    msg.encode(&mut b, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    fix_len(b)
}

pub fn response_frame<M: Encodable>(key: ApiKey, version: i16, corr: i32, msg: &M) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut b, key.response_header_version(version))
        .unwrap();
    msg.encode(&mut b, version).unwrap();
    fix_len(b)
}

fn fix_len(mut b: BytesMut) -> Bytes {
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b.freeze()
}

/// Reads one length-prefixed frame (prefix included); `None` at EOF.
pub async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(TIMEOUT, s.read_exact(&mut len)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return None,
        Err(_) => panic!("timed out waiting for a frame"),
    }
    let n = i32::from_be_bytes(len) as usize;
    let mut buf = vec![0u8; n + 4];
    buf[..4].copy_from_slice(&len);
    tokio::time::timeout(TIMEOUT, s.read_exact(&mut buf[4..]))
        .await
        .ok()?
        .ok()?;
    Some(Bytes::from(buf))
}

/// Decodes a response frame with kafka-protocol; returns (corr, message).
pub fn decode_response<M: Decodable>(key: ApiKey, version: i16, frame: &Bytes) -> (i32, M) {
    let mut b = frame.slice(4..);
    let h = ResponseHeader::decode(&mut b, key.response_header_version(version)).unwrap();
    let m = M::decode(&mut b, version).unwrap();
    assert_eq!(b.remaining(), 0, "trailing bytes in {key:?} v{version}");
    (h.correlation_id, m)
}

/// Sends a request and decodes its response.
pub async fn call<Req: Encodable, Resp: Decodable>(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
    corr: i32,
    req: &Req,
) -> Resp {
    s.write_all(&request_frame(key, version, corr, req))
        .await
        .unwrap();
    let f = read_frame(s).await.expect("response");
    let (c, m) = decode_response(key, version, &f);
    assert_eq!(c, corr);
    m
}

/// True when the peer closed the connection (EOF or reset) within TIMEOUT.
pub async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(TIMEOUT, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A TCP server that hands every connection to `handler`.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(handler(s));
        }
    });
    addr
}

pub fn hp(a: SocketAddr) -> HostPort {
    HostPort::new(a.ip().to_string(), a.port())
}
