//! One client ↔ broker pair: dial, (later) authenticate, then pump until
//! either side ends. The states are in [`state`].

pub mod error;
pub mod pump;
pub mod state;

use crate::listener::registry::Target;
use crate::upstream::dial::dial;
use crate::Shared;
use error::SessionError;
use pump::{pump, Limits};
use state::{Event, State};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tracing::{debug, info_span, warn, Instrument};

/// Runs one client connection to completion, logging how it ended.
pub async fn run(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr, target: Target) {
    let span = info_span!("conn", client = %peer, listener = %target.label(), broker = tracing::field::Empty);
    let fut = async move {
        let mut state = State::Connecting;
        let result = async {
            let mut up = dial(&shared.config, &target).await?;
            tracing::Span::current().record("broker", tracing::field::display(&up.broker));
            state = advance(state, Event::UpstreamConnected { sasl: false });
            let limits = Limits {
                max_frame: shared.config.max_frame_bytes,
                max_in_flight: shared.config.max_in_flight,
            };
            let (cr, cw) = client.split();
            let (ur, uw) = up.stream.split();
            pump(cr, cw, ur, uw, &limits, shared.registry.as_ref()).await
        }
        .await;
        state = advance(state, Event::Ended);
        match result {
            Ok(()) => debug!(%state, "client closed the connection"),
            Err(e) => log_end(&e),
        }
    };
    fut.instrument(span).await
}

fn advance(state: State, event: Event) -> State {
    state.on(event).unwrap_or_else(|e| {
        warn!(error = %e, "state machine refused a transition; closing");
        State::Closed
    })
}

fn log_end(e: &SessionError) {
    match e {
        SessionError::ClientIo(_) | SessionError::ResponseSideGone => {
            debug!(error = %e, "connection closed")
        }
        _ => warn!(error = %e, "closing connection"),
    }
}
