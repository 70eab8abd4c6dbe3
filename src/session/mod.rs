//! One client ↔ broker pair: client TLS (if configured), dial, upstream
//! TLS and SASL, then pump until either side ends. The states are in
//! [`state`].

pub mod auth;
mod batch;
pub mod error;
pub mod pump;
mod reauth;
pub mod state;
pub mod stream;

use crate::config::HostPort;
use crate::listener::registry::Target;
use crate::metrics::{self, ListenerStats};
use crate::upstream::dial::dial;
use crate::Shared;
use error::SessionError;
use pump::{pump, PumpCtx, ReauthPlan};
use state::{Event, State};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use stream::Stream;
use tokio::net::TcpStream;
use tracing::{debug, info_span, warn, Instrument};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one client connection to completion, logging how it ended.
pub async fn run(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    target: Target,
    _open: crate::listener::ConnGuard,
) {
    let label = target.label();
    let stats = metrics::get().listener(&label);
    stats.open.fetch_add(1, Relaxed);
    stats.total.fetch_add(1, Relaxed);
    let span = info_span!(
        "conn",
        client = %peer,
        listener = %label,
        broker = tracing::field::Empty,
        identity = tracing::field::Empty,
    );
    async {
        let mut state = State::Connecting;
        let result = connect_and_pump(&shared, client, &target, &mut state, &stats).await;
        state = advance(state, Event::Ended);
        match result {
            Ok(()) => debug!(%state, "connection closed"),
            Err(e) => log_end(&e),
        }
    }
    .instrument(span)
    .await;
    stats.open.fetch_sub(1, Relaxed);
}

/// An authenticated upstream connection.
pub struct Upstream {
    pub stream: Stream,
    pub broker: HostPort,
    pub session_lifetime_ms: i64,
}

/// Dials what `target` stands for, then TLS and SASL as configured.
pub async fn connect_upstream(shared: &Shared, target: &Target) -> Result<Upstream, SessionError> {
    if let Target::Broker(slot) = target {
        shared.throttle.wait(&slot.upstream().to_string()).await;
    }
    let m = metrics::get();
    let up = dial(&shared.config, target).await.inspect_err(|_| {
        m.upstream_failures.add(("connect", "unreachable".into()), 1);
    })?;
    let broker = up.broker.clone();
    tracing::Span::current().record("broker", tracing::field::display(&broker));
    let mut stream = match &shared.upstream_tls {
        Some(tls) => {
            let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(up.stream, &broker.host))
                .await
                .map_err(|_| SessionError::Tls(format!("TLS handshake with {broker} timed out")))
                .and_then(|r| r.map_err(SessionError::Tls))
                .inspect_err(|_| m.upstream_failures.add(("tls", "handshake".into()), 1))?;
            Stream::Client(Box::new(s))
        }
        None => Stream::Plain(up.stream),
    };
    let mut session_lifetime_ms = 0;
    if let Some(a) = &shared.authenticator {
        let key = broker.to_string();
        match auth::authenticate(a, &mut stream, &broker.host).await {
            Ok(o) => {
                shared.throttle.clear(&key);
                session_lifetime_ms = o.session_lifetime_ms;
            }
            Err(e) => {
                if e.is_throttle() {
                    shared.throttle.hit(&key);
                }
                m.upstream_failures.add(("sasl", e.short_cause()), 1);
                return Err(e.into());
            }
        }
    }
    shared.health.upstream_ok();
    Ok(Upstream {
        stream,
        broker,
        session_lifetime_ms,
    })
}

async fn connect_and_pump(
    shared: &Shared,
    client: TcpStream,
    target: &Target,
    state: &mut State,
    stats: &ListenerStats,
) -> Result<(), SessionError> {
    let client = match &shared.downstream_tls {
        Some(tls) if target.client_tls(true) => {
            let (s, id) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(client))
                .await
                .map_err(|_| SessionError::Tls("client TLS handshake timed out".into()))?
                .map_err(|e| e.map_or(SessionError::ClientGone, SessionError::Tls))?;
            if let Some(id) = id {
                tracing::Span::current().record("identity", tracing::field::display(&id.subject));
            }
            Stream::Server(Box::new(s))
        }
        _ => Stream::Plain(client),
    };
    let up = connect_upstream(shared, target).await?;
    *state = advance(
        *state,
        Event::UpstreamConnected {
            sasl: shared.authenticator.is_some(),
        },
    );
    if shared.authenticator.is_some() {
        debug!(
            session_lifetime_ms = up.session_lifetime_ms,
            "authenticated to the broker"
        );
        *state = advance(*state, Event::Authenticated);
    }
    let c = &shared.config;
    let live = shared.live.get();
    let ctx = || PumpCtx {
        max_frame: c.max_frame_bytes,
        max_in_flight: c.max_in_flight,
        mapper: shared.registry.as_ref(),
        reauth: shared.authenticator.as_deref().map(|a| ReauthPlan {
            authenticator: a,
            broker_host: &up.broker.host,
            session_lifetime_ms: up.session_lifetime_ms,
        }),
        stats,
        shutdown: shared.shutdown.subscribe(),
        idle_timeout: live.idle_timeout,
        request_timeout: live.request_timeout,
    };
    match (client, up.stream) {
        (Stream::Plain(mut c), Stream::Plain(mut u)) => {
            let (cr, cw) = c.split();
            let (ur, uw) = u.split();
            pump(cr, cw, ur, uw, ctx()).await
        }
        (c, u) => {
            let (cr, cw) = tokio::io::split(c);
            let (ur, uw) = tokio::io::split(u);
            pump(cr, cw, ur, uw, ctx()).await
        }
    }
}

fn advance(state: State, event: Event) -> State {
    state.on(event).unwrap_or_else(|e| {
        warn!(error = %e, "state machine refused a transition; closing");
        State::Closed
    })
}

fn log_end(e: &SessionError) {
    use crate::protocol::frame::FrameError;
    if let Some(kind) = e.protocol_kind() {
        metrics::get().protocol_errors.add(kind, 1);
    }
    let client_reset = matches!(e, SessionError::ClientFrame(FrameError::Io(io))
        if matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe));
    match e {
        _ if client_reset => debug!(error = %e, "client reset the connection"),
        SessionError::ClientIo(_) | SessionError::ResponseSideGone => debug!(error = %e, "connection closed"),
        SessionError::Idle(_) | SessionError::ClientGone => debug!(error = %e, "connection closed"),
        _ => warn!(error = %e, "closing connection"),
    }
}
