//! Operations: connection limits, idle and request timeouts, readiness and
//! graceful drain, against a scripted upstream.

mod common;

use common::*;
use kafka_protocol::messages::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Answers Heartbeats at once; Metadata (the probe's too) normally; and
/// holds any request from client id "slow" forever.
async fn upstream() -> std::net::SocketAddr {
    serve(|mut sock: TcpStream| async move {
        while let Some(f) = read_frame(&mut sock).await {
            let key = ApiKey::try_from(i16::from_be_bytes([f[4], f[5]])).unwrap();
            let v = i16::from_be_bytes([f[6], f[7]]);
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            if &f[12..18] == b"\x00\x04slow" {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let resp = match key {
                ApiKey::Metadata => response_frame(key, v, corr, &MetadataResponse::default()),
                _ => response_frame(key, v, corr, &HeartbeatResponse::default()),
            };
            let _ = sock.write_all(&resp).await;
        }
    })
    .await
}

async fn heartbeat(s: &mut TcpStream, corr: i32) {
    let _: HeartbeatResponse = call(s, ApiKey::Heartbeat, 4, corr, &HeartbeatRequest::default()).await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out)
}

fn config(up: std::net::SocketAddr) -> kgate::config::Config {
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(up)]);
    c.port_base = free_port_base(2);
    c.admin_listen = Some(kgate::config::HostPort::new("127.0.0.1", free_port_base(0)));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_listener_limit_refuses_only_the_extra_connection() {
    let mut c = config(upstream().await);
    c.max_connections_per_listener = Some(3);
    let kg = start_with(c).await;
    let mut kept = Vec::new();
    for i in 0..3 {
        let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
        heartbeat(&mut s, i).await;
        kept.push(s);
    }
    let mut extra = TcpStream::connect(kg.bootstrap).await.unwrap();
    assert!(closed(&mut extra).await, "the 4th connection must be refused");
    for (i, s) in kept.iter_mut().enumerate() {
        heartbeat(s, 10 + i as i32).await;
    }
    // Once one closes, a new one fits again.
    drop(kept.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(kg.bootstrap).await.unwrap();
    heartbeat(&mut again, 20).await;
    let (_, m) = http_get(kg.admin.unwrap(), "/metrics").await;
    assert!(
        m.contains("kgate_connections_refused_total{listener=\"bootstrap\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_busy_ones_do_not() {
    let mut c = config(upstream().await);
    c.idle_timeout = Some(Duration::from_millis(300));
    let kg = start_with(c).await;
    let mut idle = TcpStream::connect(kg.bootstrap).await.unwrap();
    heartbeat(&mut idle, 1).await;
    let mut busy = TcpStream::connect(kg.bootstrap).await.unwrap();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        heartbeat(&mut busy, i).await;
    }
    assert!(closed(&mut idle).await, "idle connection still open");
    heartbeat(&mut busy, 99).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_broker_never_answers_times_out() {
    let mut c = config(upstream().await);
    c.request_timeout = Duration::from_millis(300);
    let kg = start_with(c).await;
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    s.write_all(&request_frame_as(
        ApiKey::Heartbeat,
        4,
        1,
        "slow",
        &HeartbeatRequest::default(),
    ))
    .await
    .unwrap();
    assert!(closed(&mut s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_upstream_and_drain() {
    // Nothing listens upstream yet: not ready.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = hole.local_addr().unwrap();
    drop(hole);
    let mut c = config(up_addr);
    c.ready_window = Duration::from_millis(1500);
    c.connect_timeout = Duration::from_millis(200);
    let kg = start_with(c).await;
    let admin = kg.admin.unwrap();
    let (code, body) = http_get(admin, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not reached"), "{body}");
    assert_eq!(http_get(admin, "/healthz").await.0, 200);
    assert_eq!(http_get(admin, "/nope").await.0, 404);

    // The upstream appears; the probe notices.
    let l = tokio::net::TcpListener::bind(up_addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                while let Some(f) = read_frame(&mut sock).await {
                    let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
                    let v = i16::from_be_bytes([f[6], f[7]]);
                    let key = ApiKey::try_from(i16::from_be_bytes([f[4], f[5]])).unwrap();
                    let resp = match key {
                        ApiKey::Metadata => response_frame(key, v, corr, &MetadataResponse::default()),
                        _ => response_frame(key, v, corr, &HeartbeatResponse::default()),
                    };
                    let _ = sock.write_all(&resp).await;
                }
            });
        }
    });
    let mut ready = false;
    for _ in 0..100 {
        if http_get(admin, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "never became ready");

    // Draining: a connection with a request in flight finishes it.
    let mut s = TcpStream::connect(kg.bootstrap).await.unwrap();
    heartbeat(&mut s, 1).await;
    let shared = kg.shared.clone();
    let left = kg.drain().await;
    assert_eq!(left, 0);
    assert!(shared.health.ready().unwrap_err().contains("draining"));
    assert!(closed(&mut s).await);
}
