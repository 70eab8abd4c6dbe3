//! SASL toward the brokers: AWS_MSK_IAM, OAUTHBEARER (MSK IAM token),
//! SCRAM-SHA-256/512 and PLAIN, over SaslHandshake v1 and SaslAuthenticate
//! v1 (which reports `session_lifetime_ms` for KIP-368 re-authentication).
//! Broker responses are read with the bounds-checked reader only.

pub mod direct;
pub mod msk_iam;
pub mod scram;
pub mod sigv4;
mod wire;

use crate::config::{Mechanism, SaslConfig, Secret};
use crate::upstream::credentials::CredentialCache;
use rand::Rng;
use std::sync::Arc;
use std::time::SystemTime;
pub use wire::{Transport, KGATE_CORRELATION_BASE};

#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("{mechanism} authentication with {broker} failed: connection: {cause}")]
    Transport {
        mechanism: &'static str,
        broker: String,
        cause: String,
    },
    #[error("{mechanism} is not enabled on {broker}: SaslHandshake answered error 33 (UNSUPPORTED_SASL_MECHANISM); the broker offers {offered:?}; check the broker's listener and upstream_sasl.mechanism")]
    Unsupported {
        mechanism: &'static str,
        broker: String,
        offered: Vec<String>,
    },
    #[error("{mechanism} SaslHandshake with {broker} failed: broker answered error {code} ({name}); offered {offered:?}")]
    Handshake {
        mechanism: &'static str,
        broker: String,
        code: i16,
        name: &'static str,
        offered: Vec<String>,
    },
    #[error(
        "{mechanism} authentication with {broker} failed: broker said \"{message}\" (error {code}); {hint}"
    )]
    Rejected {
        mechanism: &'static str,
        broker: String,
        code: i16,
        message: String,
        hint: &'static str,
    },
    #[error("{mechanism} authentication with {broker} failed: {cause}")]
    Local {
        mechanism: &'static str,
        broker: String,
        cause: String,
    },
}

impl SaslError {
    /// A short, bounded label for metrics.
    pub fn short_cause(&self) -> String {
        match self {
            SaslError::Transport { .. } => "transport".into(),
            SaslError::Unsupported { .. } => "mechanism_not_enabled".into(),
            SaslError::Handshake { .. } => "handshake_error".into(),
            SaslError::Rejected { message, .. } if message.contains("Too many connects") => {
                "throttled".into()
            }
            SaslError::Rejected { .. } => "rejected".into(),
            SaslError::Local { .. } => "local".into(),
        }
    }

    /// MSK's per-broker connection-rate limit: back off before retrying.
    pub fn is_throttle(&self) -> bool {
        matches!(self, SaslError::Rejected { message, .. } if message.contains("Too many connects"))
    }
}

#[cfg(test)]
mod tests;

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// Kafka's name for the error codes a SaslHandshake can carry.
fn error_name(code: i16) -> &'static str {
    match code {
        33 => "UNSUPPORTED_SASL_MECHANISM",
        34 => "ILLEGAL_SASL_STATE",
        35 => "UNSUPPORTED_VERSION",
        58 => "SASL_AUTHENTICATION_FAILED",
        _ => "unexpected error",
    }
}

/// A broker-supplied string cut for a log line.
fn clip(s: &str) -> String {
    crate::logs::clip_to(s, 200)
}

/// What a successful exchange gives.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// 0 when the broker sets no limit.
    pub session_lifetime_ms: i64,
}

/// Runs SASL exchanges for one configured mechanism.
pub struct Authenticator {
    cfg: SaslConfig,
    creds: Option<Arc<CredentialCache>>,
}

fn hint(m: Mechanism, message: &str) -> &'static str {
    if message.contains("Too many connects") {
        return "MSK limits new connections per broker per second; kgate backs off before retrying";
    }
    if message.contains("Cannot change principals") {
        return "re-authentication must use the same principal: keep role_arn/session_name stable";
    }
    match m {
        Mechanism::MskIam | Mechanism::OauthBearer => {
            "check the credentials, the region, and that the IAM policy allows kafka-cluster:Connect on this cluster"
        }
        Mechanism::ScramSha256 | Mechanism::ScramSha512 => "check username and password, and that the SCRAM user exists for this mechanism",
        Mechanism::Plain => "check username and password",
    }
}

fn read_secret(s: &Secret) -> Result<String, String> {
    match s {
        Secret::File(p) => std::fs::read_to_string(p)
            .map(|v| v.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| format!("cannot read password file {}: {e}", p.display())),
        Secret::Env(v) => {
            std::env::var(v).map_err(|_| format!("password environment variable {v} is not set"))
        }
    }
}

impl Authenticator {
    pub fn new(cfg: SaslConfig, creds: Option<Arc<CredentialCache>>) -> Self {
        Authenticator { cfg, creds }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.cfg.mechanism
    }

    /// The SCRAM/PLAIN user name (never the password).
    pub fn username(&self) -> Option<&str> {
        self.cfg.username.as_deref()
    }

    /// The AWS credentials cache, for IAM mechanisms.
    pub fn credentials(&self) -> Option<&Arc<CredentialCache>> {
        self.creds.as_ref()
    }

