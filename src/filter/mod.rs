//! The filter chain. Every behaviour that looks inside a frame is a filter:
//! the allow-list, the SASL refusal, the ApiVersions cap, broker-address
//! rewriting, acks=0 tracking and re-authentication.
//!
//! Each filter declares, per (api_key, version), how much of a request and
//! of its response it must see ([`Need`], [`ResponseNeed`]). The chain
//! folds those declarations into one table at start-up, and that table is
//! the single decode-or-pass decision: a frame no filter asked for is
//! streamed through without being assembled or decoded.
//!
//! A filter can pass a frame, replace it, answer the client itself with a
//! well-formed response ([`RequestVerdict::Answer`]), say that no response
//! will come (acks=0), close the connection, or — from a timer — inject
//! requests of its own whose responses come back to it ([`Inject`]).

pub mod acks;
pub mod allow_list;
pub mod api_versions;
pub mod broker_address;
pub mod chain;
pub mod client_sasl;
pub mod policy;
pub mod producer_ids;
pub mod reauth;
pub mod sasl_refusal;

use crate::config::HostPort;
use crate::protocol::header::RequestHeader;
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;

pub use chain::{Chain, Plan};

/// Today's chain, in order: client SASL (re-authentication, with
/// `[client_auth]`) or its refusal, and the allow-list answer or close
/// first; the policy (only when `[policy]` is configured) answers denials
/// and splits mixed requests; acks tracking reads Produce heads;
/// ApiVersions and broker-address rewriting handle responses;
/// producer ids are learned (and, on cluster generations after the first,
/// mapped: `producers.rewrite`); re-authentication runs on its timer on
/// connections whose upstream uses SASL.
pub fn standard_chain(
    mapper: Arc<dyn crate::rewrite::BrokerMapper>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    policy: Option<(
        Arc<crate::config::policy::PolicyConfig>,
        Arc<policy::ids::TopicIds>,
    )>,
    clients: ClientSide,
    producers: producer_ids::ProducerIds,
) -> Chain {
    let sasl: Arc<dyn Filter> = match &clients.auth {
        Some(server) => Arc::new(client_sasl::ClientSasl {
            server: server.clone(),
        }),
        None => Arc::new(sasl_refusal::SaslRefusal),
    };
    let mut filters: Vec<Arc<dyn Filter>> = vec![sasl, Arc::new(allow_list::AllowList)];
    if let Some((p, ids)) = policy {
        filters.push(Arc::new(policy::Policy::new(p, ids)));
    }
    filters.extend([
        Arc::new(acks::Acks) as Arc<dyn Filter>,
        Arc::new(producers),
        Arc::new(api_versions::ApiVersions {
            cache: Some(clients.versions),
            client_sasl: clients.auth.is_some(),
        }),
        Arc::new(broker_address::BrokerAddress {
            mapper,
            generation: Some(generation),
        }),
        // Always present: a cut-over can bring upstream SASL, and a
        // connection without it has no timer, so it costs nothing.
        Arc::new(reauth::Reauth),
    ]);
    Chain::new(filters)
}

/// What the chain needs to know about the client side.
pub struct ClientSide {
    /// kgate's SASL server for clients (`[client_auth]`); `None`: client
    /// SASL is refused.
    pub auth: Option<Arc<crate::downstream::sasl::Server>>,
    /// Where broker ApiVersions lists are kept.
    pub versions: Arc<crate::protocol::sasl_server::VersionsCache>,
}

/// How much of a request a filter must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Not at all.
    Skip,
    /// The header only (api key, version, correlation id).
    Header,
    /// The first [`HEAD_BYTES`] of the frame (or all of it, if shorter).
    Head,
    /// The whole frame, assembled.
    Whole,
}

/// Bytes a `Need::Head` filter sees: enough for the header, a client id
/// and a transactional id (each at most 32 KiB) and the fields after them.
pub const HEAD_BYTES: usize = 66 * 1024;

/// How much of a response a filter must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResponseNeed {
    Skip,
    /// Only the top-level tagged fields that end a Fetch response; the rest
    /// streams through. See [`crate::protocol::fetch_scan`].
    FetchTail,
    Whole,
}

/// What a request filter decided.
#[derive(Debug)]
pub enum RequestVerdict {
    /// Forward unchanged (and let later filters see it).
    Pass,
    /// Forward unchanged; the broker will send no response (acks=0).
    NoResponse,
    /// Do not forward; send this response to the client instead.
    Answer(Bytes),
    /// Forward this frame (same header and correlation id) instead; the
    /// filter then sees the response whole, whatever its declared response
    /// need. Only a filter that asked for the whole request may replace it.
    Replace(Bytes),
    /// Do not forward; send this response, then close the connection
    /// (a failed client re-authentication, as Kafka does).
    AnswerAndClose(Bytes, FilterError),
}

