//! Client SASL while forwarding, used instead of `sasl_refusal` when
//! `[client_auth]` is configured. The client authenticated to kgate
//! before the upstream opened; here kgate answers its KIP-368
//! re-authentication (SaslHandshake + SaslAuthenticate) itself, never
//! forwarding it, requires the same principal, and renews the expiry.
//!
//! With `session_lifetime_ms` set, every request's header is checked: a
//! request other than those two arriving after the session expired closes
//! the connection, as Apache Kafka does. Without it, only the two SASL
//! keys are looked at and the hot path is unchanged.

use super::{Conn, Filter, FilterError, Need, RequestVerdict};
use crate::downstream::sasl::{Outcome, Peer, Server};
use crate::metrics;
use crate::protocol::header::{key, RequestHeader};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::info;

pub struct ClientSasl {
    pub server: Arc<Server>,
}

fn is_sasl(api_key: i16) -> bool {
    api_key == key::SASL_HANDSHAKE || api_key == key::SASL_AUTHENTICATE
}

impl Filter for ClientSasl {
    fn name(&self) -> &'static str {
        "client_sasl"
    }

    fn request_need(&self, api_key: i16, _version: i16) -> Need {
        if is_sasl(api_key) {
            Need::Whole
        } else if self.server.config.session_lifetime_ms.is_some() {
            Need::Header
        } else {
            Need::Skip
        }
    }

    fn on_request(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        let Some(session) = conn.client_sasl() else {
            return Err(FilterError::ClientAuth(
                "no client SASL state on this connection".into(),
            ));
        };
        let mut s = match session.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !is_sasl(h.api_key) {
            if s.expired(Instant::now()) {
                metrics::get().client_sessions_expired.fetch_add(1, Relaxed);
                info!(
                    principal = ?s.principal().as_deref().unwrap_or("-"),
                    api_key = h.api_key,
                    "client session expired without re-authentication; closing the connection (as Kafka does)"
                );
                return Err(FilterError::ClientAuth(
                    "client session expired (client_auth.session_lifetime_ms); the client did not re-authenticate".into(),
                ));
            }
            return Ok(RequestVerdict::Pass);
        }
        let peer = Peer {
            listener: conn.listener(),
            client: conn.client(),
        };
        let reply = self.server.on_request(&mut s, h, frame, &peer);
        Ok(match reply.outcome {
            Outcome::Failed(why) => {
                RequestVerdict::AnswerAndClose(reply.response, FilterError::ClientAuth(why))
            }
            Outcome::Continue | Outcome::Authenticated { .. } => RequestVerdict::Answer(reply.response),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientAuthConfig, ClientMechanism};
    use crate::downstream::sasl::{users, Session};
    use std::sync::Mutex;

    struct SaslConn(Mutex<Session>, crate::filter::tests::TestConn);

    impl Conn for SaslConn {
        fn listener(&self) -> &str {
            self.1.listener()
        }
        fn client(&self) -> std::net::SocketAddr {
            self.1.client()
        }
        fn identity(&self) -> Option<&str> {
            None
        }
        fn broker(&self) -> Option<crate::config::HostPort> {
            None
        }
        fn session_lifetime_ms(&self) -> i64 {
            0
        }
        fn set_session_lifetime_ms(&self, _: i64) {}
        fn reauth_due(&self) -> Option<Instant> {
            None
        }
        fn set_reauth_due(&self, _: Option<Instant>) {}
        fn client_sasl(&self) -> Option<&Mutex<Session>> {
            Some(&self.0)
        }
    }

    fn filter(lifetime: Option<i64>) -> (ClientSasl, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.toml");
        users::add_user(&p, "alice", users::Hash::Sha512, b"pw", 4096).unwrap();
        let server = Server::new(&ClientAuthConfig {
            mechanisms: vec![ClientMechanism::Plain],
            users_file: Some(p),
            session_lifetime_ms: lifetime,
            auth_timeout: std::time::Duration::from_secs(1),
            oauthbearer: None,
        })
        .unwrap();
        (
            ClientSasl {
                server: Arc::new(server),
            },
            dir,
        )
    }

    fn frame(api_key: i16, body: &[u8]) -> (Vec<u8>, RequestHeader) {
        let mut f = vec![0, 0, 0, 0];
        f.extend_from_slice(&api_key.to_be_bytes());
        f.extend_from_slice(&1i16.to_be_bytes());
        f.extend_from_slice(&9i32.to_be_bytes());
        f.extend_from_slice(&[0xff, 0xff]);
        f.extend_from_slice(body);
        let n = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&n.to_be_bytes());
        let h = RequestHeader {
            api_key,
            api_version: 1,
            correlation_id: 9,
        };
        (f, h)
    }

    #[test]
    fn the_hot_path_is_untouched_without_a_lifetime() {
        let (f, _d) = filter(None);
        assert_eq!(f.request_need(17, 1), Need::Whole);
        assert_eq!(f.request_need(36, 2), Need::Whole);
        assert_eq!(f.request_need(0, 9), Need::Skip);
        let (f, _d) = filter(Some(5000));
        assert_eq!(f.request_need(0, 9), Need::Header);
    }

    #[test]
    fn reauthentication_is_answered_and_expiry_closes() {
        let (f, _d) = filter(Some(5000));
        let conn = SaslConn(Mutex::new(Session::default()), Default::default());
        let (hs, hh) = frame(17, b"\x00\x05PLAIN");
        assert!(matches!(
            f.on_request(&conn, &hh, &hs).unwrap(),
            RequestVerdict::Answer(_)
        ));
        let (a, ah) = frame(36, b"\x00\x00\x00\x09\0alice\0pw");
        assert!(matches!(
            f.on_request(&conn, &ah, &a).unwrap(),
            RequestVerdict::Answer(_)
        ));
        let (p, ph) = frame(3, b"");
        assert!(matches!(
            f.on_request(&conn, &ph, &p).unwrap(),
            RequestVerdict::Pass
        ));
        conn.0.lock().unwrap().expires = Some(Instant::now());
        assert!(matches!(
            f.on_request(&conn, &ph, &p),
            Err(FilterError::ClientAuth(_))
        ));
        // A handshake is still answered after expiry (that is the re-auth).
        assert!(matches!(
            f.on_request(&conn, &hh, &hs).unwrap(),
            RequestVerdict::Answer(_)
        ));
        let (bad, bh) = frame(36, b"\x00\x00\x00\x09\0alice\0px");
        assert!(matches!(
            f.on_request(&conn, &bh, &bad).unwrap(),
            RequestVerdict::AnswerAndClose(_, _)
        ));
    }
}
