//! The `[client_auth]` section: SASL toward clients on every client
//! listener (SASL_PLAINTEXT, and SASL_SSL with `[downstream_tls]`).

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// A SASL mechanism kgate offers to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl ClientMechanism {
    pub const ALL: [ClientMechanism; 4] = [
        ClientMechanism::Plain,
        ClientMechanism::ScramSha256,
        ClientMechanism::ScramSha512,
        ClientMechanism::OAuthBearer,
    ];

    /// The name on the wire (SaslHandshake) and in the config.
    pub fn wire_name(self) -> &'static str {
        match self {
            ClientMechanism::Plain => "PLAIN",
            ClientMechanism::ScramSha256 => "SCRAM-SHA-256",
            ClientMechanism::ScramSha512 => "SCRAM-SHA-512",
            ClientMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.wire_name() == s)
    }

    /// Whether the users file backs this mechanism.
    pub fn uses_users_file(self) -> bool {
        self != ClientMechanism::OAuthBearer
    }
}

/// `[client_auth.oauthbearer]`: how client JWTs are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerConfig {
    pub jwks_file: PathBuf,
    pub issuer: String,
    pub audience: String,
    /// The claim whose string value becomes the principal.
    pub principal_claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthConfig {
    /// Offered in this order; never empty.
    pub mechanisms: Vec<ClientMechanism>,
    pub users_file: Option<PathBuf>,
    /// KIP-368 toward clients: the longest a client session lasts before
    /// the client must re-authenticate; `None`: sessions do not expire.
    pub session_lifetime_ms: Option<i64>,
    /// A connection must finish authenticating within this long.
    pub auth_timeout: Duration,
    pub oauthbearer: Option<OAuthBearerConfig>,
}

pub const DEFAULT_AUTH_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileClientAuth {
    pub mechanisms: Option<Vec<String>>,
    pub users_file: Option<PathBuf>,
    pub session_lifetime_ms: Option<i64>,
    pub auth_timeout_ms: Option<u64>,
    pub oauthbearer: Option<FileOAuthBearer>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileOAuthBearer {
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub principal_claim: Option<String>,
}

const S: &str = "client_auth";

fn mechanisms(list: &[String]) -> Result<Vec<ClientMechanism>, String> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let m = ClientMechanism::parse(m.trim()).ok_or_else(|| {
            format!(
                "key `{S}.mechanisms[{i}]`: {m:?} is not one of \"PLAIN\", \"SCRAM-SHA-256\", \"SCRAM-SHA-512\", \"OAUTHBEARER\""
            )
        })?;
        if out.contains(&m) {
            return Err(format!(
                "key `{S}.mechanisms[{i}]`: {} is listed twice",
                m.wire_name()
            ));
        }
        out.push(m);
    }
    Ok(out)
}

fn oauth(f: Option<FileOAuthBearer>) -> Result<Option<OAuthBearerConfig>, String> {
    let Some(f) = f else {
        return Ok(None);
    };
    let k = |n: &str| format!("{S}.oauthbearer.{n}");
    let need = |n: &str, v: Option<String>| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("key `{}`: missing; expected a non-empty string", k(n)))
    };
    let jwks_file = f.jwks_file.ok_or_else(|| {
        format!(
            "key `{}`: missing; expected a JWKS (JSON) file path",
            k("jwks_file")
        )
    })?;
    Ok(Some(OAuthBearerConfig {
        jwks_file,
        issuer: need("issuer", f.issuer)?,
        audience: need("audience", f.audience)?,
        principal_claim: need("principal_claim", f.principal_claim.or(Some("sub".into())))?,
    }))
}