/// Why a filter closes the connection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FilterError {
    #[error("client sent api key {api_key} v{api_version}: {why}; the connection is closed")]
    Rejected {
        api_key: i16,
        api_version: i16,
        why: &'static str,
    },
    #[error("malformed request (api key {api_key}): {cause}")]
    MalformedRequest { api_key: i16, cause: String },
    #[error("broker sent a malformed response to api key {api_key} v{api_version}: {cause}")]
    MalformedResponse {
        api_key: i16,
        api_version: i16,
        cause: String,
    },
    #[error("re-authentication failed: {0}")]
    Reauth(String),
    #[error("client authentication: {0}")]
    ClientAuth(String),
}

/// What filters may know about the connection they run on. The session's
/// context implements it; filters never see the session itself.
pub trait Conn: Send + Sync {
    fn listener(&self) -> &str;
    fn client(&self) -> SocketAddr;
    /// The client certificate's subject, when client TLS verified one.
    fn identity(&self) -> Option<&str>;
    /// The broker this connection reaches, once connected.
    fn broker(&self) -> Option<HostPort>;
    /// Where this connection's listener sends clients, when it differs
    /// from the chain's (the SNI port advertises per-broker names).
    fn broker_mapper(&self) -> Option<&dyn crate::rewrite::BrokerMapper> {
        None
    }
    fn session_lifetime_ms(&self) -> i64;
    fn set_session_lifetime_ms(&self, ms: i64);
    fn reauth_due(&self) -> Option<Instant>;
    fn set_reauth_due(&self, at: Option<Instant>);
    /// The cluster generation the connection's broker belongs to (0:
    /// not known); see `upstream::cluster`.
    fn cluster_generation(&self) -> u64 {
        0
    }
    /// Who the client authenticated as (client SASL, or the mTLS subject
    /// when configured as the principal); `None`: not authenticated.
    fn principal(&self) -> Option<Arc<str>> {
        None
    }
    /// The SASL identity this connection's upstream authenticated with
    /// (its cluster's, or its principal's); `None`: no upstream SASL.
    fn authenticator(&self) -> Option<Arc<crate::upstream::sasl::Authenticator>> {
        None
    }
    /// Keeps what a filter needs to finish the response to request
    /// `correlation_id` (e.g. entries it took out of the request). At most
    /// [`MAX_STASHED`] are kept per connection; the oldest go first.
    fn stash(&self, _correlation_id: i32, _v: Box<dyn std::any::Any + Send>) {}
    /// Takes back the oldest stash for `correlation_id`.
    fn unstash(&self, _correlation_id: i32) -> Option<Box<dyn std::any::Any + Send>> {
        None
    }
    /// The connection's client SASL state (KIP-368 re-authentication
    /// toward clients); `None` where there is none.
    fn client_sasl(&self) -> Option<&std::sync::Mutex<crate::downstream::sasl::Session>> {
        None
    }
}

/// Stashed entries kept per connection (bounded like the in-flight queue).
pub const MAX_STASHED: usize = 1024;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends a request of kgate's own on the connection; its response comes
/// back here and never reaches the client.
pub trait Inject: Send {
    fn round_trip(&mut self, request: Bytes, correlation_id: i32) -> BoxFuture<'_, Result<Bytes, String>>;
}

/// One behaviour in the chain. Every method has a pass-through default, so
/// a filter implements only what it declared a need for.
pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;

    fn request_need(&self, _api_key: i16, _version: i16) -> Need {
        Need::Skip
    }

    fn response_need(&self, _api_key: i16, _version: i16) -> ResponseNeed {
        ResponseNeed::Skip
    }

    /// `frame` is the whole frame, its first [`HEAD_BYTES`], or only the
    /// header bytes, as the filter asked.
    fn on_request(
        &self,
        _conn: &dyn Conn,
        _h: &RequestHeader,
        _frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        Ok(RequestVerdict::Pass)
    }

    /// A whole response; `None` keeps it unchanged.
    fn on_response(
        &self,
        _conn: &dyn Conn,
        _h: &RequestHeader,
        _frame: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        Ok(None)
    }

    /// The top-level tagged-field section that ends a streamed Fetch
    /// response. A replacement must have exactly the same length, because
    /// the frame's size has already gone to the client.
    fn on_response_tail(
        &self,
        _conn: &dyn Conn,
        _h: &RequestHeader,
        _tail: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        Ok(None)
    }

    /// When this filter next wants to run [`Filter::on_timer`].
    fn timer(&self, _conn: &dyn Conn) -> Option<Instant> {
        None
    }

    /// Runs with new client requests held and nothing in flight.
    fn on_timer<'a>(
        &'a self,
        _conn: &'a dyn Conn,
        _io: &'a mut dyn Inject,
    ) -> BoxFuture<'a, Result<(), FilterError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests;
