//! The handshake against a scripted broker: its error code and name, and
//! the mechanisms it offers, reach the error as they are.

use super::*;
use crate::config::{AwsOptions, Mechanism, SaslConfig, Secret};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ResponseHeader, SaslHandshakeResponse};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// Answers every request with one SaslHandshake v1 response.
struct Scripted {
    code: i16,
    offered: Vec<&'static str>,
    next: i32,
}

impl Transport for Scripted {
    async fn round_trip(&mut self, _request: Bytes, correlation_id: i32) -> Result<Bytes, String> {
        let mut b = BytesMut::new();
        b.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut b, 0)
            .map_err(|e| e.to_string())?;
        SaslHandshakeResponse::default()
            .with_error_code(self.code)
            .with_mechanisms(
                self.offered
                    .iter()
                    .map(|m| StrBytes::from_static_str(m))
                    .collect(),
            )
            .encode(&mut b, 1)
            .map_err(|e| e.to_string())?;
        let n = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&n.to_be_bytes());
        Ok(b.freeze())
    }

    fn next_correlation(&mut self) -> i32 {
        self.next += 1;
        self.next
    }
}

fn scram() -> Authenticator {
    Authenticator::new(
        SaslConfig {
            mechanism: Mechanism::ScramSha512,
            username: Some("kgate".into()),
            password: Some(Secret::Env("KGATE_SASL_TESTS_UNSET".into())),
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
    )
}

async fn handshake_error(code: i16, offered: Vec<&'static str>) -> SaslError {
    let mut t = Scripted {
        code,
        offered,
        next: 0,
    };
    scram()
        .authenticate(&mut t, "b-1.example")
        .await
        .expect_err("the broker answered with an error")
}

#[tokio::test]
async fn an_unsupported_mechanism_names_the_code_and_what_the_broker_offers() {
    let e = handshake_error(33, vec!["PLAIN", "SCRAM-SHA-256"]).await;
    assert!(matches!(e, SaslError::Unsupported { .. }), "{e:?}");
    assert_eq!(e.short_cause(), "mechanism_not_enabled");
    let text = e.to_string();
    for part in [
        "SCRAM-SHA-512",
        "b-1.example",
        "error 33",
        "UNSUPPORTED_SASL_MECHANISM",
        "\"PLAIN\"",
        "\"SCRAM-SHA-256\"",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

#[tokio::test]
async fn another_handshake_error_is_reported_as_it_is() {
    let e = handshake_error(34, vec!["SCRAM-SHA-512"]).await;
    assert!(matches!(e, SaslError::Handshake { code: 34, .. }), "{e:?}");
    assert_eq!(e.short_cause(), "handshake_error");
    let text = e.to_string();
    for part in [
        "error 34",
        "ILLEGAL_SASL_STATE",
        "b-1.example",
        "\"SCRAM-SHA-512\"",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(
        !text.contains("not enabled"),
        "error 34 is not a missing mechanism: {text}"
    );
}

#[tokio::test]
async fn a_long_mechanism_list_is_bounded() {
    let many: Vec<&'static str> = std::iter::repeat_n("X", 40).collect();
    match handshake_error(33, many).await {
        SaslError::Unsupported { offered, .. } => assert_eq!(offered.len(), 16),
        e => panic!("{e:?}"),
    }
}
