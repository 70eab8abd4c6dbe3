//! Peeks at the fixed request header and, for Produce, at `acks`; nothing
//! else of a request is ever decoded.

use super::frame::LEN_PREFIX;
use super::wire::{Reader, WireResult};

/// API keys kgate itself needs to recognise.
pub mod key {
    pub const PRODUCE: i16 = 0;
    pub const FETCH: i16 = 1;
    pub const METADATA: i16 = 3;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const SASL_HANDSHAKE: i16 = 17;
    pub const API_VERSIONS: i16 = 18;
    pub const SASL_AUTHENTICATE: i16 = 36;
    pub const DESCRIBE_CLUSTER: i16 = 60;
}

/// The fixed part of every request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api_key, api_version and correlation_id from a whole frame
/// (length prefix included).
pub fn peek_request_header(frame: &[u8]) -> WireResult<RequestHeader> {
    let mut r = Reader::at(frame, LEN_PREFIX);
    Ok(RequestHeader {
        api_key: r.i16()?,
        api_version: r.i16()?,
        correlation_id: r.i32()?,
    })
}

/// Reads the correlation id of a response frame.
pub fn peek_response_correlation(frame: &[u8]) -> WireResult<i32> {
    Reader::at(frame, LEN_PREFIX).i32()
}

/// Whether a request of this key and version uses a flexible (v2) header.
pub fn request_header_is_flexible(api_key: i16, version: i16) -> bool {
    use kafka_protocol::messages::ApiKey;
    match ApiKey::try_from(api_key) {
        Ok(k) => k.request_header_version(version) >= 2,
        Err(()) => false,
    }
}

/// Whether a response of this key and version carries header tagged fields.
pub fn response_header_is_flexible(api_key: i16, version: i16) -> bool {
    use kafka_protocol::messages::ApiKey;
    match ApiKey::try_from(api_key) {
        Ok(k) => k.response_header_version(version) >= 1,
        Err(()) => false,
    }
}

/// Offset of the request body in a frame: skips the header's client_id
/// and, for flexible versions, its tagged fields.
pub fn request_body_offset(frame: &[u8], h: &RequestHeader) -> WireResult<usize> {
    let mut r = Reader::at(frame, LEN_PREFIX + 8);
    r.string()?;
    if request_header_is_flexible(h.api_key, h.api_version) {
        r.skip_tagged_fields()?;
    }
    Ok(r.pos())
}

/// Offset of the response body: skips correlation id and, for flexible
/// versions, the header's tagged fields.
pub fn response_body_offset(frame: &[u8], api_key: i16, version: i16) -> WireResult<usize> {
    let mut r = Reader::at(frame, LEN_PREFIX + 4);
    if response_header_is_flexible(api_key, version) {
        r.skip_tagged_fields()?;
    }
    Ok(r.pos())
}

/// How many bytes of a Produce frame [`peek_produce_acks`] reads, told from
/// a prefix of it; `None` while the prefix is too short to tell. Lets the
/// pump forward a large Produce after its first bytes instead of after a
/// fixed head.
pub fn produce_head_len(prefix: &[u8], h: &RequestHeader) -> Option<usize> {
    if h.api_key != key::PRODUCE {
        return None;
    }
    let body = request_body_offset(prefix, h).ok()?;
    let mut r = Reader::at(prefix, body);
    if h.api_version >= 3 {
        r.any_string(h.api_version >= 9).ok()?;
    }
    Some(r.pos() + 2)
}

/// The `acks` field of a Produce request (every version).
pub fn peek_produce_acks(frame: &[u8], h: &RequestHeader) -> WireResult<i16> {
    let body = request_body_offset(frame, h)?;
    let mut r = Reader::at(frame, body);
    if h.api_version >= 3 {
        r.any_string(h.api_version >= 9)?;
    }
    r.i16()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ProduceRequest, RequestHeader as KpHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn produce_frame(version: i16, acks: i16, txn: Option<&str>) -> Vec<u8> {
        let mut body = BytesMut::new();
        let hv = if version >= 9 { 2 } else { 1 };
        KpHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("test-client")))
            .encode(&mut body, hv)
            .unwrap();
        ProduceRequest::default()
            .with_acks(acks)
            .with_transactional_id(
                txn.map(|t| kafka_protocol::messages::TransactionalId(StrBytes::from_string(t.to_string()))),
            )
            .encode(&mut body, version)
            .unwrap();
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn the_produce_head_ends_right_after_acks_and_prefixes_cannot_tell_early() {
        for v in 3..=13 {
            for txn in [None, Some("a-transaction")] {
                let f = produce_frame(v, 1, txn);
                let h = peek_request_header(&f).unwrap();
                let n = produce_head_len(&f, &h).expect("whole frame");
                assert_eq!(peek_produce_acks(&f[..n], &h).unwrap(), 1, "v{v} {txn:?}");
                assert!(
                    peek_produce_acks(&f[..n - 1], &h).is_err(),
                    "v{v}: acks ends at {n}"
                );
                for cut in 12..n {
                    assert!(
                        produce_head_len(&f[..cut], &h).is_none_or(|m| m > cut),
                        "v{v} {txn:?}: a {cut}-byte prefix claimed enough"
                    );
                }
            }
        }
    }

    #[test]
    fn acks_peek_matches_kafka_protocol_encoding_for_every_version() {
        for v in 3..=13 {
            for acks in [0i16, 1, -1] {
                for txn in [None, Some("txn-1")] {
                    let f = produce_frame(v, acks, txn);
                    let h = peek_request_header(&f).unwrap();
                    assert_eq!(h.api_version, v);
                    assert_eq!(h.correlation_id, 77);
                    assert_eq!(peek_produce_acks(&f, &h).unwrap(), acks, "v{v}");
                }
            }
        }
    }

    #[test]
    fn acks_peek_on_truncated_frame_is_an_error() {
        let f = produce_frame(9, 0, Some("x"));
        let h = peek_request_header(&f).unwrap();
        for cut in 12..f.len() - 10 {
            let _ = peek_produce_acks(&f[..cut], &h);
        }
        assert!(peek_produce_acks(&f[..14], &h).is_err());
    }
}