    /// SaslHandshake, with the broker's error reported as it is.
    async fn handshake<T: Transport + Send>(&self, t: &mut T, broker_host: &str) -> Result<(), SaslError> {
        let name = self.cfg.mechanism.wire_name();
        let (code, offered) = t.handshake(name).await.map_err(|cause| SaslError::Transport {
            mechanism: name,
            broker: broker_host.to_string(),
            cause,
        })?;
        let offered: Vec<String> = offered.iter().take(16).map(|o| clip(o)).collect();
        let broker = broker_host.to_string();
        match code {
            0 => Ok(()),
            UNSUPPORTED_SASL_MECHANISM => Err(SaslError::Unsupported {
                mechanism: name,
                broker,
                offered,
            }),
            _ => Err(SaslError::Handshake {
                mechanism: name,
                broker,
                code,
                name: error_name(code),
                offered,
            }),
        }
    }

    fn password(&self) -> Result<String, String> {
        let secret = self.cfg.password.as_ref().ok_or("no password configured")?;
        read_secret(secret)
    }

    /// The client's first SaslAuthenticate payload (and the SCRAM state
    /// that continues the exchange).
    async fn first_message(&self, broker_host: &str) -> Result<(Vec<u8>, Option<scram::Scram>), String> {
        let m = self.cfg.mechanism;
        let user = self.cfg.username.clone().unwrap_or_default();
        match m {
            Mechanism::Plain => Ok((format!("\0{user}\0{}", self.password()?).into_bytes(), None)),
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let nonce: String = rand::rng()
                    .sample_iter(rand::distr::Alphanumeric)
                    .take(24)
                    .map(char::from)
                    .collect();
                let h = if m == Mechanism::ScramSha256 {
                    scram::Hash::Sha256
                } else {
                    scram::Hash::Sha512
                };
                let s = scram::Scram::new(h, &user, &self.password()?, nonce);
                Ok((s.client_first(), Some(s)))
            }
            Mechanism::MskIam | Mechanism::OauthBearer => {
                let creds = self.creds.as_ref().ok_or("no AWS credential provider")?;
                let keys = creds
                    .get()
                    .await
                    .map_err(|e| format!("no AWS credentials: {e}"))?;
                let region = msk_iam::region_for(broker_host, self.cfg.region.as_deref())?;
                let signed = if m == Mechanism::MskIam {
                    msk_iam::try_iam_payload(&keys, &region, broker_host, SystemTime::now())
                } else {
                    msk_iam::try_oauth_token(&keys, &region, SystemTime::now())
                        .map(|t| msk_iam::oauth_message(&t))
                };
                Ok((signed.map_err(|e| e.to_string())?, None))
            }
        }
    }

    /// Authenticates (or re-authenticates) the connection behind `t` as
    /// `broker_host`, the broker's real name.
    pub async fn authenticate<T: Transport + Send>(
        &self,
        t: &mut T,
        broker_host: &str,
    ) -> Result<Outcome, SaslError> {
        let m = self.cfg.mechanism;
        let name = m.wire_name();
        let transport = |cause: String| SaslError::Transport {
            mechanism: name,
            broker: broker_host.to_string(),
            cause,
        };
        let rejected = |code: i16, message: String| SaslError::Rejected {
            mechanism: name,
            broker: broker_host.to_string(),
            code,
            hint: hint(m, &message),
            message: clip(&message),
        };
        self.handshake(t, broker_host).await?;
        let (first, scram) = self
            .first_message(broker_host)
            .await
            .map_err(|cause| SaslError::Local {
                mechanism: name,
                broker: broker_host.to_string(),
                cause,
            })?;
        let r = t.authenticate(first).await.map_err(transport)?;
        if r.error_code != 0 {
            return Err(rejected(r.error_code, r.error_message));
        }
        // RFC 7628: a non-empty server reply to OAUTHBEARER is an error
        // (`{"status":"invalid_token"}`); the client answers with %x01 and
        // the broker then fails the exchange with its message.
        if m == Mechanism::OauthBearer && !r.auth_bytes.is_empty() {
            let detail = String::from_utf8_lossy(&r.auth_bytes).into_owned();
            let r2 = t.authenticate(vec![0x01]).await.map_err(transport)?;
            let message = if r2.error_message.is_empty() {
                detail
            } else {
                r2.error_message
            };
            return Err(rejected(
                if r2.error_code != 0 { r2.error_code } else { 58 },
                message,
            ));
        }
        let Some(mut s) = scram else {
            return Ok(Outcome {
                session_lifetime_ms: r.session_lifetime_ms,
            });
        };
        let fin = s.client_final(&r.auth_bytes).map_err(|e| rejected(0, e))?;
        let r = t.authenticate(fin).await.map_err(transport)?;
        if r.error_code != 0 {
            return Err(rejected(r.error_code, r.error_message));
        }
        s.verify_server_final(&r.auth_bytes).map_err(|e| rejected(0, e))?;
        Ok(Outcome {
            session_lifetime_ms: r.session_lifetime_ms,
        })
    }
}
