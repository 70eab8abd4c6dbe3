//! The connection's state machine, written down in one place.
//!
//! ```text
//!                  ┌─[client_auth]─► ClientAuthenticating ──client SASL ok──┐
//!                  │                 (kgate answers ApiVersions, SASL)      │
//!                  │                                                        ▼
//! AwaitingRequest ─┴──first complete, valid request─────────────────────► Connecting
//!                                                                           │    │
//!                       ┌───────────────upstream open, no SASL──────────────┘    │ upstream open, SASL
//!                       ▼                                                        ▼
//!               ┌─► Forwarding ◄──────────────────SASL ok────────────────── Authenticating
//!    re-auth ok │     │    │
//!               │     │    └──shutdown, cluster changed──► Draining ◄──┐
//!               │     │ re-auth due                          ▲  │      │
//!               │     ▼                                      │  └──────┘ shutdown (again)
//!               └─ PausedForReauth ─────────shutdown─────────┘
//!                  (new requests held, in-flight          (no new requests; in-flight
//!                   drained, kgate's own SASL)             finish, then Closed)
//!
//! AwaitingRequest, ClientAuthenticating, Connecting, Authenticating ──shutdown──► Closed
//! any state ──Ended (client EOF, deadline, junk, error, upstream loss, failed auth)──► Closed
//! ```
//!
//! * **AwaitingRequest**: the client is accepted (and its TLS done); kgate
//!   waits, within a deadline and a tight size bound, for one complete,
//!   valid request (a key and version of the decision table, a client id
//!   that fits the frame). Nothing happens upstream: an empty connect, a
//!   port scan, junk or a slowloris costs the broker nothing.
//! * **ClientAuthenticating**: with `[client_auth]`, kgate is the SASL
//!   server: it answers ApiVersions, SaslHandshake and SaslAuthenticate
//!   itself, within `auth_timeout_ms` and a 512 KiB frame bound. Nothing
//!   happens upstream until the client authenticated: the principal is
//!   known before the upstream connection is chosen.
//! * **Connecting**: the upstream TCP and TLS connection is being opened.
//! * **Authenticating**: kgate's own SASL exchange with the broker, using
//!   correlation ids kgate owns. No client byte is forwarded.
//! * **Forwarding**: requests flow client → broker, responses back.
//! * **PausedForReauth**: new client requests are held (back-pressure, not
//!   dropped) while in-flight responses drain and kgate re-authenticates.
//! * **Draining**: shutdown, or a cut-over to another cluster
//!   (`ClusterChanged`); no new requests, in-flight ones finish, then the
//!   connection closes at that request boundary.
//! * **Closed**: terminal.

use std::fmt;
use tracing::debug;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AwaitingRequest,
    ClientAuthenticating,
    Connecting,
    Authenticating,
    Forwarding,
    PausedForReauth,
    Draining,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The client's first complete request arrived.
    FirstRequest,
    /// The first request arrived on a listener whose clients authenticate.
    FirstRequestNeedsAuth,
    /// The client completed SASL toward kgate.
    ClientAuthenticated,
    /// The upstream connection is up; `sasl` says whether kgate must
    /// authenticate before forwarding.
    UpstreamConnected {
        sasl: bool,
    },
    Authenticated,
    ReauthDue,
    Reauthenticated,
    ShutdownRequested,
    /// A cut-over made another cluster current: finish in-flight requests
    /// and close at a request boundary; the client reconnects.
    ClusterChanged,
    /// Client EOF, protocol error, upstream loss or failed (re)auth.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid transition from {from} on {event:?}")]
