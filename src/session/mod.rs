//! One client ↔ broker pair: client TLS (if configured), dial, upstream
//! TLS, (later) SASL, then pump until either side ends. The states are in
//! [`state`].

pub mod auth;
pub mod error;
pub mod pump;
mod reauth;
pub mod state;
pub mod stream;

use crate::listener::registry::Target;
use crate::upstream::dial::dial;
use crate::Shared;
use error::SessionError;
use pump::{pump, Limits, ReauthPlan};
use state::{Event, State};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stream::Stream;
use tokio::net::TcpStream;
use tracing::{debug, info_span, warn, Instrument};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one client connection to completion, logging how it ended.
pub async fn run(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, target: Target) {
    let span = info_span!(
        "conn",
        client = %peer,
        listener = %target.label(),
        broker = tracing::field::Empty,
        identity = tracing::field::Empty,
    );
    async move {
        let mut state = State::Connecting;
        let result = connect_and_pump(&shared, client, &target, &mut state).await;
        state = advance(state, Event::Ended);
        match result {
            Ok(()) => debug!(%state, "client closed the connection"),
            Err(e) => log_end(&e),
        }
    }
    .instrument(span)
    .await
}

async fn connect_and_pump(
    shared: &Shared,
    client: TcpStream,
    target: &Target,
    state: &mut State,
) -> Result<(), SessionError> {
    let client = match &shared.downstream_tls {
        Some(tls) if target.client_tls(true) => {
            let (s, id) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(client))
                .await
                .map_err(|_| SessionError::Tls("client TLS handshake timed out".into()))?
                .map_err(SessionError::Tls)?;
            if let Some(id) = id {
                tracing::Span::current().record("identity", tracing::field::display(&id.subject));
            }
            Stream::Server(Box::new(s))
        }
        _ => Stream::Plain(client),
    };
    if let crate::listener::registry::Target::Broker(slot) = target {
        shared.throttle.wait(&slot.upstream().to_string()).await;
    }
    let up = dial(&shared.config, target).await?;
    tracing::Span::current().record("broker", tracing::field::display(&up.broker));
    let broker = up.broker.clone();
    let mut upstream = match &shared.upstream_tls {
        Some(tls) => {
            let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(up.stream, &up.broker.host))
                .await
                .map_err(|_| SessionError::Tls(format!("TLS handshake with {} timed out", up.broker)))?
                .map_err(SessionError::Tls)?;
            Stream::Client(Box::new(s))
        }
        None => Stream::Plain(up.stream),
    };
    *state = advance(
        *state,
        Event::UpstreamConnected {
            sasl: shared.authenticator.is_some(),
        },
    );
    let mut lifetime = 0;
    if let Some(a) = &shared.authenticator {
        let key = broker.to_string();
        match auth::authenticate(a, &mut upstream, &broker.host).await {
            Ok(o) => {
                shared.throttle.clear(&key);
                lifetime = o.session_lifetime_ms;
                tracing::debug!(session_lifetime_ms = lifetime, "authenticated to the broker");
            }
            Err(e) => {
                if e.is_throttle() {
                    shared.throttle.hit(&key);
                }
                crate::metrics::get()
                    .upstream_failures
                    .add(("sasl", e.short_cause()), 1);
                return Err(e.into());
            }
        }
        *state = advance(*state, Event::Authenticated);
    }
    let reauth = || {
        shared.authenticator.as_deref().map(|a| ReauthPlan {
            authenticator: a,
            broker_host: &broker.host,
            session_lifetime_ms: lifetime,
        })
    };
    let limits = Limits {
        max_frame: shared.config.max_frame_bytes,
        max_in_flight: shared.config.max_in_flight,
    };
    let mapper = shared.registry.as_ref();
    match (client, upstream) {
        (Stream::Plain(mut c), Stream::Plain(mut u)) => {
            let (cr, cw) = c.split();
            let (ur, uw) = u.split();
            pump(cr, cw, ur, uw, &limits, mapper, reauth()).await
        }
        (c, u) => {
            let (cr, cw) = tokio::io::split(c);
            let (ur, uw) = tokio::io::split(u);
            pump(cr, cw, ur, uw, &limits, mapper, reauth()).await
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
    let client_reset = matches!(e, SessionError::ClientFrame(FrameError::Io(io))
        if matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe));
    match e {
        _ if client_reset => debug!(error = %e, "client reset the connection"),
        SessionError::ClientIo(_) | SessionError::ResponseSideGone => {
            debug!(error = %e, "connection closed")
        }
        _ => warn!(error = %e, "closing connection"),
    }
}
