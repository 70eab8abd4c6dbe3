//! SigV4 query-string presigning of the MSK IAM `kafka-cluster:Connect`
//! request: `GET https://<broker-host>/?Action=kafka-cluster%3AConnect…`,
//! signed for the broker's real host name without a port.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "kafka-cluster";
pub const ACTION: &str = "kafka-cluster:Connect";
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of the empty body.
const EMPTY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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
    /// The canonical query string (without the signature).
    pub canonical_query: String,
    /// The same parameters in the order botocore writes them into a URL.
    pub url_query: String,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Percent-encodes everything but `A-Za-z0-9-._~`, upper-case hex.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for a time.
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Presigns the Connect action for `host` (no port) in `region`.
pub fn presign(keys: &Keys, region: &str, host: &str, now: SystemTime, expires: u64) -> Presigned {
    let amz_date = amz_date(now);
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let credential = format!("{}/{scope}", keys.access_key);
    let mut params: Vec<(&str, String)> = vec![
        ("Action", ACTION.to_string()),
        ("X-Amz-Algorithm", ALGORITHM.to_string()),
        ("X-Amz-Credential", credential.clone()),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", "host".to_string()),
    ];
    if let Some(t) = &keys.session_token {
        params.push(("X-Amz-Security-Token", t.clone()));
    }
    let mut enc: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    let join = |v: &[(String, String)]| {
        v.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let url_query = join(&enc);
    enc.sort();
    let canonical_query = enc
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!("GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{EMPTY_HASH}");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", keys.secret_key).as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, SERVICE.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    Presigned {
        host: host.to_string(),
        amz_date,
        credential,
        expires,
        security_token: keys.session_token.clone(),
        signature,
        canonical_query,
        url_query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let p = presign(&keys, "us-east-1", "localhost", t, 300);
        assert_eq!(
            p.signature,
            "6b8d25f9b45b9c7db9da855a49112d80379224153a27fd279c305a5b7940d1a7"
        );
        assert_eq!(
            p.credential,
            "ACCESS_KEY/20211014/us-east-1/kafka-cluster/aws4_request"
        );
    }

    #[test]
    fn dates_across_leap_years_and_month_ends() {
        let at = |s: u64| amz_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_709_251_199), "20240229T235959Z");
        assert_eq!(at(4_102_444_800), "21000101T000000Z");
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
