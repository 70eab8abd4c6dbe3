//! The pump: requests client → broker and responses broker → client, run
//! concurrently so neither direction can block the other. Requests are
//! forwarded as the bytes that arrived; the in-flight queue tells the
//! response side what each response must be, in order.

use super::batch::Batch;
use super::error::SessionError;
use crate::metrics::{self, ListenerStats};
use crate::protocol::api_versions::{api_versions_too_new, refuse_sasl, rewrite_api_versions};
use crate::protocol::decision::{decide, RequestAction, ResponseAction};
use crate::protocol::frame::FrameReader;
use crate::protocol::header::{key, peek_produce_acks, peek_request_header, peek_response_correlation};
use crate::rewrite::{rewrite, BrokerMapper};
use crate::upstream::sasl::Authenticator;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

/// What the response side must produce next, in request order.
#[derive(Debug)]
pub enum Pending {
    /// A response from the broker with this correlation id.
    Expect {
        correlation_id: i32,
        api_key: i16,
        api_version: i16,
        action: ResponseAction,
        sent_at: Instant,
    },
    /// A response kgate answered itself.
    Local(Bytes),
    /// Answered once every earlier response reached the client (re-auth drain).
    Barrier(oneshot::Sender<()>),
    /// A response to kgate's own request: handed back, never to the client.
    Internal {
        correlation_id: i32,
        reply: oneshot::Sender<Bytes>,
    },
}

/// Everything a pump needs besides the four stream halves.
pub struct PumpCtx<'a> {
    pub max_frame: usize,
    pub max_in_flight: usize,
    pub mapper: &'a dyn BrokerMapper,
    pub reauth: Option<ReauthPlan<'a>>,
    pub stats: &'a ListenerStats,
    /// Flips to true on shutdown: stop reading, drain, close.
    pub shutdown: watch::Receiver<bool>,
    pub idle_timeout: Option<Duration>,
    pub request_timeout: Duration,
}

/// Re-authentication inputs for the request side (KIP-368).
pub struct ReauthPlan<'a> {
    pub authenticator: &'a Authenticator,
    pub broker_host: &'a str,
    pub session_lifetime_ms: i64,
}

/// Runs both directions until either side ends. `Ok` means the client
/// closed cleanly.
pub async fn pump<CR, CW, UR, UW>(
    client_r: CR,
    client_w: CW,
    up_r: UR,
    up_w: UW,
    ctx: PumpCtx<'_>,
) -> Result<(), SessionError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin + Send,
{
    let (tx, rx) = mpsc::channel(ctx.max_in_flight);
    let in_flight = AtomicUsize::new(0);
    let client = FrameReader::new(client_r, ctx.max_frame, 8, true);
    let upstream = FrameReader::new(up_r, ctx.max_frame, 4, false);
    tokio::select! {
        r = requests(client, up_w, tx, &ctx, &in_flight) => r,
        r = responses(upstream, client_w, rx, &ctx, &in_flight) => r,
    }
}

fn gone<T>(_: T) -> SessionError {
    SessionError::ResponseSideGone
}

/// What the response side must expect for a request, or `Err` to close.
fn classify(frame: &Bytes) -> Result<Option<Pending>, SessionError> {
    let h = peek_request_header(frame).map_err(|e| SessionError::ClientMalformed {
        api_key: None,
        cause: e.to_string(),
    })?;
    metrics::get().requests[metrics::slot(h.api_key)].fetch_add(1, Relaxed);
    match decide(h.api_key, h.api_version) {
        RequestAction::Forward(action) => {
            let acks_zero = h.api_key == key::PRODUCE
                && peek_produce_acks(frame, &h).map_err(|e| SessionError::ClientMalformed {
                    api_key: Some(h.api_key),
                    cause: format!("cannot read Produce acks: {e}"),
                })? == 0;
            // acks=0 has no response: nothing to wait for.
            Ok((!acks_zero).then(|| Pending::Expect {
                correlation_id: h.correlation_id,
                api_key: h.api_key,
                api_version: h.api_version,
                action,
                sent_at: Instant::now(),
            }))
        }
        RequestAction::RefuseSasl => {
            warn!(
                api_key = h.api_key,
                "client sent SASL to a listener without client authentication; answering with an error (configure the client with security.protocol=PLAINTEXT)"
            );
            Ok(Some(Pending::Local(refuse_sasl(&h))))
        }
        RequestAction::ApiVersionsTooNew => {
            debug!(
                version = h.api_version,
                "ApiVersions newer than kgate parses; asking for a lower one"
            );
            Ok(Some(Pending::Local(api_versions_too_new(h.correlation_id))))
        }
        RequestAction::Reject(why) => Err(SessionError::Rejected {
            api_key: h.api_key,
            api_version: h.api_version,
            why,
        }),
    }
}

