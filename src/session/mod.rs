//! One client ↔ broker pair. [`run`] creates the connection's
//! [`context::Context`], completes client TLS, and then drives the
//! [`state::Machine`]: `Connecting` opens the upstream through the one
//! [`Connector`] (as the principal's own upstream identity, when it has
//! one), `Authenticating` runs SASL, and from
//! `Forwarding` on the pump's request side is the machine.

mod batch;
pub mod budget;
mod client_auth;
pub mod context;
pub mod error;
mod first;
mod inflight;
pub mod pump;
mod respond;
mod splice;
pub mod state;
pub mod target;

use crate::tls::stream::Stream;
use crate::upstream::connect::{As, Connector, Upstream};
use crate::Shared;
use context::{ClientTls, Context};
use error::SessionError;
use pump::{pump, Pump};
use state::{Event, Machine, State};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use target::Target;
use tokio::net::TcpStream;
use tracing::{debug, info_span, warn, Instrument};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one client connection to completion, logging how it ended.
/// `_open` is held until the connection ends (the listener's count).
pub async fn run<G: Send + 'static>(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    target: Target,
    _open: G,
) {
    let ctx = Context::new(peer, target);
    ctx.stats.open.fetch_add(1, Relaxed);
    ctx.stats.total.fetch_add(1, Relaxed);
    let span = info_span!(
        "conn",
        id = ctx.id,
        client = %ctx.client,
        listener = %ctx.listener,
        broker = tracing::field::Empty,
        cluster = tracing::field::Empty,
        identity = tracing::field::Empty,
        sni = tracing::field::Empty,
        principal = tracing::field::Empty,
        upstream_identity = tracing::field::Empty,
    );
    async {
        let mut machine = Machine::default();
        let result = drive(&shared, client, &ctx, &mut machine).await;
        let ended_in = end(&mut machine);
        match result {
            Ok(()) => debug!(%ended_in, "connection closed"),
            Err(e) => log_end(&e, ended_in, &ctx.listener),
        }
    }
    .instrument(span)
    .await;
    ctx.stats.open.fetch_sub(1, Relaxed);
}

/// Closes the machine; returns the state the connection was in when it
/// ended (what the end-of-connection log names).
fn end(m: &mut Machine) -> State {
    let ended_in = m.state();
    if ended_in != State::Closed {
        let _ = m.on(Event::Ended);
    }
    ended_in
}

/// Client TLS, when the listener has it; the identity and SNI name go
/// into the context.
async fn accept_tls(shared: &Shared, client: TcpStream, ctx: &Context) -> Result<Stream, SessionError> {
    let Some(tls) = shared
        .downstream_tls
        .as_ref()
        .filter(|_| ctx.target.client_tls(true))
    else {
        return Ok(Stream::Plain(client));
    };
    let (s, identity) = match &ctx.target {
        Target::Sni(routes) => {
            let accept = tls.accept_routed(client, |name| {
                routes.resolve(name).map_err(|why| {
                    crate::metrics::get().sni_routes.add("refused", 1);
                    format!("SNI name {:?} refused: {why}", name.unwrap_or("<none>"))
                })
            });
            let (s, identity, routed) = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept)
                .await
                .map_err(|_| SessionError::Tls("client TLS handshake timed out".into()))?
                .map_err(|e| e.map_or(SessionError::ClientGone, SessionError::Tls))?;
            let kind = if matches!(routed, Target::Bootstrap) {
                "bootstrap"
            } else {
                "broker"
            };
            crate::metrics::get().sni_routes.add(kind, 1);
            ctx.set_routed(routed);
            (s, identity)
        }
        _ => tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(client))
            .await
            .map_err(|_| SessionError::Tls("client TLS handshake timed out".into()))?
            .map_err(|e| e.map_or(SessionError::ClientGone, SessionError::Tls))?,
    };
    let sni = s.get_ref().1.server_name().map(str::to_string);
    let span = tracing::Span::current();
    if let Some(id) = &identity {
        span.record(
            "identity",
            tracing::field::display(crate::logs::clip_to(&id.subject, 200)),
        );
    }
    if let Some(from) = shared.config.downstream_tls.as_ref().and_then(|c| c.principal) {
        let p = identity
            .as_ref()
            .and_then(|id| id.principal(from))
            .ok_or_else(|| {
                SessionError::Tls(format!(
                    "client certificate names no principal ({from:?} configured by downstream_tls.principal)"
                ))
            })?;
        span.record("principal", tracing::field::display(p));
        ctx.set_principal(p);
    }
    if let Some(n) = &sni {
        span.record("sni", tracing::field::display(n));
    }
    ctx.set_tls(ClientTls { identity, sni });
    Ok(Stream::Server(Box::new(s)))
}

