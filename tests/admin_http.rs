//! The admin HTTP listener's limits: the connection cap, the header read
//! timeout and the overall request deadline (a slowloris client is
//! dropped and its slot freed).

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// kgate with an admin listener and the given admin limits; the upstream
/// is a closed port (the admin endpoint does not need it).
async fn kgate(max: usize, header: Duration, overall: Duration) -> kgate::Running {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = hole.local_addr().unwrap();
    drop(hole);
    let mut c = kgate::config::Config::with_bootstrap(vec![hp(up)]);
    c.port_base = free_port_base(2);
    c.admin_listen = Some(kgate::config::HostPort::new("127.0.0.1", 0));
    c.connect_timeout = Duration::from_millis(200);
    c.admin_max_connections = max;
    c.admin_header_timeout = header;
    c.admin_request_timeout = overall;
    start_with(c).await
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    read.map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {out:?}"))?;
    Ok((code, out))
}

/// How long until the server closes `s` (EOF or reset), reading and
/// discarding anything it sends; `None` if still open after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t0.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a request line, then one header line every `every`, never the
/// blank line that ends the headers; returns when the server closes.
async fn slowloris(addr: SocketAddr, every: Duration, give_up: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut i = 0;
    while t0.elapsed() < give_up {
        if s.write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            return Some(t0.elapsed());
        }
        i += 1;
        if let Some(_d) = closed_within(&mut s, every).await {
            return Some(t0.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_three_endpoints_and_closes_after_each() {
    let kg = kgate(64, Duration::from_secs(5), Duration::from_secs(10)).await;
    let admin = kg.admin.unwrap();
    let (code, body) = get(admin, "/healthz").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.to_ascii_lowercase().contains("connection: close"), "{body}");
    assert!(body.ends_with("ok\n"), "{body}");
    let (code, body) = get(admin, "/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    let (code, body) = get(admin, "/metrics").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");
    assert!(body.contains("# TYPE kgate_connections_open gauge"), "{body}");
    assert_eq!(get(admin, "/nope").await.unwrap().0, 404);
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_slots_come_back() {
    let kg = kgate(2, Duration::from_secs(30), Duration::from_secs(30)).await;
    let admin = kg.admin.unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(admin).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The third is accepted and closed without an answer, well before any
    // timeout could explain it.
    let mut extra = TcpStream::connect(admin).await.unwrap();
    let d = closed_within(&mut extra, Duration::from_secs(2)).await;
    assert!(d.is_some(), "the connection over the cap stayed open");
    assert!(
        get(admin, "/healthz").await.is_err(),
        "a request over the cap was served"
    );
    // The held connections still work: one of them completes a request.
    let mut first = held.remove(0);
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    first.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // Its slot is free again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(admin, "/healthz").await.unwrap().0, 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_at_the_header_timeout() {
    let kg = kgate(1, Duration::from_millis(400), Duration::from_secs(20)).await;
    let admin = kg.admin.unwrap();
    let d = slowloris(admin, Duration::from_millis(100), Duration::from_secs(10))
        .await
        .expect("a slowloris client was never dropped");
    assert!(
        d < Duration::from_secs(3),
        "dropped after {d:?}, expected about the 400 ms header timeout"
    );
    // With a cap of 1, the only slot is free again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(admin, "/healthz").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overall_deadline_cuts_a_request_that_never_finishes() {
    // Header timeout far away: only the overall deadline can end it.
    let kg = kgate(1, Duration::from_secs(60), Duration::from_millis(600)).await;
    let admin = kg.admin.unwrap();
    let d = slowloris(admin, Duration::from_millis(100), Duration::from_secs(10))
        .await
        .expect("a slowloris client was never dropped");
    assert!(
        d >= Duration::from_millis(500) && d < Duration::from_secs(3),
        "dropped after {d:?}, expected about the 600 ms deadline"
    );
    // A silent client (connects, sends nothing) is dropped the same way.
    let mut silent = TcpStream::connect(admin).await.unwrap();
    let d = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(
        matches!(d, Some(d) if d < Duration::from_secs(3)),
        "silent client: {d:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(admin, "/healthz").await.unwrap().0, 200);
}
