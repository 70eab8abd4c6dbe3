//! ApiVersions as an allow-list, and the responses kgate answers itself.

use super::decision::allowed_versions;
use super::frame::LEN_PREFIX;
use super::header::{self, key};
use super::wire::{put_uvarint, Reader, WireError, WireResult};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsResponse, ResponseHeader, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// UNSUPPORTED_VERSION: the broker answers a too-new ApiVersions with a v0
/// body carrying this code.
pub const UNSUPPORTED_VERSION: i16 = 35;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;

/// Rewrites a broker's ApiVersions response so it offers only what kgate
/// forwards safely, each key capped at the highest version kgate parses.
/// `frame` includes the length prefix; ApiVersions always uses header v0.
///
/// An error response that parses in no known layout is passed on as it is:
/// clients only read the ApiVersions entry from it to pick a lower version,
/// and ApiVersions never carries a broker address. (librdkafka's mock
/// cluster sends such a body for error 35.)
pub fn rewrite_api_versions(frame: &[u8], version: i16) -> WireResult<BytesMut> {
    rewrite_api_versions_with(frame, version, &[])
}

/// [`rewrite_api_versions`], offering `extra` (key, min, max) entries too
/// (kgate's own client SASL keys).
pub fn rewrite_api_versions_with(
    frame: &[u8],
    version: i16,
    extra: &[(i16, i16, i16)],
) -> WireResult<BytesMut> {
    match filter_api_versions(frame, version, extra) {
        Ok(out) => Ok(out),
        Err(e) => {
            let error_code = Reader::at(frame, LEN_PREFIX + 4).i16()?;
            if error_code != 0 {
                return Ok(BytesMut::from(frame));
            }
            Err(e)
        }
    }
}

fn filter_api_versions(frame: &[u8], version: i16, extra: &[(i16, i16, i16)]) -> WireResult<BytesMut> {
    let error_code = Reader::at(frame, LEN_PREFIX + 4).i16()?;
    // Error 35 means the broker fell back to a v0 body.
    filter(
        frame,
        if error_code == UNSUPPORTED_VERSION {
            0
        } else {
            version
        },
        extra,
    )
}

fn filter(frame: &[u8], version: i16, extra: &[(i16, i16, i16)]) -> WireResult<BytesMut> {
    let body = LEN_PREFIX + 4;
    let mut r = Reader::at(frame, body);
    let error_code = r.i16()?;
    let flexible = version >= 3;
    let n = r.array_len(flexible, 6)?.unwrap_or(0);
    let mut kept: Vec<(i16, i16, i16)> = Vec::with_capacity(n.min(128));
    for _ in 0..n {
        let k = r.i16()?;
        let min = r.i16()?;
        let max = r.i16()?;
        if flexible {
            r.skip_tagged_fields()?;
        }
        if let Some((amin, amax)) = allowed_versions(k) {
            let (lo, hi) = (min.max(amin), max.min(amax));
            if lo <= hi {
                kept.push((k, lo, hi));
            }
        }
    }
    kept.extend_from_slice(extra);
    let rest = r.pos();
    let mut out = BytesMut::with_capacity(frame.len() + extra.len() * 7);
    out.put_slice(&frame[..body]);
    out.put_i16(error_code);
    if flexible {
        put_uvarint(&mut out, kept.len() as u32 + 1);
    } else {
        out.put_i32(kept.len() as i32);
    }
    for (k, lo, hi) in kept {
        out.put_i16(k);
        out.put_i16(lo);
        out.put_i16(hi);
        if flexible {
            out.put_u8(0);
        }
    }
    // throttle_time_ms and the top-level tagged fields (supported and
    // finalized features) pass unchanged.
    let mut tail = Reader::at(frame, rest);
    if version >= 1 {
        tail.i32()?;
    }
    if flexible {
        tail.skip_tagged_fields()?;
    }
    if tail.remaining() != 0 {
        return Err(WireError {
            what: "trailing bytes after ApiVersions",
            offset: tail.pos(),
        });
    }
    out.put_slice(&frame[rest..]);
    patch_len(&mut out);
    Ok(out)
}

fn patch_len(out: &mut BytesMut) {
    let len = (out.len() - LEN_PREFIX) as i32;
    out[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

pub(crate) fn encode_response<M: Encodable>(
    correlation_id: i32,
    header_version: i16,
    msg: &M,
    version: i16,
) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    // Encoding well-formed messages built here cannot fail; an error would
    // only leave an empty body, which the client reports as malformed.
    let _ = ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, header_version);
    let _ = msg.encode(&mut out, version);
    patch_len(&mut out);
    out.freeze()
}

/// The v0 UNSUPPORTED_VERSION answer to an ApiVersions request newer than
/// kgate parses; the client retries with v4 or lower.
pub fn api_versions_too_new(correlation_id: i32) -> Bytes {
    let (lo, hi) = allowed_versions(key::API_VERSIONS).unwrap_or((0, 4));
    let mut out = BytesMut::with_capacity(24);
    out.put_i32(0);
    out.put_i32(correlation_id);
    out.put_i16(UNSUPPORTED_VERSION);
    out.put_i32(1);
    out.put_i16(key::API_VERSIONS);
    out.put_i16(lo);
    out.put_i16(hi);
    patch_len(&mut out);
    out.freeze()
}