/// Client TLS and `AwaitingRequest`; then [`connect`].
async fn drive(
    shared: &Shared,
    client: TcpStream,
    ctx: &Context,
    m: &mut Machine,
) -> Result<(), SessionError> {
    // The TLS handshake and everything after the first request are boxed:
    // an accepted connection that has sent nothing holds only this small
    // future, so a connect flood costs little memory.
    let mut client = Box::pin(accept_tls(shared, client, ctx)).await?;
    let mut stop = shared.shutdown.subscribe();
    let first = tokio::select! {
        r = first::first_request(&mut client, shared.config.first_request_timeout) => r?,
        _ = stop.wait_for(|s| *s) => {
            m.on(Event::ShutdownRequested)?;
            return Ok(());
        }
    };
    let Some(first) = first else {
        return Err(SessionError::ClientGone);
    };
    first::check(&first)?;
    let Some(server) = &shared.client_auth else {
        m.on(Event::FirstRequest)?;
        return Box::pin(connect(shared, (client, first), ctx, m)).await;
    };
    m.on(Event::FirstRequestNeedsAuth)?;
    let rest = tokio::select! {
        r = Box::pin(client_auth::authenticate(shared, server, &mut client, first, ctx)) => r?,
        _ = stop.wait_for(|s| *s) => {
            m.on(Event::ShutdownRequested)?;
            return Ok(());
        }
    };
    m.on(Event::ClientAuthenticated)?;
    // Authenticated: nothing upstream until the next request arrives.
    let next = match rest.is_empty() {
        true => first::first_request(&mut client, shared.config.first_request_timeout).await?,
        false => Some(rest),
    };
    let Some(next) = next else {
        return Err(SessionError::ClientGone);
    };
    first::check(&next)?;
    Box::pin(connect(shared, (client, next), ctx, m)).await
}

/// `Connecting` and `Authenticating`, then the pump.
async fn connect(
    shared: &Shared,
    (client, first): (Stream, bytes::BytesMut),
    ctx: &Context,
    m: &mut Machine,
) -> Result<(), SessionError> {
    let c: &Connector = &shared.connector;
    if let Target::Broker(slot) = ctx.routed() {
        if slot.generation() != 0 && slot.generation() != shared.registry.generation() {
            shared.refresh_brokers(slot).await;
            if slot.generation() != shared.registry.generation() {
                return Err(SessionError::StaleBroker(slot.bind.to_string()));
            }
        }
    }
    let route = ctx
        .routed()
        .route()
        .ok_or_else(|| SessionError::Tls("SNI connection without a route".into()))?;
    let principal = {
        use crate::filter::Conn;
        ctx.principal()
    };
    let mut up = c.open(&route, As::Client(principal.as_deref())).await?;
    if let Some(m) = &up.identity {
        tracing::Span::current().record("upstream_identity", tracing::field::display(&m.describe));
    }
    ctx.set_broker(up.broker.clone());
    ctx.set_cluster_generation(up.cluster.0.generation);
    let span = tracing::Span::current();
    span.record("broker", tracing::field::display(&up.broker));
    span.record("cluster", tracing::field::display(&up.cluster.0.name));
    ctx.set_authenticator(up.authenticator());
    if m.on(Event::UpstreamConnected {
        sasl: up.authenticator().is_some(),
    })? == State::Authenticating
    {
        c.authenticate(&mut up).await?;
        debug!(
            session_lifetime_ms = up.session_lifetime_ms,
            "authenticated to the broker"
        );
        m.on(Event::Authenticated)?;
    }
    shared.health.upstream_ok();
    use crate::filter::Conn;
    ctx.set_session_lifetime_ms(up.session_lifetime_ms);
    ctx.set_reauth_due(crate::filter::reauth::deadline(up.session_lifetime_ms));
    forward(shared, (client, first), up, ctx, m).await
}