/// Validates the section; `None` when no mechanism is configured (clients
/// do not authenticate, and SASL from them is refused).
pub fn client_auth(f: FileClientAuth) -> Result<Option<ClientAuthConfig>, String> {
    let mechanisms = mechanisms(f.mechanisms.as_deref().unwrap_or_default())?;
    if mechanisms.is_empty() {
        if f.users_file.is_some() || f.oauthbearer.is_some() || f.session_lifetime_ms.is_some() {
            return Err(format!(
                "key `{S}.mechanisms`: empty, but other `{S}` keys are set; list the mechanisms clients may use"
            ));
        }
        return Ok(None);
    }
    if mechanisms.iter().any(|m| m.uses_users_file()) && f.users_file.is_none() {
        return Err(format!(
            "key `{S}.users_file`: missing; PLAIN and SCRAM need a users file (write one with `kgate user add`)"
        ));
    }
    let oauthbearer = oauth(f.oauthbearer)?;
    if mechanisms.contains(&ClientMechanism::OAuthBearer) != oauthbearer.is_some() {
        return Err(format!(
            "key `{S}.oauthbearer`: set it exactly when `{S}.mechanisms` lists \"OAUTHBEARER\""
        ));
    }
    if let Some(ms) = f.session_lifetime_ms {
        if !(1000..=i64::from(i32::MAX)).contains(&ms) {
            return Err(format!(
                "key `{S}.session_lifetime_ms`: {ms} is out of range; expected 1000 to 2147483647"
            ));
        }
    }
    let timeout = f.auth_timeout_ms.unwrap_or(DEFAULT_AUTH_TIMEOUT_MS);
    if !(100..=600_000).contains(&timeout) {
        return Err(format!(
            "key `{S}.auth_timeout_ms`: {timeout} is out of range; expected 100 to 600000"
        ));
    }
    Ok(Some(ClientAuthConfig {
        mechanisms,
        users_file: f.users_file,
        session_lifetime_ms: f.session_lifetime_ms,
        auth_timeout: Duration::from_millis(timeout),
        oauthbearer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(toml_text: &str) -> Result<Option<ClientAuthConfig>, String> {
        client_auth(toml::from_str(toml_text).map_err(|e| e.to_string())?)
    }

    #[test]
    fn absent_or_empty_means_no_client_sasl() {
        assert_eq!(f("").unwrap(), None);
        assert_eq!(f("mechanisms = []").unwrap(), None);
        assert!(f("users_file = \"u.toml\"").unwrap_err().contains("mechanisms"));
    }

    #[test]
    fn a_full_section_and_its_defaults() {
        let c = f(r#"
            mechanisms = ["SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"]
            users_file = "users.toml"
            session_lifetime_ms = 5000
            [oauthbearer]
            jwks_file = "jwks.json"
            issuer = "https://issuer"
            audience = "kgate"
        "#)
        .unwrap()
        .unwrap();
        assert_eq!(
            c.mechanisms,
            vec![
                ClientMechanism::ScramSha512,
                ClientMechanism::Plain,
                ClientMechanism::OAuthBearer
            ]
        );
        assert_eq!(c.auth_timeout, Duration::from_millis(10_000));
        assert_eq!(c.session_lifetime_ms, Some(5000));
        assert_eq!(c.oauthbearer.unwrap().principal_claim, "sub");
    }

    #[test]
    fn mistakes_name_their_key() {
        let e = f(r#"mechanisms = ["GSSAPI"]"#).unwrap_err();
        assert!(e.contains("client_auth.mechanisms[0]"), "{e}");
        let e = f(r#"mechanisms = ["PLAIN"]"#).unwrap_err();
        assert!(e.contains("users_file"), "{e}");
        let e = f(r#"mechanisms = ["OAUTHBEARER"]"#).unwrap_err();
        assert!(e.contains("client_auth.oauthbearer"), "{e}");
        let e = f("mechanisms = [\"PLAIN\"]\nusers_file = \"u\"\nsession_lifetime_ms = 10").unwrap_err();
        assert!(e.contains("session_lifetime_ms"), "{e}");
        let e = f("mechanisms = [\"PLAIN\"]\nusers_file = \"u\"\nauth_timeout_ms = 0").unwrap_err();
        assert!(e.contains("auth_timeout_ms"), "{e}");
        let e = f("mechanisms = [\"OAUTHBEARER\"]\n[oauthbearer]\njwks_file = \"j\"\naudience = \"a\"")
            .unwrap_err();
        assert!(e.contains("client_auth.oauthbearer.issuer"), "{e}");
        assert!(f("mechanisms = [\"PLAIN\", \"PLAIN\"]\nusers_file = \"u\"")
            .unwrap_err()
            .contains("twice"));
    }
}
