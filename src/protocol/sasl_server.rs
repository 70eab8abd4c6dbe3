//! The wire side of client authentication: SaslHandshake and
//! SaslAuthenticate requests read by hand from bounded frames (no
//! allocation sized by the wire), and the responses kgate answers with,
//! ApiVersions included.

use super::api_versions::encode_response;
use super::decision::allowed_versions;
use super::header::{self, key, RequestHeader};
use super::wire::{Reader, WireError, WireResult};
use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::sync::{Arc, RwLock};

pub const NONE: i16 = 0;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// The SASL versions kgate serves: SaslHandshake v1 (v0's raw-token mode
/// is refused) and SaslAuthenticate v0–v2.
pub const SASL_KEYS: [(i16, i16, i16); 2] = [(key::SASL_HANDSHAKE, 0, 1), (key::SASL_AUTHENTICATE, 0, 2)];

fn body(frame: &[u8], h: &RequestHeader) -> WireResult<usize> {
    header::request_body_offset(frame, h)
}

/// The mechanism a SaslHandshake names.
pub fn read_handshake<'a>(frame: &'a [u8], h: &RequestHeader) -> WireResult<&'a str> {
    let mut r = Reader::at(frame, body(frame, h)?);
    r.string()?.ok_or(WireError {
        what: "null SASL mechanism",
        offset: r.pos(),
    })
}

/// The auth bytes of a SaslAuthenticate (v0–v2).
pub fn read_authenticate<'a>(frame: &'a [u8], h: &RequestHeader) -> WireResult<&'a [u8]> {
    let mut r = Reader::at(frame, body(frame, h)?);
    let n: i64 = if h.api_version >= 2 {
        i64::from(r.uvarint()?) - 1
    } else {
        i64::from(r.i32()?)
    };
    if n < 0 {
        return Err(WireError {
            what: "null or negative SASL auth bytes",
            offset: r.pos(),
        });
    }
    r.take(n as usize)
}

fn response_header_version(h: &RequestHeader) -> i16 {
    i16::from(header::response_header_is_flexible(h.api_key, h.api_version))
}

pub fn handshake_response(h: &RequestHeader, error: i16, mechanisms: &[&str]) -> Bytes {
    let r = SaslHandshakeResponse::default()
        .with_error_code(error)
        .with_mechanisms(
            mechanisms
                .iter()
                .map(|m| StrBytes::from_string(m.to_string()))
                .collect(),
        );
    encode_response(
        h.correlation_id,
        response_header_version(h),
        &r,
        h.api_version.clamp(0, 1),
    )
}

pub fn authenticate_response(
    h: &RequestHeader,
    error: i16,
    message: Option<&str>,
    auth_bytes: &[u8],
    session_lifetime_ms: i64,
) -> Bytes {
    let r = SaslAuthenticateResponse::default()
        .with_error_code(error)
        .with_error_message(message.map(|m| StrBytes::from_string(m.to_string())))
        .with_auth_bytes(Bytes::copy_from_slice(auth_bytes))
        .with_session_lifetime_ms(session_lifetime_ms);
    encode_response(
        h.correlation_id,
        response_header_version(h),
        &r,
        h.api_version.clamp(0, 2),
    )
}

/// The versions the broker offers (after kgate's allow-list and caps),
/// kept from the last ApiVersions response kgate saw, so kgate can answer
/// a client's ApiVersions before any upstream connection exists.
#[derive(Default)]
pub struct VersionsCache {
    list: RwLock<Option<Versions>>,
}

/// (api_key, min, max) triples.
pub type Versions = Arc<Vec<(i16, i16, i16)>>;

impl VersionsCache {
    /// Keeps a filtered list (SASL keys are never stored: kgate adds its own).
    pub fn store(&self, mut list: Vec<(i16, i16, i16)>) {
        list.retain(|(k, _, _)| *k != key::SASL_HANDSHAKE && *k != key::SASL_AUTHENTICATE);
        if let Ok(mut g) = self.list.write() {
            *g = Some(Arc::new(list));
        }
    }

    pub fn get(&self) -> Option<Versions> {
        self.list.read().ok().and_then(|g| g.clone())
    }
}

