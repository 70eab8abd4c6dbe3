//! SASL toward clients: kgate is the SASL server. [`Server`] holds the
//! users and the JWKS; each connection keeps a [`Session`]; and
//! [`Server::on_request`] answers one SaslHandshake or SaslAuthenticate
//! frame, before the upstream exists (the session's client-auth stage)
//! and for KIP-368 re-authentication while forwarding (the client_sasl
//! filter). Secrets never reach a log or a metric.

pub mod oauthbearer;
pub mod password;
pub mod plain;
pub mod scram;
pub mod users;

use crate::config::{ClientAuthConfig, ClientMechanism};
use crate::metrics;
use crate::protocol::header::{key, RequestHeader};
use crate::protocol::sasl_server::{
    authenticate_response, handshake_response, read_authenticate, read_handshake, ILLEGAL_SASL_STATE, NONE,
    SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, UNSUPPORTED_VERSION,
};
use bytes::Bytes;
use std::sync::{Arc, RwLock};
use tokio::time::Instant;
use tracing::{debug, warn};
use users::{Hash, Users};

pub struct Server {
    pub config: ClientAuthConfig,
    /// The users file and the JWKS, replaced whole on SIGHUP.
    keys: RwLock<Arc<Keys>>,
}

struct Keys {
    users: Users,
    jwt: Option<oauthbearer::Validator>,
}

/// One connection's SASL state.
#[derive(Default)]
pub struct Session {
    /// Chosen by a SaslHandshake, for the SaslAuthenticate that follows.
    mechanism: Option<ClientMechanism>,
    scram: Option<scram::Pending>,
    /// The mechanism and principal of the last successful authentication.
    authenticated: Option<(ClientMechanism, Arc<str>)>,
    /// KIP-368: when the session expires unless the client re-authenticates.
    pub expires: Option<Instant>,
}

impl Session {
    pub fn principal(&self) -> Option<Arc<str>> {
        self.authenticated.as_ref().map(|(_, p)| p.clone())
    }

    /// Whether the next SaslAuthenticate derives a salted password (PLAIN).
    pub fn checks_password(&self) -> bool {
        self.mechanism == Some(ClientMechanism::Plain)
    }

    /// Whether the session expired. Only a request other than
    /// SaslHandshake/SaslAuthenticate asks: a re-authentication under way
    /// does not keep an expired session open for anything else.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A handshake accepted, or a SCRAM challenge sent: more to come.
    Continue,
    Authenticated {
        principal: Arc<str>,
        lifetime_ms: i64,
    },
    /// The response carries the error; then the connection closes.
    Failed(String),
}

pub struct Reply {
    pub response: Bytes,
    pub outcome: Outcome,
}

/// Where the exchange runs, for logs and metrics.
pub struct Peer<'a> {
    pub listener: &'a str,
    pub client: std::net::SocketAddr,
}

fn hash_of(m: ClientMechanism) -> Option<Hash> {
    match m {
        ClientMechanism::ScramSha256 => Some(Hash::Sha256),
        ClientMechanism::ScramSha512 => Some(Hash::Sha512),
        _ => None,
    }
}

impl Server {
    /// Loads the users file and the JWKS the config names.
    pub fn new(config: &ClientAuthConfig) -> Result<Server, String> {
        Ok(Server {
            config: config.clone(),
            keys: RwLock::new(Arc::new(Self::load(config)?)),
        })
    }

    /// SIGHUP: re-reads the users file and the JWKS; on an error the
    /// loaded ones stay and the error is returned (for the log).
    pub fn reload(&self) -> Result<usize, String> {
        let k = Self::load(&self.config)?;
        let n = k.users.len();
        if let Ok(mut g) = self.keys.write() {
            *g = Arc::new(k);
        }
        Ok(n)
    }

    fn keys(&self) -> Arc<Keys> {
        match self.keys.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn load(config: &ClientAuthConfig) -> Result<Keys, String> {
        let users = match &config.users_file {
            Some(p) => Users::load(p).map_err(|e| format!("key `client_auth.users_file`: {e}"))?,
            None => Users::default(),
        };
        let jwt = config
            .oauthbearer
            .as_ref()
            .map(oauthbearer::Validator::load)
            .transpose()
            .map_err(|e| format!("key `client_auth.oauthbearer.jwks_file`: {e}"))?;
        Ok(Keys { users, jwt })
    }

    pub fn users(&self) -> usize {
        self.keys().users.len()
    }

    fn names(&self) -> Vec<&'static str> {
        self.config.mechanisms.iter().map(|m| m.wire_name()).collect()
    }