pub struct InvalidTransition {
    pub from: State,
    pub event: Event,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl State {
    /// The transition table. Anything not listed is a bug and is refused.
    pub fn on(self, event: Event) -> Result<State, InvalidTransition> {
        use Event::*;
        use State::*;
        let next = match (self, event) {
            (AwaitingRequest, FirstRequest) => Connecting,
            (AwaitingRequest, FirstRequestNeedsAuth) => ClientAuthenticating,
            (ClientAuthenticating, ClientAuthenticated) => Connecting,
            (AwaitingRequest | ClientAuthenticating, ShutdownRequested) => Closed,
            (Connecting, UpstreamConnected { sasl: true }) => Authenticating,
            (Connecting, UpstreamConnected { sasl: false }) => Forwarding,
            (Authenticating, Authenticated) => Forwarding,
            (Forwarding, ReauthDue) => PausedForReauth,
            (PausedForReauth, Reauthenticated) => Forwarding,
            (Forwarding | PausedForReauth, ShutdownRequested) => Draining,
            (Forwarding, ClusterChanged) => Draining,
            (Connecting | Authenticating, ShutdownRequested) => Closed,
            (Draining, ShutdownRequested) => Draining,
            (_, Ended) => Closed,
            (from, event) => return Err(InvalidTransition { from, event }),
        };
        Ok(next)
    }

    /// Whether new client requests may be sent upstream in this state.
    pub fn forwards_requests(self) -> bool {
        self == State::Forwarding
    }
}

/// The state a connection is in. Every change goes through
/// [`Machine::on`]: it is checked against the table, logged at debug, and
/// a refused one is an error the session closes on — never silent.
#[derive(Debug)]
pub struct Machine {
    state: State,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            state: State::AwaitingRequest,
        }
    }
}

impl Machine {
    pub fn state(&self) -> State {
        self.state
    }

