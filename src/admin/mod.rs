//! The admin HTTP listener: `/metrics` (Prometheus), `/healthz` (the
//! runtime answers) and `/readyz` (listeners bound, upstream reached and
//! authenticated within the readiness window, not draining).

mod engine_metrics;
pub mod health;
pub mod probe;
mod prometheus;

use crate::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    if let Ok(a) = listener.local_addr() {
        info!(admin = %a, "admin endpoint: /metrics /healthz /readyz");
    }
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let s = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = tokio::time::timeout(Duration::from_secs(5), handle(&s, sock)).await {
                        debug!(error = %e, "admin request timed out");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(shared: &Shared, mut sock: TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        match sock.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let h = &shared.health;
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus::render(crate::metrics::get(), h.ready().is_ok(), h.draining()),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") => match h.ready() {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics, /healthz or /readyz\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}
