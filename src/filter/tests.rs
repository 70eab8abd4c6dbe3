//! Test support shared by the filters' unit tests.

use super::Conn;
use crate::config::HostPort;
use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;
use tokio::time::Instant;

pub struct TestConn {
    pub lifetime: AtomicI64,
    pub due: Mutex<Option<Instant>>,
    pub broker: Option<HostPort>,
    pub principal: Option<std::sync::Arc<str>>,
    pub stash: Mutex<Vec<(i32, Box<dyn std::any::Any + Send>)>>,
    pub upstream_auth: Option<std::sync::Arc<crate::upstream::sasl::Authenticator>>,
    /// The cluster generation the connection's broker belongs to.
    pub generation: u64,
}

impl TestConn {
    pub fn as_principal(p: &str) -> Self {
        TestConn {
            principal: Some(p.into()),
            ..Default::default()
        }
    }
}

impl Default for TestConn {
    fn default() -> Self {
        TestConn {
            lifetime: AtomicI64::new(0),
            due: Mutex::new(None),
            broker: Some(HostPort::new("b-1.example", 9098)),
            principal: None,
            stash: Mutex::new(Vec::new()),
            upstream_auth: None,
            generation: 0,
        }
    }
}

impl Conn for TestConn {
    fn listener(&self) -> &str {
        "test"
    }
    fn client(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }
    fn identity(&self) -> Option<&str> {
        None
    }
    fn broker(&self) -> Option<HostPort> {
        self.broker.clone()
    }
    fn session_lifetime_ms(&self) -> i64 {
        self.lifetime.load(Relaxed)
    }
    fn set_session_lifetime_ms(&self, ms: i64) {
        self.lifetime.store(ms, Relaxed)
    }
    fn reauth_due(&self) -> Option<Instant> {
        *self.due.lock().unwrap()
    }
    fn set_reauth_due(&self, at: Option<Instant>) {
        *self.due.lock().unwrap() = at;
    }
    fn principal(&self) -> Option<std::sync::Arc<str>> {
        self.principal.clone()
    }
    fn cluster_generation(&self) -> u64 {
        self.generation
    }
    fn stash(&self, correlation_id: i32, v: Box<dyn std::any::Any + Send>) {
        self.stash.lock().unwrap().push((correlation_id, v));
    }
    fn unstash(&self, correlation_id: i32) -> Option<Box<dyn std::any::Any + Send>> {
        let mut s = self.stash.lock().unwrap();
        let i = s.iter().position(|(c, _)| *c == correlation_id)?;
        Some(s.remove(i).1)
    }
    fn authenticator(&self) -> Option<std::sync::Arc<crate::upstream::sasl::Authenticator>> {
        self.upstream_auth.clone()
    }
}

/// A Produce request frame encoded by kafka-protocol.
pub fn produce_frame(version: i16, acks: i16) -> Vec<u8> {
    use kafka_protocol::messages::{ProduceRequest, RequestHeader as KpHeader, TransactionalId};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut body = BytesMut::new();
    body.put_i32(0);
    KpHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(version)
        .with_correlation_id(77)
        .with_client_id(Some(StrBytes::from_static_str("test-client")))
        .encode(&mut body, if version >= 9 { 2 } else { 1 })
        .unwrap();
    ProduceRequest::default()
        .with_acks(acks)
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t"))))
        .encode(&mut body, version)
        .unwrap();
    let n = (body.len() - 4) as i32;
    body[..4].copy_from_slice(&n.to_be_bytes());
    body.to_vec()
}