async fn forward(
    shared: &Shared,
    (client, head): (Stream, bytes::BytesMut),
    up: Upstream,
    ctx: &Context,
    m: &mut Machine,
) -> Result<(), SessionError> {
    let c = &shared.config;
    let live = shared.live.get();
    let p = Pump {
        ctx,
        // After a cut-over, producer ids are mapped (filter::producer_ids).
        chain: if up.cluster.0.generation > 1 {
            &shared.chain_moved
        } else {
            &shared.chain
        },
        budget: &shared.budget,
        max_frame: c.max_frame_bytes,
        max_in_flight: c.max_in_flight,
        shutdown: shared.shutdown.subscribe(),
        cluster: shared.connector.clusters.subscribe(),
        clusters: &shared.connector.clusters,
        generation: up.cluster.0.generation,
        idle_timeout: live.idle_timeout,
        request_timeout: live.request_timeout,
        splice: c.splice,
    };
    match (client, up.stream) {
        (Stream::Plain(mut c), Stream::Plain(mut u)) => {
            let (cr, cw) = c.split();
            let (ur, uw) = u.split();
            pump((cr, head), cw, ur, uw, &p, m).await
        }
        (c, u) => {
            let (cr, cw) = tokio::io::split(c);
            let (ur, uw) = tokio::io::split(u);
            pump((cr, head), cw, ur, uw, &p, m).await
        }
    }
}

/// At most this many characters of an error reach the end-of-connection log.
const ERROR_CHARS: usize = 400;

fn log_end(e: &SessionError, ended_in: State, listener: &str) {
    use crate::protocol::frame::FrameError;
    if let Some(kind) = e.protocol_kind() {
        crate::metrics::get().protocol_errors.add(kind, 1);
    }
    // Errors can quote what a peer sent (names, messages): cut for the log.
    let error = crate::logs::clip_to(&e.to_string(), ERROR_CHARS);
    let client_reset = matches!(e, SessionError::ClientFrame(FrameError::Io(io))
        if matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe));
    match e {
        _ if client_reset => debug!(%ended_in, %error, "client reset the connection"),
        SessionError::ClientIo(_) | SessionError::ResponseSideGone => {
            debug!(%ended_in, %error, "connection closed")
        }
        SessionError::Idle(_) | SessionError::ClientGone | SessionError::FirstRequestTimeout(_) => {
            debug!(%ended_in, %error, "connection closed")
        }
        // Counted (kgate_protocol_errors_total{kind="bad_first_request"});
        // a junk flood must not flood the log.
        SessionError::BadFirstRequest(_) => debug!(%ended_in, %error, "closed before any upstream work"),
        // Logged (rate-limited, with the claimed user) where it failed.
        SessionError::ClientAuthFailed(_) => debug!(%ended_in, %error, "connection closed"),
        _ => {
            // A few lines per listener and cause every few seconds, with a
            // count. Frame errors carry wire numbers: keyed by their kind.
            let cause = match e.protocol_kind() {
                Some(kind) => kind.to_string(),
                None => error.chars().take(80).collect(),
            };
            if let Some(suppressed) = crate::logs::allow(&format!("{listener}:{cause}")) {
                warn!(%ended_in, %error, suppressed, "closing connection");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_log_names_the_state_the_connection_ended_in() {
        let mut m = Machine::default();
        m.on(Event::FirstRequest).unwrap();
        m.on(Event::UpstreamConnected { sasl: false }).unwrap();
        assert_eq!(end(&mut m), State::Forwarding);
        assert_eq!(m.state(), State::Closed, "and the machine is closed");
        assert_eq!(end(&mut m), State::Closed, "a closed machine stays closed");
        let mut m = Machine::default();
        assert_eq!(end(&mut m), State::AwaitingRequest);
    }
}