/// What kgate parses and forwards, for when no broker list was ever seen.
pub fn own_versions() -> Vec<(i16, i16, i16)> {
    ApiKey::iter()
        .filter_map(|k| allowed_versions(k as i16).map(|(lo, hi)| (k as i16, lo, hi)))
        .collect()
}

/// kgate's answer to ApiVersions v0–v4: `list` plus the SASL keys.
pub fn api_versions_answer(h: &RequestHeader, list: &[(i16, i16, i16)]) -> Bytes {
    let mut keys: Vec<(i16, i16, i16)> = list
        .iter()
        .copied()
        .filter(|(k, _, _)| *k != key::SASL_HANDSHAKE && *k != key::SASL_AUTHENTICATE)
        .chain(SASL_KEYS)
        .collect();
    keys.sort_unstable();
    let r = ApiVersionsResponse::default().with_api_keys(
        keys.into_iter()
            .map(|(k, lo, hi)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(lo)
                    .with_max_version(hi)
            })
            .collect(),
    );
    encode_response(h.correlation_id, 0, &r, h.api_version.clamp(0, 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::api_versions::list_api_versions;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::Decodable;

    fn request(api_key: i16, version: i16, body: &[u8]) -> (Vec<u8>, RequestHeader) {
        let mut b = BytesMut::new();
        b.put_i32(0);
        b.put_i16(api_key);
        b.put_i16(version);
        b.put_i32(7);
        b.put_i16(3);
        b.put_slice(b"cli");
        if header::request_header_is_flexible(api_key, version) {
            b.put_u8(0);
        }
        b.put_slice(body);
        let n = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&n.to_be_bytes());
        let h = header::peek_request_header(&b).unwrap();
        (b.to_vec(), h)
    }

    #[test]
    fn handshake_and_authenticate_bodies_are_read_in_every_version() {
        let (f, h) = request(17, 1, b"\x00\x05PLAIN");
        assert_eq!(read_handshake(&f, &h).unwrap(), "PLAIN");
        let (f, h) = request(36, 1, b"\x00\x00\x00\x03abc");
        assert_eq!(read_authenticate(&f, &h).unwrap(), b"abc");
        let (f, h) = request(36, 2, b"\x04abc\x00");
        assert_eq!(read_authenticate(&f, &h).unwrap(), b"abc");
        let (f, h) = request(36, 1, b"\x7f\xff\xff\xffabc");
        assert!(read_authenticate(&f, &h).is_err(), "a lying length fails");
        let (f, h) = request(36, 1, b"\xff\xff\xff\xff");
        assert!(read_authenticate(&f, &h).is_err());
    }

    #[test]
    fn answers_decode_with_kafka_protocol() {
        let (_, h) = request(36, 2, b"");
        let f = authenticate_response(&h, 58, Some("no"), b"", 5000);
        let off = header::response_body_offset(&f, 36, 2).unwrap();
        let d = SaslAuthenticateResponse::decode(&mut f.slice(off..), 2).unwrap();
        assert_eq!((d.error_code, d.session_lifetime_ms), (58, 5000));
        assert_eq!(d.error_message.as_deref(), Some("no"));
        let (_, h) = request(17, 1, b"");
        let f = handshake_response(&h, 33, &["PLAIN", "SCRAM-SHA-512"]);
        let d = SaslHandshakeResponse::decode(&mut f.slice(8..), 1).unwrap();
        assert_eq!(d.mechanisms.len(), 2);
        for v in 0..=4 {
            let (_, h) = request(18, v, b"");
            let f = api_versions_answer(&h, &[(0, 3, 9), (17, 0, 0)]);
            let l = list_api_versions(&f, v).unwrap();
            assert_eq!(l, vec![(0, 3, 9), (17, 0, 1), (36, 0, 2)], "v{v}");
        }
    }

    #[test]
    fn the_cache_drops_sasl_and_own_versions_cover_produce() {
        let c = VersionsCache::default();
        assert!(c.get().is_none());
        c.store(vec![(0, 0, 9), (36, 0, 2)]);
        assert_eq!(*c.get().unwrap(), vec![(0, 0, 9)]);
        assert!(own_versions().iter().any(|(k, _, _)| *k == 0));
    }
}
