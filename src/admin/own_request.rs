//! Frames the requests kgate sends as itself (client id `kgate`): the
//! topic-id fetch and the producer-id fetch.

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// A whole request frame (size prefix, header, body) for `key` at `version`.
pub fn frame<M: Encodable>(
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: &M,
) -> Result<BytesMut, String> {
    let mut b = BytesMut::with_capacity(64);
    b.extend_from_slice(&[0; 4]);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("kgate")))
        .encode(&mut b, key.request_header_version(version))
        .map_err(|e| e.to_string())?;
    body.encode(&mut b, version).map_err(|e| e.to_string())?;
    let n = i32::try_from(b.len() - 4).map_err(|_| "request too large".to_string())?;
    b[..4].copy_from_slice(&n.to_be_bytes());
    Ok(b)
}