    /// Answers one SaslHandshake or SaslAuthenticate frame.
    pub fn on_request(&self, s: &mut Session, h: &RequestHeader, frame: &[u8], peer: &Peer) -> Reply {
        if h.api_key == key::SASL_HANDSHAKE {
            self.handshake(s, h, frame, peer)
        } else {
            self.authenticate(s, h, frame, peer)
        }
    }

    fn handshake(&self, s: &mut Session, h: &RequestHeader, frame: &[u8], peer: &Peer) -> Reply {
        let names = self.names();
        let fail = |code: i16, why: String| {
            self.log_failure(peer, "-", None, &why, s.authenticated.is_some());
            Reply {
                response: handshake_response(h, code, &names),
                outcome: Outcome::Failed(why),
            }
        };
        if h.api_version < 1 {
            return fail(
                UNSUPPORTED_VERSION,
                "SaslHandshake v0 (raw SASL tokens) is not supported; kgate needs SaslHandshake v1 and SaslAuthenticate".into(),
            );
        }
        if s.mechanism.is_some() {
            return fail(
                ILLEGAL_SASL_STATE,
                "a second SaslHandshake before SaslAuthenticate".into(),
            );
        }
        let asked = match read_handshake(frame, h) {
            Ok(m) => m,
            Err(e) => return fail(ILLEGAL_SASL_STATE, format!("malformed SaslHandshake: {e}")),
        };
        let Some(m) = ClientMechanism::parse(asked).filter(|m| self.config.mechanisms.contains(m)) else {
            let shown: String = asked.chars().take(40).collect();
            return fail(
                UNSUPPORTED_SASL_MECHANISM,
                format!(
                    "mechanism {shown:?} is not enabled; kgate offers {}",
                    names.join(", ")
                ),
            );
        };
        if let Some((before, _)) = &s.authenticated {
            if *before != m {
                return fail(
                    UNSUPPORTED_SASL_MECHANISM,
                    format!(
                        "re-authentication must use the same mechanism ({}), not {}",
                        before.wire_name(),
                        m.wire_name()
                    ),
                );
            }
        }
        s.mechanism = Some(m);
        Reply {
            response: handshake_response(h, NONE, &names),
            outcome: Outcome::Continue,
        }
    }

    fn authenticate(&self, s: &mut Session, h: &RequestHeader, frame: &[u8], peer: &Peer) -> Reply {
        let reauth = s.authenticated.is_some();
        let Some(m) = s.mechanism else {
            let why = "SaslAuthenticate before SaslHandshake".to_string();
            self.log_failure(peer, "-", None, &why, reauth);
            return Reply {
                response: authenticate_response(h, ILLEGAL_SASL_STATE, Some(&why), b"", 0),
                outcome: Outcome::Failed(why),
            };
        };
        let step = match read_authenticate(frame, h) {
            Ok(msg) => self.step(s, m, msg),
            Err(e) => Err((None, format!("malformed SaslAuthenticate: {e}"))),
        };
        match step {
            Ok(Step::Challenge(bytes)) => Reply {
                response: authenticate_response(h, NONE, None, &bytes, 0),
                outcome: Outcome::Continue,
            },
            Ok(Step::Done { user, bytes, exp }) => self.done(s, h, m, (user, bytes, exp), peer),
            Err((user, why)) => {
                s.mechanism = None;
                s.scram = None;
                self.log_failure(peer, m.wire_name(), user.as_deref(), &why, reauth);
                let msg = format!(
                    "Authentication failed with SASL mechanism {}: {why}",
                    m.wire_name()
                );
                Reply {
                    response: authenticate_response(h, SASL_AUTHENTICATION_FAILED, Some(&msg), b"", 0),
                    outcome: Outcome::Failed(why),
                }
            }
        }
    }