    pub fn on(&mut self, event: Event) -> Result<State, InvalidTransition> {
        let from = self.state;
        match from.on(event) {
            Ok(to) => {
                debug!(%from, %to, ?event, "state");
                self.state = to;
                Ok(to)
            }
            Err(e) => {
                debug!(%from, ?event, "state change refused");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Event::*;
    use super::State::*;

    #[test]
    fn lifecycle_with_and_without_sasl() {
        let s = Connecting.on(UpstreamConnected { sasl: false }).unwrap();
        assert_eq!(s, Forwarding);
        let s = Connecting.on(UpstreamConnected { sasl: true }).unwrap();
        assert_eq!(s, Authenticating);
        assert!(!s.forwards_requests());
        let s = s.on(Authenticated).unwrap();
        assert!(s.forwards_requests());
        let p = s.on(ReauthDue).unwrap();
        assert_eq!(p, PausedForReauth);
        assert!(!p.forwards_requests());
        assert_eq!(p.on(Reauthenticated).unwrap(), Forwarding);
        assert_eq!(s.on(ShutdownRequested).unwrap(), Draining);
        assert_eq!(s.on(ClusterChanged).unwrap(), Draining, "a cut-over drains");
        assert!(Connecting.on(ClusterChanged).is_err());
        assert_eq!(Draining.on(Ended).unwrap(), Closed);
    }

    #[test]
    fn machine_walks_the_table_and_refuses_what_it_does_not_allow() {
        use super::Machine;
        let mut m = Machine::default();
        assert_eq!(m.state(), AwaitingRequest);
        assert!(
            m.on(UpstreamConnected { sasl: true }).is_err(),
            "nothing upstream before a request"
        );
        assert_eq!(m.on(FirstRequest).unwrap(), Connecting);
        assert!(m.on(Authenticated).is_err());
        assert_eq!(m.state(), Connecting, "a refused event leaves the state alone");
        assert_eq!(m.on(UpstreamConnected { sasl: true }).unwrap(), Authenticating);
        assert!(m.on(ReauthDue).is_err());
        assert_eq!(m.on(Authenticated).unwrap(), Forwarding);
        assert_eq!(m.on(ReauthDue).unwrap(), PausedForReauth);
        assert!(m.on(ReauthDue).is_err());
        assert_eq!(m.on(ShutdownRequested).unwrap(), Draining);
        assert!(m.on(Reauthenticated).is_err());
        assert_eq!(m.on(Ended).unwrap(), Closed);
        assert!(m.on(UpstreamConnected { sasl: false }).is_err());
        assert!(m.on(ShutdownRequested).is_err());
    }

    const STATES: [super::State; 8] = [
        AwaitingRequest,
        ClientAuthenticating,
        Connecting,
        Authenticating,
        Forwarding,
        PausedForReauth,
        Draining,
        Closed,
    ];
    const EVENTS: [super::Event; 11] = [
        FirstRequest,
        FirstRequestNeedsAuth,
        ClientAuthenticated,
        UpstreamConnected { sasl: true },
        UpstreamConnected { sasl: false },
        Authenticated,
        ReauthDue,
        Reauthenticated,
        ShutdownRequested,
        ClusterChanged,
        Ended,
    ];

    /// Every allowed transition, written out independently of `State::on`
    /// (the diagram in this file's doc and the README show the same).
    const EXPECTED: &[(super::State, super::Event, super::State)] = &[
        (AwaitingRequest, FirstRequest, Connecting),
        (AwaitingRequest, FirstRequestNeedsAuth, ClientAuthenticating),
        (AwaitingRequest, ShutdownRequested, Closed),
        (ClientAuthenticating, ClientAuthenticated, Connecting),
        (ClientAuthenticating, ShutdownRequested, Closed),
        (Connecting, UpstreamConnected { sasl: true }, Authenticating),
        (Connecting, UpstreamConnected { sasl: false }, Forwarding),
        (Connecting, ShutdownRequested, Closed),
        (Authenticating, Authenticated, Forwarding),
        (Authenticating, ShutdownRequested, Closed),
        (Forwarding, ReauthDue, PausedForReauth),
        (Forwarding, ShutdownRequested, Draining),
        (Forwarding, ClusterChanged, Draining),
        (PausedForReauth, Reauthenticated, Forwarding),
        (PausedForReauth, ShutdownRequested, Draining),
        (Draining, ShutdownRequested, Draining),
        (AwaitingRequest, Ended, Closed),
        (ClientAuthenticating, Ended, Closed),
        (Connecting, Ended, Closed),
        (Authenticating, Ended, Closed),
        (Forwarding, Ended, Closed),
        (PausedForReauth, Ended, Closed),
        (Draining, Ended, Closed),
        (Closed, Ended, Closed),
    ];

    #[test]
    fn every_listed_transition_happens_and_every_other_pair_is_refused() {
        for s in STATES {
            for e in EVENTS {
                let want = EXPECTED
                    .iter()
                    .find(|(from, on, _)| *from == s && *on == e)
                    .map(|t| t.2);
                match (s.on(e), want) {
                    (Ok(to), Some(w)) => assert_eq!(to, w, "{s} on {e:?}"),
                    (Err(r), None) => assert_eq!((r.from, r.event), (s, e)),
                    (got, want) => panic!("{s} on {e:?}: got {got:?}, the table says {want:?}"),
                }
            }
        }
        let listed: std::collections::HashSet<_> =
            EXPECTED.iter().map(|(s, e, _)| format!("{s}{e:?}")).collect();
        assert_eq!(listed.len(), EXPECTED.len(), "no pair listed twice");
    }

    #[test]
    fn the_table_keeps_its_invariants() {
        for (s, e, to) in EXPECTED.iter().copied() {
            assert!(e == Ended || s != Closed, "{s} must be terminal");
            assert!(to != AwaitingRequest, "nothing returns to AwaitingRequest");
            assert!(
                to != Connecting || s == AwaitingRequest || s == ClientAuthenticating,
                "only a first request or a client authentication leads to Connecting"
            );
            assert!(
                to != ClientAuthenticating || s == AwaitingRequest,
                "client authentication happens once, before anything upstream"
            );
        }
    }

    #[test]
    fn client_authentication_comes_before_the_upstream() {
        let s = AwaitingRequest.on(FirstRequestNeedsAuth).unwrap();
        assert_eq!(s, ClientAuthenticating);
        assert!(!s.forwards_requests());
        assert!(
            s.on(UpstreamConnected { sasl: false }).is_err(),
            "no upstream before the client authenticated"
        );
        assert!(s.on(FirstRequest).is_err());
        assert_eq!(s.on(ClientAuthenticated).unwrap(), Connecting);
        assert_eq!(s.on(ShutdownRequested).unwrap(), Closed);
        assert_eq!(s.on(Ended).unwrap(), Closed);
        assert!(
            Forwarding.on(ClientAuthenticated).is_err(),
            "re-authentication is the filter's, not a state change"
        );
        assert!(Connecting.on(FirstRequestNeedsAuth).is_err());
    }

    #[test]
    fn impossible_transitions_are_refused() {
        assert!(Connecting.on(Authenticated).is_err());
        assert!(Forwarding.on(Authenticated).is_err());
        assert!(Closed.on(UpstreamConnected { sasl: false }).is_err());
        assert!(Draining.on(ReauthDue).is_err());
        assert!(Authenticating.on(ReauthDue).is_err());
    }
}