/// The error answer to SaslHandshake/SaslAuthenticate on a listener that
/// does not authenticate clients.
pub fn refuse_sasl(h: &header::RequestHeader) -> Bytes {
    let hv = if header::response_header_is_flexible(h.api_key, h.api_version) {
        1
    } else {
        0
    };
    let msg = "this kgate listener does not authenticate clients: configure the client with security.protocol=PLAINTEXT";
    if h.api_key == key::SASL_HANDSHAKE {
        let r = SaslHandshakeResponse::default().with_error_code(UNSUPPORTED_SASL_MECHANISM);
        encode_response(h.correlation_id, hv, &r, h.api_version.clamp(0, 1))
    } else {
        let r = SaslAuthenticateResponse::default()
            .with_error_code(ILLEGAL_SASL_STATE)
            .with_error_message(Some(StrBytes::from_static_str(msg)));
        encode_response(h.correlation_id, hv, &r, h.api_version.clamp(0, 2))
    }
}

/// Builds an ApiVersions response frame (for scripted peers and tests).
pub fn encode_api_versions(correlation_id: i32, resp: &ApiVersionsResponse, version: i16) -> Bytes {
    encode_response(correlation_id, 0, resp, version)
}

/// Decoding helper used by tests: (key, min, max) triples of a frame.
pub fn list_api_versions(frame: &[u8], version: i16) -> Result<Vec<(i16, i16, i16)>, WireError> {
    let mut r = Reader::at(frame, LEN_PREFIX + 4);
    let error_code = r.i16()?;
    let version = if error_code == UNSUPPORTED_VERSION {
        0
    } else {
        version
    };
    let flexible = version >= 3;
    let n = r.array_len(flexible, 6)?.unwrap_or(0);
    let mut v = Vec::with_capacity(n.min(128));
    for _ in 0..n {
        v.push((r.i16()?, r.i16()?, r.i16()?));
        if flexible {
            r.skip_tagged_fields()?;
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Decodable;

    fn broker_response(version: i16, error: i16) -> Bytes {
        let mut keys = Vec::new();
        for k in ApiKey::iter() {
            let r = k.valid_versions();
            keys.push(
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(0)
                    .with_max_version(r.max + 3),
            );
        }
        keys.push(
            ApiVersion::default()
                .with_api_key(999)
                .with_min_version(0)
                .with_max_version(1),
        );
        let resp = ApiVersionsResponse::default()
            .with_error_code(error)
            .with_api_keys(keys)
            .with_throttle_time_ms(7);
        encode_api_versions(5, &resp, version)
    }

    #[test]
    fn filtered_list_decodes_with_kafka_protocol_and_respects_the_allow_list() {
        for v in 0..=4 {
            let out = rewrite_api_versions(&broker_response(v, 0), v).unwrap();
            let mut body = out.freeze().slice(8..);
            let decoded = ApiVersionsResponse::decode(&mut body, v).unwrap();
            assert!(body.is_empty());
            if v >= 1 {
                assert_eq!(decoded.throttle_time_ms, 7);
            }
            assert!(!decoded.api_keys.is_empty());
            for a in &decoded.api_keys {
                let (lo, hi) = allowed_versions(a.api_key).expect("only allowed keys");
                assert!(a.min_version >= lo && a.max_version <= hi);
            }
            assert!(decoded
                .api_keys
                .iter()
                .all(|a| a.api_key != 999 && a.api_key != 78));
        }
    }

    #[test]
    fn error_35_is_parsed_as_a_v0_body() {
        let out = rewrite_api_versions(&broker_response(0, 35), 4).unwrap();
        let list = list_api_versions(&out, 4).unwrap();
        assert!(list.iter().any(|&(k, _, hi)| k == 18 && hi == 4));
    }

    #[test]
    fn librdkafka_mock_error_35_body_passes_unchanged() {
        // Captured from librdkafka 2.16's mock cluster answering ApiVersions v3.
        let body: &[u8] = &[
            0, 0, 0, 7, 0x00, 0x23, 0x01, 0x00, 0x12, 0x00, 0x00, 0x00, 0x02, 0, 0, 0, 0,
        ];
        let mut f = ((body.len()) as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        let out = rewrite_api_versions(&f, 3).unwrap();
        assert_eq!(&out[..], &f[..]);
        // A success response that does not parse is still an error.
        let mut ok = f.clone();
        ok[8..10].copy_from_slice(&[0, 0]);
        assert!(rewrite_api_versions(&ok, 3).is_err());
    }

    /// Found by fuzzing: an error-35 body that is no valid v0 list but reads
    /// as an empty list in the v4 layout must pass unchanged, not re-encoded.
    #[test]
    fn fuzz_fixture_error_body_passes_verbatim() {
        let f = [0u8, 0, 0, 12, 0, 0, 0, 1, 0, 35, 0, 0, 22, 255, 142, 0];
        assert_eq!(&rewrite_api_versions(&f, 4).unwrap()[..], &f[..]);
    }

    #[test]
    fn synthesized_answers_decode() {
        let f = api_versions_too_new(9);
        let mut body = f.slice(8..);
        let d = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(d.error_code, 35);
        for v in 0..=2 {
            let h = header::RequestHeader {
                api_key: 36,
                api_version: v,
                correlation_id: 3,
            };
            let f = refuse_sasl(&h);
            let off = header::response_body_offset(&f, 36, v).unwrap();
            let mut body = f.slice(off..);
            let d = SaslAuthenticateResponse::decode(&mut body, v).unwrap();
            assert_eq!(d.error_code, ILLEGAL_SASL_STATE);
        }
    }
}
