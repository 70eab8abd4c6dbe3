//! `ClientAuthenticating`: with `[client_auth]`, kgate is the client's
//! SASL server before anything happens upstream (per-principal upstream
//! identity needs the principal first). kgate answers:
//!
//! * **ApiVersions** itself: the last broker list kgate saw (the probe
//!   fetches one at start-up and the api_versions filter keeps each one),
//!   with the same allow-list and caps, plus kgate's own SASL versions. If
//!   no broker list was ever seen, kgate fetches one through the bootstrap
//!   servers first; only if that fails does it answer with the versions
//!   kgate itself parses (the client's upstream connection fails next).
//! * **SaslHandshake** v1 (v0's raw-token mode is refused with
//!   UNSUPPORTED_VERSION) and **SaslAuthenticate** v0–v2.
//!
//! Any other request before authentication closes the connection, as
//! Apache Kafka's SASL server does. Frames are bounded at 512 KiB, and the
//! whole exchange must finish within `auth_timeout_ms`.

use super::context::Context;
use super::error::SessionError;
use super::first::fill;
use crate::downstream::sasl::{Outcome, Peer, Server};
use crate::filter::Conn;
use crate::protocol::api_versions::api_versions_too_new;
use crate::protocol::header::{key, peek_request_header};
use crate::protocol::sasl_server::api_versions_answer;
use crate::Shared;
use bytes::BytesMut;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Runs the exchange; returns what the client sent after authenticating
/// (possibly nothing yet). On failure the error response was sent.
pub(super) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    server: &Server,
    client: &mut S,
    mut buf: BytesMut,
    ctx: &Context,
) -> Result<BytesMut, SessionError> {
    let deadline = Instant::now() + server.config.auth_timeout;
    let session = ctx
        .client_sasl()
        .ok_or_else(|| SessionError::State("no client SASL state".into()))?;
    let peer = Peer {
        listener: &ctx.listener,
        client: ctx.client,
    };
    loop {
        let len = match tokio::time::timeout_at(deadline, fill(client, &mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                crate::metrics::get().client_auth_timeouts.fetch_add(1, Relaxed);
                return Err(SessionError::ClientAuthTimeout(server.config.auth_timeout));
            }
        };
        if len == 0 {
            return Err(SessionError::ClientGone);
        }
        let h = peek_request_header(&buf).map_err(|e| SessionError::ClientMalformed {
            api_key: None,
            cause: e.to_string(),
        })?;
        let response = match h.api_key {
            key::API_VERSIONS if h.api_version > 4 => api_versions_too_new(h.correlation_id),
            key::API_VERSIONS => api_versions_answer(&h, &shared.api_versions().await),
            key::SASL_HANDSHAKE | key::SASL_AUTHENTICATE => {
                let reply = {
                    let mut s = match session.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    let costly = h.api_key == key::SASL_AUTHENTICATE && s.checks_password();
                    off_the_event_loop(costly, || server.on_request(&mut s, &h, &buf[..len], &peer))
                };
                write(client, &reply.response).await?;
                let _ = buf.split_to(len);
                match reply.outcome {
                    Outcome::Continue => continue,
                    Outcome::Failed(why) => {
                        linger(client).await;
                        return Err(SessionError::ClientAuthFailed(why));
                    }
                    Outcome::Authenticated { principal, .. } => {
                        tracing::Span::current().record("principal", tracing::field::display(&principal));
                        ctx.set_principal(&principal);
                        return Ok(buf);
                    }
                }
            }
            other => {
                return Err(SessionError::ClientAuth(format!(
                    "api key {other} v{} before SASL authentication (the client must use SASL_PLAINTEXT or SASL_SSL)",
                    h.api_version
                )))
            }
        };
        write(client, &response).await?;
        let _ = buf.split_to(len);
    }
}

/// After an error response, as Kafka's `connection.failed.authentication.delay.ms`
/// does: give the client a moment to read the error and close first (some
/// clients treat an EOF that arrives with the response as a plain
/// disconnect), then end our side (FIN, or TLS close_notify).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(client: &mut S) {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(FAILED_AUTH_CLOSE_DELAY, async {
        for _ in 0..16 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let _ = client.shutdown().await;
}

/// The longest a failed connection stays open for the client to close it.
const FAILED_AUTH_CLOSE_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

/// A PLAIN check derives the salted password (thousands of PBKDF2 rounds):
/// on the multi-threaded runtime it runs with the worker's other
/// connections handed to another thread, so a burst of PLAIN logins does
/// not stall every connection's I/O.
fn off_the_event_loop<T>(costly: bool, f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if costly && Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

async fn write<S: AsyncWrite + Unpin>(client: &mut S, bytes: &[u8]) -> Result<(), SessionError> {
    client.write_all(bytes).await.map_err(SessionError::ClientIo)?;
    client.flush().await.map_err(SessionError::ClientIo)
}
