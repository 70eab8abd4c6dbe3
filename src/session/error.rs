//! Why a session ended. Each message says what happened and, where it
//! helps, what to check.

use crate::protocol::frame::FrameError;
use crate::upstream::dial::DialError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Sasl(#[from] crate::upstream::sasl::SaslError),
    #[error("re-authentication failed: {0}")]
    Reauth(String),
    #[error("upstream unavailable: {0}")]
    Dial(#[from] DialError),
    #[error("client connection failed: {0}")]
    ClientFrame(FrameError),
    #[error("malformed request from client (api key {api_key:?}): {cause}")]
    ClientMalformed { api_key: Option<i16>, cause: String },
    #[error("client sent api key {api_key} v{api_version}: {why}; the connection is closed")]
    Rejected {
        api_key: i16,
        api_version: i16,
        why: &'static str,
    },
    #[error("broker connection failed: {0}")]
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
}