async fn requests<R, W>(
    mut client: FrameReader<R>,
    mut upstream: W,
    tx: mpsc::Sender<Pending>,
    ctx: &PumpCtx<'_>,
    in_flight: &AtomicUsize,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    let mut shutdown = ctx.shutdown.clone();
    let mut due = ctx
        .reauth
        .as_ref()
        .and_then(|p| super::reauth::deadline(p.session_lifetime_ms));
    let mut idle_at = ctx.idle_timeout.map(|d| Instant::now() + d);
    let mut batch = Batch::default();
    loop {
        let next = tokio::select! {
            // next_frame keeps partial input in its buffer: cancel-safe.
            f = client.next_frame() => f.map_err(SessionError::ClientFrame)?,
            _ = sleep_until(due) => {
                if let Some(plan) = &ctx.reauth {
                    due = super::reauth::run(plan, &tx, &mut upstream).await?;
                }
                continue;
            }
            _ = sleep_until(idle_at) => {
                if in_flight.load(Relaxed) > 0 {
                    idle_at = ctx.idle_timeout.map(|d| Instant::now() + d);
                    continue;
                }
                return Err(SessionError::Idle(ctx.idle_timeout.unwrap_or_default()));
            }
            _ = stopping(&mut shutdown) => {
                // Draining: no new requests; the in-flight ones finish.
                let (done, drained) = oneshot::channel();
                tx.send(Pending::Barrier(done)).await.map_err(gone)?;
                let _ = drained.await;
                return Ok(());
            }
        };
        let Some(mut frame) = next else { return Ok(()) };
        idle_at = ctx.idle_timeout.map(|d| Instant::now() + d);
        // This frame and any others already buffered leave in one write.
        loop {
            ctx.stats
                .bytes_client_to_broker
                .fetch_add(frame.len() as u64, Relaxed);
            match classify(&frame)? {
                Some(local @ Pending::Local(_)) => tx.send(local).await.map_err(gone)?,
                // Registered before the bytes leave, so the response side
                // always knows what to expect; a full queue is back-pressure.
                Some(expect) => {
                    in_flight.fetch_add(1, Relaxed);
                    tx.send(expect).await.map_err(gone)?;
                    batch.push(frame);
                }
                None => batch.push(frame),
            }
            if batch.full() {
                break;
            }
            match client.buffered_frame().map_err(SessionError::ClientFrame)? {
                Some(f) => frame = f,
                None => break,
            }
        }
        batch
            .flush(&mut upstream)
            .await
            .map_err(SessionError::UpstreamIo)?;
    }
}

