//! OAUTHBEARER (RFC 7628): the GS2 header and key/value pairs
//! `n,,\x01auth=Bearer <jwt>\x01[key=value\x01]*\x01`, and the JWT checked
//! against a JWKS file (RS256 or ES256): signature, issuer, audience,
//! expiry and not-before. The principal is a configured claim.

use crate::config::OAuthBearerConfig;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::path::Path;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN: usize = 16 * 1024;
/// Clock skew allowed on exp and nbf, in seconds.
const LEEWAY_S: u64 = 30;

/// Reads the bearer token out of an OAUTHBEARER initial response.
pub fn parse(msg: &[u8]) -> Result<&str, &'static str> {
    let s = std::str::from_utf8(msg).map_err(|_| "OAUTHBEARER message is not UTF-8")?;
    let rest = s
        .strip_prefix("n,")
        .ok_or("OAUTHBEARER GS2 header must start with `n,` (no channel binding)")?;
    let (authz, rest) = rest
        .split_once(',')
        .ok_or("OAUTHBEARER GS2 header is incomplete")?;
    if !(authz.is_empty() || authz.starts_with("a=")) {
        return Err("OAUTHBEARER GS2 authzid is malformed");
    }
    let pairs = rest
        .strip_prefix('\x01')
        .and_then(|r| r.strip_suffix("\x01\x01"))
        .ok_or("OAUTHBEARER key/value pairs must be framed by \\x01 and end with \\x01\\x01")?;
    let mut token = None;
    for kv in pairs.split('\x01') {
        let (k, v) = kv
            .split_once('=')
            .ok_or("OAUTHBEARER key/value pair has no `=`")?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err("OAUTHBEARER key is not alphabetic");
        }
        if !v
            .bytes()
            .all(|b| matches!(b, 0x20..=0x7e | b'\t' | b'\r' | b'\n'))
        {
            return Err("OAUTHBEARER value holds a forbidden character");
        }
        if k == "auth" {
            if token.is_some() {
                return Err("OAUTHBEARER `auth` appears twice");
            }
            let (scheme, t) = v
                .split_once(' ')
                .ok_or("OAUTHBEARER auth is not `Bearer <token>`")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("OAUTHBEARER auth scheme is not Bearer");
            }
            let t = t.trim();
            if t.is_empty() || t.len() > MAX_TOKEN {
                return Err("OAUTHBEARER token is empty or too long");
            }
            token = Some(t);
        }
    }
    token.ok_or("OAUTHBEARER message has no `auth` pair")
}

/// A validated token.
#[derive(Debug, PartialEq, Eq)]
pub struct Token {
    pub principal: String,
    /// Seconds since the epoch.
    pub exp: u64,
}

pub struct Validator {
    keys: JwkSet,
    cfg: OAuthBearerConfig,
}

impl Validator {
    pub fn load(cfg: &OAuthBearerConfig) -> Result<Validator, String> {
        let p: &Path = &cfg.jwks_file;
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
        let keys: JwkSet =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a JWKS: {e}", p.display()))?;
        if keys.keys.is_empty() {
            return Err(format!("{}: the JWKS holds no key", p.display()));
        }
        for (i, k) in keys.keys.iter().enumerate() {
            DecodingKey::from_jwk(k).map_err(|e| format!("{}: key {i}: {e}", p.display()))?;
        }
        Ok(Validator {
            keys,
            cfg: cfg.clone(),
        })
    }

    /// Checks a JWT; the error is fit for the client and the log (it
    /// never repeats the token).
    pub fn validate(&self, token: &str) -> Result<Token, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed JWT: {e}"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(format!("JWT algorithm {:?} is not RS256 or ES256", header.alg));
        }
        let jwk = match &header.kid {
            Some(kid) => self.keys.find(kid).ok_or("JWT key id is not in the JWKS")?,
            None if self.keys.keys.len() == 1 => &self.keys.keys[0],
            None => return Err("JWT names no key id and the JWKS holds several keys".into()),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key: {e}"))?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_S;
        v.validate_nbf = true;
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &v)
            .map_err(|e| format!("JWT refused: {e}"))?;
        let principal = match data.claims.get(&self.cfg.principal_claim) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
            _ => {
                return Err(format!(
                    "JWT has no string claim {:?} to name the principal",
                    self.cfg.principal_claim
                ))
            }
        };
        let exp = data
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("JWT exp is not a number")?;
        Ok(Token { principal, exp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs2_and_pairs() {
        assert_eq!(
            parse(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            parse(b"n,a=bob,\x01host=x\x01auth=bearer t\x01port=9\x01\x01").unwrap(),
            "t"
        );
        for bad in [
            &b"y,,\x01auth=Bearer t\x01\x01"[..],
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01a-b=1\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x00\x01\x01",
            b"n,,\x01\x01",
            b"\xff",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_jwks_that_is_not_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("jwks.json");
        let cfg = OAuthBearerConfig {
            jwks_file: p.clone(),
            issuer: "i".into(),
            audience: "a".into(),
            principal_claim: "sub".into(),
        };
        assert!(Validator::load(&cfg).err().unwrap().contains("cannot read"));
        std::fs::write(&p, r#"{"keys": []}"#).unwrap();
        assert!(Validator::load(&cfg).err().unwrap().contains("no key"));
        std::fs::write(&p, "nope").unwrap();
        assert!(Validator::load(&cfg).err().unwrap().contains("not a JWKS"));
    }
}
