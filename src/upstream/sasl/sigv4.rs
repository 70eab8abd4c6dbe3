//! SigV4 query-string presigning of the MSK IAM `kafka-cluster:Connect`
//! request: `GET https://<broker-host>/?Action=kafka-cluster%3AConnect…`,
//! signed for the broker's real host name without a port.
//!
//! The signature itself (canonical request, string to sign, key
//! derivation, HMAC) is the `aws-sigv4` crate's; this module only chooses
//! the request and the settings, and hands back the signed parameters.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::date_time::{DateTime, Format};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "kafka-cluster";
pub const ACTION: &str = "kafka-cluster:Connect";
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Everything but `A-Za-z0-9-._~` is percent-encoded (RFC 3986 unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Credentials used for one signature. `Debug` hides the secrets.
#[derive(Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keys {{ access_key: {}, secret_key: <redacted>, session_token: {} }}",
            self.access_key,
            if self.session_token.is_some() {
                "<redacted>"
            } else {
                "none"
            }
        )
    }
}

/// The signed query parameters, by their original names.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub host: String,
    pub amz_date: String,
    pub credential: String,
    pub expires: u64,
    pub security_token: Option<String>,
    pub signature: String,
    /// The parameters (without the signature) in the order botocore writes
    /// them into a URL, percent-encoded.
    pub url_query: String,
}

/// Why a request could not be signed (a host that is not a valid URI
/// authority, for instance).
#[derive(Debug, thiserror::Error)]
#[error("cannot SigV4-sign kafka-cluster:Connect for host `{host}`: {reason}")]
pub struct SignError {
    pub host: String,
    pub reason: String,
}

/// Percent-encodes everything but `A-Za-z0-9-._~`, upper-case hex.
pub fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `YYYYMMDDTHHMMSSZ` for a time (whole seconds).
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let iso = DateTime::from_secs(secs as i64)
        .fmt(Format::DateTime)
        .unwrap_or_default();
    iso.chars().filter(|c| *c != '-' && *c != ':').collect()
}

fn settings(expires: u64) -> SigningSettings {
    let mut s = SigningSettings::default();
    s.signature_location = SignatureLocation::QueryParams;
    s.expires_in = Some(Duration::from_secs(expires));
    s.percent_encoding_mode = PercentEncodingMode::Single;
    // botocore (and MSK) sign the token as part of the canonical query.
    s.session_token_mode = SessionTokenMode::Include;
    s
}

/// Presigns the Connect action for `host` (no port) in `region`.
pub fn presign(
    keys: &Keys,
    region: &str,
    host: &str,
    now: SystemTime,
    expires: u64,
) -> Result<Presigned, SignError> {
    let fail = |reason: String| SignError {
        host: host.to_string(),
        reason,
    };
    let identity: Identity = Credentials::new(
        keys.access_key.clone(),
        keys.secret_key.clone(),
        keys.session_token.clone(),
        None,
        "kgate",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(settings(expires))
        .build()
        .map_err(|e| fail(e.to_string()))?
        .into();
    let url = format!("https://{host}/?Action={}", uri_encode(ACTION));
    let request = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::empty())
        .map_err(|e| fail(e.to_string()))?;
    let (instructions, signature) = sign(request, &params)
        .map_err(|e| fail(e.to_string()))?
        .into_parts();
    let signed = instructions.params();
    let get = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let amz_date = get("X-Amz-Date").ok_or_else(|| fail("no X-Amz-Date".into()))?;
    let credential = get("X-Amz-Credential").ok_or_else(|| fail("no X-Amz-Credential".into()))?;
    Ok(Presigned {
        host: host.to_string(),
        url_query: url_query(&amz_date, &credential, expires, keys.session_token.as_deref()),
        amz_date,
        credential,
        expires,
        security_token: keys.session_token.clone(),
        signature,
    })
}

/// botocore's URL order: Action, X-Amz-Algorithm, -Credential, -Date,
/// -Expires, -SignedHeaders, then -Security-Token.
fn url_query(amz_date: &str, credential: &str, expires: u64, token: Option<&str>) -> String {
    let mut q = format!(
        "Action={}&X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={amz_date}\
         &X-Amz-Expires={expires}&X-Amz-SignedHeaders=host",
        uri_encode(ACTION),
        uri_encode(credential),
    );
    if let Some(t) = token {
        q.push_str("&X-Amz-Security-Token=");
        q.push_str(&uri_encode(t));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_go_public_vector() {
        let keys = Keys {
            access_key: "ACCESS_KEY".into(),
            secret_key: "SECRET_KEY".into(),
            session_token: None,
        };
        // 2021-10-14T13:05:00Z
        let t = UNIX_EPOCH + Duration::from_secs(1_634_216_700);
        assert_eq!(amz_date(t), "20211014T130500Z");
        let p = presign(&keys, "us-east-1", "localhost", t, 300).unwrap();
        assert_eq!(
            p.signature,
            "6b8d25f9b45b9c7db9da855a49112d80379224153a27fd279c305a5b7940d1a7"
        );
        assert_eq!(
            p.credential,
            "ACCESS_KEY/20211014/us-east-1/kafka-cluster/aws4_request"
        );
        assert_eq!(p.amz_date, "20211014T130500Z");
    }

    #[test]
    fn dates_across_leap_years_and_month_ends() {
        let at = |s: u64| amz_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_709_251_199), "20240229T235959Z");
        assert_eq!(at(4_102_444_800), "21000101T000000Z");
        // Sub-second parts are dropped, as in X-Amz-Date.
        let frac = UNIX_EPOCH + Duration::from_millis(1_634_216_700_750);
        assert_eq!(amz_date(frac), "20211014T130500Z");
    }

    #[test]
    fn unreserved_characters_pass_and_the_rest_is_upper_hex() {
        assert_eq!(uri_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(uri_encode("a/b+c= :"), "a%2Fb%2Bc%3D%20%3A");
    }

    #[test]
    fn a_host_that_is_not_an_authority_is_an_error_not_a_panic() {
        let keys = Keys {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            session_token: None,
        };
        let e = presign(&keys, "us-east-1", "bad host/x y", SystemTime::now(), 900).unwrap_err();
        assert!(e.to_string().contains("bad host"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let k = Keys {
            access_key: "AKID".into(),
            secret_key: "very-secret".into(),
            session_token: Some("tok".into()),
        };
        let s = format!("{k:?}");
        assert!(s.contains("AKID") && !s.contains("very-secret") && !s.contains("tok\""));
    }
}
