//! The admin HTTP listener: `/metrics` (Prometheus), `/healthz` (the
//! runtime answers) and `/readyz` (listeners bound, upstream reached and
//! authenticated within the readiness window, not draining).
//!
//! HTTP/1.1 is hyper's. kgate adds the limits an endpoint reachable by
//! anything on the node needs:
//! - at most `admin_max_connections` connections at once; one more is
//!   closed as soon as it is accepted, without reading from it;
//! - the request headers must arrive within `admin_header_timeout`
//!   (hyper's header read timeout), and the whole exchange must end within
//!   `admin_request_timeout`, so a slowloris client holds a slot for a
//!   bounded time only;
//! - one request per connection (`Connection: close`), which makes the
//!   overall deadline a per-request deadline.

mod engine_metrics;
pub mod health;
pub mod own_request;
pub mod probe;
pub mod producer_ids;
mod prometheus;
mod storm_metrics;
pub mod topic_ids;

use crate::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Limits of the admin listener (from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Limits {
            max_connections: c.admin_max_connections,
            header_timeout: c.admin_header_timeout,
            request_timeout: c.admin_request_timeout,
        }
    }
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let limits = Limits::from_config(&shared.config);
    if let Ok(a) = listener.local_addr() {
        info!(admin = %a, max_connections = limits.max_connections, "admin endpoint: /metrics /healthz /readyz");
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if let Some(suppressed) = crate::logs::allow("admin-accept") {
                    warn!(error = %e, suppressed, "admin accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, limit = limits.max_connections, "admin connection refused: too many open");
            drop(sock);
            continue;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(limits.request_timeout, connection(s, sock, limits)).await;
            match served {
                Err(_) => debug!(%peer, "admin request closed: deadline passed"),
                Ok(Err(e)) => debug!(%peer, error = %e, "admin connection ended with an error"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

async fn connection(shared: Arc<Shared>, sock: TcpStream, limits: Limits) -> hyper::Result<()> {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let s = shared.clone();
        async move { Ok::<_, Infallible>(route(&s, &req)) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(sock), service)
        .await
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let h = &shared.health;
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", {
            let mut body = prometheus::render(crate::metrics::get(), h.ready().is_ok(), h.draining());
            storm_metrics::render(&shared.connector.storm.snapshot(), &mut body);
            storm_metrics::render_clusters(&shared.connector.clusters.snapshot(), &mut body);
            body
        }),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match h.ready() {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
