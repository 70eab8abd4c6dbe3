//! KIP-368 re-authentication on a forwarding connection: hold new client
//! requests, let in-flight responses drain, run SaslHandshake and
//! SaslAuthenticate with kgate's own correlation ids (their responses never
//! reach the client), then resume.

use super::error::SessionError;
use super::pump::{Pending, ReauthPlan};
use super::state::{Event, State};
use crate::metrics;
use crate::upstream::sasl::{Transport, KGATE_CORRELATION_BASE};
use bytes::Bytes;
use rand::Rng;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

/// When to re-authenticate: a jittered 85–90% of the session lifetime.
pub fn deadline(session_lifetime_ms: i64) -> Option<Instant> {
    if session_lifetime_ms <= 0 {
        return None;
    }
    let f: f64 = rand::rng().random_range(0.85..0.90);
    Some(Instant::now() + Duration::from_millis((session_lifetime_ms as f64 * f) as u64))
}

/// Carries kgate's SASL requests through the paused pump.
struct PumpTransport<'a, W> {
    tx: &'a mpsc::Sender<Pending>,
    upstream: &'a mut W,
    next: i32,
}

impl<W: AsyncWrite + Unpin + Send> Transport for PumpTransport<'_, W> {
    async fn round_trip(&mut self, request: Bytes, correlation_id: i32) -> Result<Bytes, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending::Internal {
                correlation_id,
                reply,
            })
            .await
            .map_err(|_| "connection closing".to_string())?;
        self.upstream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())?;
        rx.await
            .map_err(|_| "connection closed before the SASL response".to_string())
    }

    fn next_correlation(&mut self) -> i32 {
        self.next = self.next.wrapping_add(1);
        self.next
    }
}

/// Runs one re-authentication; returns the next deadline.
pub async fn run<W: AsyncWrite + Unpin + Send>(
    plan: &ReauthPlan<'_>,
    tx: &mpsc::Sender<Pending>,
    upstream: &mut W,
) -> Result<Option<Instant>, SessionError> {
    let m = metrics::get();
    let started = Instant::now();
    let paused = State::Forwarding
        .on(Event::ReauthDue)
        .map_err(|e| SessionError::Reauth(e.to_string()))?;
    // Drain: the barrier is answered once every earlier response is out.
    let (done, drained) = oneshot::channel();
    tx.send(Pending::Barrier(done))
        .await
        .map_err(|_| SessionError::ResponseSideGone)?;
    drained.await.map_err(|_| SessionError::ResponseSideGone)?;
    let mut t = PumpTransport {
        tx,
        upstream,
        next: KGATE_CORRELATION_BASE + 1_000_000,
    };
    match plan.authenticator.authenticate(&mut t, plan.broker_host).await {
        Ok(outcome) => {
            paused
                .on(Event::Reauthenticated)
                .map_err(|e| SessionError::Reauth(e.to_string()))?;
            let pause = started.elapsed();
            m.reauth_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            m.reauth_pause.observe(pause);
            info!(
                pause_ms = pause.as_secs_f64() * 1e3,
                session_lifetime_ms = outcome.session_lifetime_ms,
                "re-authenticated"
            );
            Ok(deadline(outcome.session_lifetime_ms))
        }
        Err(e) => {
            m.reauth_failures_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(error = %e, "re-authentication failed; closing the connection so the client reconnects");
            Err(SessionError::Reauth(e.to_string()))
        }
    }
}
