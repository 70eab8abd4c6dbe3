//! AWS_MSK_IAM (JSON payload) and OAUTHBEARER (MSK IAM token) messages.

use super::sigv4::{presign, uri_encode, Keys, SignError, ACTION, ALGORITHM};
use base64::Engine;
use std::time::SystemTime;

pub const USER_AGENT: &str = concat!("kgate/", env!("CARGO_PKG_VERSION"));
pub const EXPIRES_SECS: u64 = 900;

/// The region from config, or from a `….kafka.<region>.amazonaws.com` host.
pub fn region_for(host: &str, configured: Option<&str>) -> Result<String, String> {
    if let Some(r) = configured {
        return Ok(r.to_string());
    }
    let labels: Vec<&str> = host.split('.').collect();
    labels
        .windows(3)
        .find(|w| w[0].starts_with("kafka") && w[2] == "amazonaws")
        .map(|w| w[1].to_string())
        .ok_or_else(|| {
            format!("cannot tell the AWS region from broker host `{host}`; set upstream_sasl.region")
        })
}

/// The AWS_MSK_IAM client message: a JSON object with lower-case keys and
/// raw (not URL-encoded) values, signed for `host` without a port.
pub fn try_iam_payload(keys: &Keys, region: &str, host: &str, now: SystemTime) -> Result<Vec<u8>, SignError> {
    let p = presign(keys, region, host, now, EXPIRES_SECS)?;
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), serde_json::Value::String(v));
    };
    put("version", "2020_10_22".into());
    put("host", host.into());
    put("user-agent", USER_AGENT.into());
    put("action", ACTION.into());
    put("x-amz-algorithm", ALGORITHM.into());
    put("x-amz-credential", p.credential);
    put("x-amz-date", p.amz_date);
    put("x-amz-expires", p.expires.to_string());
    put("x-amz-signedheaders", "host".into());
    put("x-amz-signature", p.signature);
    if let Some(t) = p.security_token {
        put("x-amz-security-token", t);
    }
    Ok(serde_json::Value::Object(m).to_string().into_bytes())
}

/// [`try_iam_payload`] for a host known to be a valid name.
///
/// # Panics
/// When `host` is not a valid URI authority; the session uses
/// [`try_iam_payload`] instead.
pub fn iam_payload(keys: &Keys, region: &str, host: &str, now: SystemTime) -> Vec<u8> {
    try_iam_payload(keys, region, host, now).unwrap_or_else(|e| panic!("{e}"))
}

/// The MSK IAM OAUTHBEARER token: base64url (no padding) of the URL
/// presigned for `kafka.<region>.amazonaws.com`, with `User-Agent` added
/// after signing.
pub fn try_oauth_token(keys: &Keys, region: &str, now: SystemTime) -> Result<String, SignError> {
    let host = format!("kafka.{region}.amazonaws.com");
    let p = presign(keys, region, &host, now, EXPIRES_SECS)?;
    let url = format!(
        "https://{host}/?{}&X-Amz-Signature={}&User-Agent={}",
        p.url_query,
        p.signature,
        uri_encode(USER_AGENT)
    );
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url))
}

/// [`try_oauth_token`] for a region known to be a valid host label.
///
/// # Panics
/// When `kafka.<region>.amazonaws.com` is not a valid URI authority.
pub fn oauth_token(keys: &Keys, region: &str, now: SystemTime) -> String {
    try_oauth_token(keys, region, now).unwrap_or_else(|e| panic!("{e}"))
}

/// The OAUTHBEARER initial client response (RFC 7628).
pub fn oauth_message(token: &str) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_msk_host_names() {
        assert_eq!(
            region_for("b-1.c1.abc123.c2.kafka.eu-west-1.amazonaws.com", None).unwrap(),
            "eu-west-1"
        );
        assert_eq!(
            region_for("boot-x.c1.kafka-serverless.us-east-2.amazonaws.com", None).unwrap(),
            "us-east-2"
        );
        assert_eq!(region_for("localhost", Some("us-east-1")).unwrap(), "us-east-1");
        assert!(region_for("localhost", None)
            .unwrap_err()
            .contains("upstream_sasl.region"));
    }

    #[test]
    fn payload_has_the_documented_keys() {
        let k = Keys {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            session_token: Some("TOK/+=".into()),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&iam_payload(&k, "us-east-1", "b-1.example", SystemTime::now())).unwrap();
        for key in [
            "version",
            "host",
            "user-agent",
            "action",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "x-amz-expires",
            "x-amz-signedheaders",
            "x-amz-signature",
            "x-amz-security-token",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["host"], "b-1.example");
        assert_eq!(v["x-amz-security-token"], "TOK/+=", "raw, not URL-encoded");
        assert_eq!(v["action"], "kafka-cluster:Connect");
    }
}