    /// A successful exchange: the principal (unchanged on re-authentication)
    /// and the session lifetime.
    fn done(
        &self,
        s: &mut Session,
        h: &RequestHeader,
        m: ClientMechanism,
        (user, bytes, exp): (String, Vec<u8>, Option<u64>),
        peer: &Peer,
    ) -> Reply {
        s.mechanism = None;
        let reauth = s.authenticated.is_some();
        if let Some((_, before)) = &s.authenticated {
            if **before != *user {
                let why = "Cannot change principals during re-authentication".to_string();
                self.log_failure(peer, m.wire_name(), Some(&user), &why, true);
                return Reply {
                    response: authenticate_response(h, SASL_AUTHENTICATION_FAILED, Some(&why), b"", 0),
                    outcome: Outcome::Failed(why),
                };
            }
        }
        let lifetime_ms = lifetime(self.config.session_lifetime_ms, exp);
        let now = Instant::now();
        s.expires = (lifetime_ms > 0).then(|| now + std::time::Duration::from_millis(lifetime_ms as u64));
        let principal: Arc<str> = user.into();
        s.authenticated = Some((m, principal.clone()));
        let kind = if reauth { "reauthenticate" } else { "authenticate" };
        metrics::get().client_auth.add((m.wire_name(), "ok", kind), 1);
        debug!(mechanism = m.wire_name(), principal = %principal, lifetime_ms, kind, "client authenticated");
        Reply {
            response: authenticate_response(h, NONE, None, &bytes, lifetime_ms),
            outcome: Outcome::Authenticated {
                principal,
                lifetime_ms,
            },
        }
    }

    fn step(
        &self,
        s: &mut Session,
        m: ClientMechanism,
        msg: &[u8],
    ) -> Result<Step, (Option<String>, String)> {
        let keys = self.keys();
        let lookup = |u: &str| keys.users.get(u).cloned();
        match m {
            ClientMechanism::Plain => {
                let p = plain::parse(msg).map_err(|(u, e)| (u, e.to_string()))?;
                match keys.users.get(p.user) {
                    Some(c) if c.check_password(p.password) => Ok(Step::Done {
                        user: p.user.to_string(),
                        bytes: Vec::new(),
                        exp: None,
                    }),
                    _ => Err((Some(p.user.to_string()), "invalid credentials".into())),
                }
            }
            ClientMechanism::OAuthBearer => {
                let v = keys
                    .jwt
                    .as_ref()
                    .ok_or((None, "OAUTHBEARER is not configured".to_string()))?;
                let token = oauthbearer::parse(msg).map_err(|e| (None, e.to_string()))?;
                let t = v.validate(token).map_err(|e| (None, e))?;
                Ok(Step::Done {
                    user: t.principal,
                    bytes: Vec::new(),
                    exp: Some(t.exp),
                })
            }
            scram_mechanism => {
                let hash = hash_of(scram_mechanism).ok_or((None, "unknown mechanism".to_string()))?;
                match s.scram.take() {
                    None => {
                        let (pending, first) =
                            scram::server_first(msg, hash, lookup).map_err(|(u, e)| (u, e.to_string()))?;
                        s.scram = Some(pending);
                        Ok(Step::Challenge(first))
                    }
                    Some(pending) => {
                        let user = pending.user.clone();
                        let fin = pending
                            .server_final(msg)
                            .map_err(|e| (Some(user.clone()), e.to_string()))?;
                        Ok(Step::Done {
                            user,
                            bytes: fin,
                            exp: None,
                        })
                    }
                }
            }
        }
    }

    fn log_failure(&self, peer: &Peer, mechanism: &'static str, user: Option<&str>, why: &str, reauth: bool) {
        let kind = if reauth { "reauthenticate" } else { "authenticate" };
        metrics::get().client_auth.add((mechanism, "failed", kind), 1);
        if let Some(suppressed) = crate::logs::allow(&format!("{}:client-auth:{mechanism}", peer.listener)) {
            warn!(
                listener = peer.listener,
                client = %peer.client,
                mechanism,
                user = ?user.unwrap_or("-"),
                kind,
                error = why,
                suppressed,
                "client authentication failed; answering with the error and closing"
            );
        }
    }
}

/// The session lifetime granted: the configured one, capped by a token's
/// expiry; 0 when sessions do not expire.
fn lifetime(configured: Option<i64>, exp: Option<u64>) -> i64 {
    let Some(l) = configured else {
        return 0;
    };
    match exp {
        Some(exp) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let left = (exp as i64).saturating_mul(1000) - now;
            l.min(left.max(1))
        }
        None => l,
    }
}

enum Step {
    Challenge(Vec<u8>),
    Done {
        user: String,
        bytes: Vec<u8>,
        exp: Option<u64>,
    },
}

#[cfg(test)]
mod tests;