/// Resolves once shutdown begins.
async fn stopping(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn responses<R, W>(
    mut upstream: FrameReader<R>,
    mut client: W,
    mut rx: mpsc::Receiver<Pending>,
    ctx: &PumpCtx<'_>,
    in_flight: &AtomicUsize,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::sync::mpsc::error::TryRecvError;
    let m = metrics::get();
    let timeout = ctx.request_timeout;
    // Responses ready back to back leave in one vectored write.
    let mut batch = Batch::default();
    loop {
        let pending = if batch.is_empty() {
            tokio::select! {
                biased;
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return Ok(()),
                },
                // Nothing is in flight: any byte from the broker is unsolicited.
                n = upstream.fill(), if !upstream.has_buffered() => {
                    return Err(match n.map_err(SessionError::UpstreamFrame)? {
                        0 => SessionError::UpstreamClosed { in_flight: 0 },
                        _ => SessionError::Unsolicited,
                    });
                }
            }
        } else {
            match rx.try_recv() {
                Ok(p) => p,
                Err(e) => {
                    batch.flush(&mut client).await.map_err(SessionError::ClientIo)?;
                    if e == TryRecvError::Disconnected {
                        return Ok(());
                    }
                    continue;
                }
            }
        };
        let (correlation_id, api_key, api_version, action, sent_at) = match pending {
            Pending::Local(bytes) => {
                batch.push(bytes);
                continue;
            }
            Pending::Barrier(done) => {
                batch.flush(&mut client).await.map_err(SessionError::ClientIo)?;
                let _ = done.send(());
                continue;
            }
            Pending::Internal {
                correlation_id,
                reply,
            } => {
                batch.flush(&mut client).await.map_err(SessionError::ClientIo)?;
                let frame = next_response(
                    &mut upstream,
                    &mut batch,
                    &mut client,
                    correlation_id,
                    -1,
                    -1,
                    timeout,
                )
                .await?;
                let _ = reply.send(frame);
                continue;
            }
            Pending::Expect {
                correlation_id,
                api_key,
                api_version,
                action,
                sent_at,
            } => (correlation_id, api_key, api_version, action, sent_at),
        };
        let frame = next_response(
            &mut upstream,
            &mut batch,
            &mut client,
            correlation_id,
            api_key,
            api_version,
            timeout,
        )
        .await?;
        let malformed = |cause: String| SessionError::UpstreamMalformed {
            api_key,
            api_version,
            cause,
        };
        let out = match action {
            ResponseAction::PassThrough => frame,
            ResponseAction::ApiVersions => rewrite_api_versions(&frame, api_version)
                .map_err(|e| malformed(e.to_string()))?
                .freeze(),
            ResponseAction::Rewrite(kind) => {
                match rewrite(kind, &frame, api_key, api_version, ctx.mapper)
                    .map_err(|e| malformed(e.to_string()))?
                {
                    Some(new) => new.freeze(),
                    None => frame,
                }
            }
        };
        in_flight.fetch_sub(1, Relaxed);
        let slot = metrics::slot(api_key);
        m.responses[slot].fetch_add(1, Relaxed);
        m.latency[slot].observe(sent_at.elapsed());
        ctx.stats
            .bytes_broker_to_client
            .fetch_add(out.len() as u64, Relaxed);
        batch.push(out);
        if batch.full() {
            batch.flush(&mut client).await.map_err(SessionError::ClientIo)?;
        }
    }
}

/// The next response, checked to answer `correlation_id`. One already
/// buffered is taken at once; before waiting for the broker, queued
/// responses go to the client.
async fn next_response<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    upstream: &mut FrameReader<R>,
    batch: &mut Batch,
    client: &mut W,
    correlation_id: i32,
    api_key: i16,
    api_version: i16,
    timeout: Duration,
) -> Result<Bytes, SessionError> {
    let frame = match upstream.buffered_frame().map_err(SessionError::UpstreamFrame)? {
        Some(f) => f,
        None => {
            if !batch.is_empty() {
                batch.flush(client).await.map_err(SessionError::ClientIo)?;
            }
            tokio::time::timeout(timeout, upstream.next_frame())
                .await
                .map_err(|_| SessionError::RequestTimeout {
                    api_key,
                    after: timeout,
                })?
                .map_err(SessionError::UpstreamFrame)?
                .ok_or(SessionError::UpstreamClosed { in_flight: 1 })?
        }
    };
    let got = peek_response_correlation(&frame).map_err(|e| SessionError::UpstreamMalformed {
        api_key,
        api_version,
        cause: e.to_string(),
    })?;
    if got != correlation_id {
        return Err(SessionError::CorrelationMismatch {
            api_key,
            expected: correlation_id,
            got,
        });
    }
    Ok(frame)
}
