//! KIP-368 re-authentication toward the broker. At a jittered 85–90 % of
//! the session lifetime the broker granted, the pump holds new client
//! requests, lets in-flight responses drain, and this filter runs
//! SaslHandshake and SaslAuthenticate through [`Inject`] with kgate's own
//! correlation ids; their responses never reach the client. It signs as
//! the connection's own upstream identity when `[[upstream_identity]]`
//! gave it one, so each principal's role session stays alive.

use super::{BoxFuture, Conn, Filter, FilterError, Inject};
use crate::metrics;
use crate::upstream::sasl::{Transport, KGATE_CORRELATION_BASE};
use bytes::Bytes;
use rand::Rng;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// Re-signs with the identity the connection's upstream authenticated
/// with ([`Conn::authenticator`]).
pub struct Reauth;

/// When to re-authenticate: a jittered 85–90 % of the session lifetime.
pub fn deadline(session_lifetime_ms: i64) -> Option<Instant> {
    if session_lifetime_ms <= 0 {
        return None;
    }
    let f: f64 = rand::rng().random_range(0.85..0.90);
    Some(Instant::now() + Duration::from_millis((session_lifetime_ms as f64 * f) as u64))
}

/// The SASL exchange's transport over the paused pump.
struct Injected<'a> {
    io: &'a mut dyn Inject,
    next: i32,
}

impl Transport for Injected<'_> {
    async fn round_trip(&mut self, request: Bytes, correlation_id: i32) -> Result<Bytes, String> {
        self.io.round_trip(request, correlation_id).await
    }

    fn next_correlation(&mut self) -> i32 {
        self.next = self.next.wrapping_add(1);
        self.next
    }
}

impl Reauth {
    async fn run(&self, conn: &dyn Conn, io: &mut dyn Inject) -> Result<(), FilterError> {
        let m = metrics::get();
        let started = Instant::now();
        let Some(broker) = conn.broker() else {
            return Err(FilterError::Reauth("no broker connected".into()));
        };
        let Some(authenticator) = conn.authenticator() else {
            return Err(FilterError::Reauth(
                "the upstream connection has no SASL identity".into(),
            ));
        };
        let mut t = Injected {
            io,
            next: KGATE_CORRELATION_BASE + 1_000_000,
        };
        match authenticator.authenticate(&mut t, &broker.host).await {
            Ok(outcome) => {
                let pause = started.elapsed();
                m.reauth_total.fetch_add(1, Relaxed);
                m.reauth_pause.observe(pause);
                info!(
                    pause_ms = pause.as_secs_f64() * 1e3,
                    session_lifetime_ms = outcome.session_lifetime_ms,
                    "re-authenticated"
                );
                conn.set_session_lifetime_ms(outcome.session_lifetime_ms);
                conn.set_reauth_due(deadline(outcome.session_lifetime_ms));
                Ok(())
            }
            Err(e) => {
                m.reauth_failures_total.fetch_add(1, Relaxed);
                // A broker that refuses every re-authentication would log
                // once per connection: rate-limited per broker.
                if let Some(suppressed) = crate::logs::allow(&format!("reauth-failed:{broker}")) {
                    let error = crate::logs::clip_to(&e.to_string(), 300);
                    warn!(%error, suppressed, "re-authentication failed; closing the connection so the client reconnects");
                }
                Err(FilterError::Reauth(e.to_string()))
            }
        }
    }
}

impl Filter for Reauth {
    fn name(&self) -> &'static str {
        "reauth"
    }

    fn timer(&self, conn: &dyn Conn) -> Option<Instant> {
        conn.reauth_due()
    }

    fn on_timer<'a>(
        &'a self,
        conn: &'a dyn Conn,
        io: &'a mut dyn Inject,
    ) -> BoxFuture<'a, Result<(), FilterError>> {
        Box::pin(self.run(conn, io))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AwsOptions, Mechanism, SaslConfig, Secret};
    use crate::filter::tests::TestConn;
    use crate::upstream::sasl::Authenticator;
    use bytes::BufMut;
    use std::sync::Arc;

    /// A broker that accepts any PLAIN exchange and records its payloads.
    #[derive(Default)]
    struct PlainBroker {
        payloads: Vec<Vec<u8>>,
    }

    impl Inject for PlainBroker {
        fn round_trip(
            &mut self,
            request: Bytes,
            correlation_id: i32,
        ) -> BoxFuture<'_, Result<Bytes, String>> {
            let api_key = i16::from_be_bytes([request[4], request[5]]);
            let mut b = bytes::BytesMut::new();
            b.put_i32(0);
            b.put_i32(correlation_id);
            b.put_i16(0);
            if api_key == 17 {
                b.put_i32(1);
                b.put_i16(5);
                b.put_slice(b"PLAIN");
            } else {
                // header (14 + client id "kgate") then the i32-sized payload
                self.payloads.push(request[4 + 8 + 2 + 5 + 4..].to_vec());
                b.put_i16(-1);
                b.put_i32(0);
                b.put_i64(3000);
            }
            let n = (b.len() - 4) as i32;
            b[..4].copy_from_slice(&n.to_be_bytes());
            Box::pin(async move { Ok(b.freeze()) })
        }
    }

    fn plain(user: &str, pw: &std::path::Path) -> Arc<Authenticator> {
        Arc::new(Authenticator::new(
            SaslConfig {
                mechanism: Mechanism::Plain,
                username: Some(user.into()),
                password: Some(Secret::File(pw.into())),
                region: None,
                aws: AwsOptions {
                    profile: None,
                    role_arn: None,
                    external_id: None,
                    session_name: "kgate".into(),
                    sts_region: None,
                    sts_endpoint: None,
                },
            },
            None,
        ))
    }

    #[tokio::test]
    async fn reauthenticates_as_the_connections_own_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "pw").unwrap();
        let r = Reauth;
        let mut broker = PlainBroker::default();
        let none = TestConn::default();
        assert!(
            r.run(&none, &mut broker).await.is_err(),
            "no SASL identity: nothing to renew"
        );
        let kgates = TestConn {
            upstream_auth: Some(plain("kgate", &pw)),
            ..Default::default()
        };
        r.run(&kgates, &mut broker).await.unwrap();
        let alices = TestConn {
            upstream_auth: Some(plain("alice", &pw)),
            ..Default::default()
        };
        r.run(&alices, &mut broker).await.unwrap();
        assert_eq!(
            broker.payloads,
            vec![b"\0kgate\0pw".to_vec(), b"\0alice\0pw".to_vec()]
        );
        assert_eq!(alices.session_lifetime_ms(), 3000);
        assert!(alices.reauth_due().is_some());
    }

    #[test]
    fn deadline_is_85_to_90_percent_of_the_lifetime() {
        assert!(deadline(0).is_none());
        assert!(deadline(-5).is_none());
        for _ in 0..50 {
            let d = deadline(10_000).unwrap() - Instant::now();
            assert!(
                d >= Duration::from_millis(8_400) && d <= Duration::from_millis(9_000),
                "{d:?}"
            );
        }
    }
}
