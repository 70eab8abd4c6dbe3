//! Why a session ended. Each message says what happened and, where it
//! helps, what to check.

use super::state::InvalidTransition;
use crate::filter::FilterError;
use crate::protocol::frame::FrameError;
use crate::tls::describe::describe_io;
use crate::upstream::connect::ConnectError;

/// A frame error as an operator reads it (TLS causes spelled out).
fn frame(e: &FrameError) -> String {
    match e {
        FrameError::Io(io) => describe_io(io),
        other => other.to_string(),
    }
}

impl SessionError {
    /// A short, bounded name of the cause (log rate-limiting keys).
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Tls(_) => "tls",
            SessionError::Connect(_) => "upstream",
            SessionError::Filter(_) => "filter",
            SessionError::State(_) => "state",
            SessionError::ClientFrame(_) | SessionError::ClientMalformed { .. } => "client_frame",
            SessionError::UpstreamFrame(_) | SessionError::UpstreamMalformed { .. } => "broker_frame",
            SessionError::CorrelationMismatch { .. } | SessionError::Unsolicited => "broker_protocol",
            SessionError::UpstreamClosed { .. } | SessionError::UpstreamIo(_) => "broker_io",
            SessionError::RequestTimeout { .. } => "request_timeout",
            SessionError::ClientAuthFailed(_)
            | SessionError::ClientAuth(_)
            | SessionError::ClientAuthTimeout(_) => "client_auth",
            _ => "other",
        }
    }

    /// A bounded label for the protocol-error metric, if this is one.
    pub fn protocol_kind(&self) -> Option<&'static str> {
        use crate::protocol::frame::FrameError as F;
        Some(match self {
            SessionError::ClientFrame(F::TlsOnPlaintext) => "tls_on_plaintext",
            SessionError::ClientFrame(F::HttpOnKafka) => "http_on_kafka",
            SessionError::ClientFrame(F::NegativeLength(_)) => "negative_length",
            SessionError::ClientFrame(F::TooLarge { .. } | F::FirstTooLarge { .. }) => "frame_too_large",
            SessionError::ClientFrame(F::TooShort(_)) => "frame_too_short",
            SessionError::ClientFrame(F::Truncated { .. }) => "truncated_frame",
            SessionError::ClientMalformed { .. } => "malformed_request",
            SessionError::BadFirstRequest(_) => "bad_first_request",
            SessionError::Filter(FilterError::MalformedRequest { .. }) => "malformed_request",
            SessionError::Filter(FilterError::Rejected { .. }) => "refused_api",
            SessionError::Filter(FilterError::MalformedResponse { .. }) => "malformed_response",
            SessionError::UpstreamFrame(F::Io(_)) => return None,
            SessionError::UpstreamFrame(_) => "bad_broker_frame",
            SessionError::UpstreamMalformed { .. } => "malformed_response",
            SessionError::CorrelationMismatch { .. } => "correlation_mismatch",
            SessionError::Unsolicited => "unsolicited_response",
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Filter(#[from] FilterError),
    #[error("state machine: {0}")]
    State(String),
    #[error("client connection failed: {}", frame(.0))]
    ClientFrame(FrameError),
    #[error("malformed request from client (api key {api_key:?}): {cause}")]
    ClientMalformed { api_key: Option<i16>, cause: String },
    #[error("broker connection failed: {}", frame(.0))]
    UpstreamFrame(FrameError),
    #[error("broker sent a malformed response to api key {api_key} v{api_version}: {cause}")]
    UpstreamMalformed {
        api_key: i16,
        api_version: i16,
        cause: String,
    },
    #[error("broker answered api key {api_key} with correlation id {got}, expected {expected}")]
    CorrelationMismatch { api_key: i16, expected: i32, got: i32 },
    #[error("broker sent bytes with no request in flight")]
    Unsolicited,
    #[error("broker closed the connection with {in_flight} request(s) in flight")]
    UpstreamClosed { in_flight: usize },
    #[error("writing to broker failed: {0}")]
    UpstreamIo(std::io::Error),
    #[error("writing to client failed: {0}")]
    ClientIo(std::io::Error),
    #[error("response side ended")]
    ResponseSideGone,
    #[error("listener {0} stands for a broker of the cluster kgate switched away from, and the new cluster has not named its broker for this listener (yet); the client will refresh its metadata")]
    StaleBroker(String),
    #[error("client left before sending anything")]
    ClientGone,
    #[error("client authentication failed: {0}")]
    ClientAuthFailed(String),
    #[error("client authentication: {0}; closing the connection")]
    ClientAuth(String),
    #[error("client did not authenticate within {0:?} (client_auth.auth_timeout_ms)")]
    ClientAuthTimeout(std::time::Duration),
    #[error("first request is not a Kafka request kgate serves ({0}); closed before any upstream work")]
    BadFirstRequest(String),
    #[error("no complete request within {0:?} of connecting (first_request_timeout_ms)")]
    FirstRequestTimeout(std::time::Duration),
    #[error("idle for {0:?} with nothing in flight (idle_timeout_ms)")]
    Idle(std::time::Duration),
    #[error("broker did not answer api key {api_key} within {after:?} (request_timeout_ms)")]
    RequestTimeout {
        api_key: i16,
        after: std::time::Duration,
    },
}

impl From<InvalidTransition> for SessionError {
    fn from(e: InvalidTransition) -> Self {
        SessionError::State(e.to_string())
    }
}
