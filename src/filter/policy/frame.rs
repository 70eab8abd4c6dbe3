//! Frames in and out of kafka-protocol: a request's header and body (the
//! body only after [`super::bounds::check`]), an answer of kgate's own, a
//! replacement request, and a response rebuilt with denied entries merged.

use super::bounds::{self, Schema};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A decoded request header, with the key and version it names.
pub struct Head {
    pub key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
}

/// Splits a whole request frame into its header and its body, checking the
/// body against `schema` before anything is decoded from it.
pub fn split(frame: &[u8], schema: &Schema) -> Result<(Head, Bytes), String> {
    let mut b = Bytes::copy_from_slice(frame.get(4..).ok_or("frame shorter than its size")?);
    let key_raw = i16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]);
    let version = i16::from_be_bytes([b.get(2).copied().unwrap_or(0), b.get(3).copied().unwrap_or(0)]);
    let key = ApiKey::try_from(key_raw).map_err(|_| format!("unknown api key {key_raw}"))?;
    let hv = key.request_header_version(version);
    let header = RequestHeader::decode(&mut b, hv).map_err(|e| format!("request header: {e}"))?;
    bounds::check(schema, version, &b).map_err(|e| e.to_string())?;
    Ok((Head { key, version, header }, b))
}

pub fn decode<M: Decodable>(body: &mut Bytes, version: i16) -> Result<M, String> {
    M::decode(body, version).map_err(|e| e.to_string())
}

fn framed(f: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>) -> Result<Bytes, String> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    f(&mut out).map_err(|e| e.to_string())?;
    let n = i32::try_from(out.len() - 4).map_err(|_| "frame too large".to_string())?;
    out[..4].copy_from_slice(&n.to_be_bytes());
    Ok(out.freeze())
}

/// A response frame for the request `h`: header and `body`.
pub fn response<M: Encodable>(h: &Head, body: &M) -> Result<Bytes, String> {
    response_to(h.key, h.version, h.header.correlation_id, body)
}

pub fn response_to<M: Encodable>(key: ApiKey, version: i16, corr: i32, body: &M) -> Result<Bytes, String> {
    framed(|out| {
        ResponseHeader::default()
            .with_correlation_id(corr)
            .encode(out, key.response_header_version(version))?;
        body.encode(out, version)
    })
}

/// A request frame with `h`'s header and a new `body`.
pub fn request<M: Encodable>(h: &Head, body: &M) -> Result<Bytes, String> {
    framed(|out| {
        h.header.encode(out, h.key.request_header_version(h.version))?;
        body.encode(out, h.version)
    })
}

/// A response frame's body (after its header), for decoding.
pub fn response_body(frame: &[u8], key: ApiKey, version: i16) -> Result<Bytes, String> {
    let off = crate::protocol::header::response_body_offset(frame, key as i16, version)
        .map_err(|e| e.to_string())?;
    Ok(Bytes::copy_from_slice(&frame[off.min(frame.len())..]))
}

/// Re-encodes a response frame with a new body, keeping its header bytes.
pub fn rebuild<M: Encodable>(frame: &[u8], key: ApiKey, version: i16, body: &M) -> Result<BytesMut, String> {
    let off = crate::protocol::header::response_body_offset(frame, key as i16, version)
        .map_err(|e| e.to_string())?;
    let head = frame.get(4..off).ok_or("response shorter than its header")?;
    let mut out = BytesMut::with_capacity(frame.len() + 64);
    out.put_i32(0);
    out.put_slice(head);
    body.encode(&mut out, version).map_err(|e| e.to_string())?;
    let n = i32::try_from(out.len() - 4).map_err(|_| "frame too large".to_string())?;
    out[..4].copy_from_slice(&n.to_be_bytes());
    Ok(out)
}

/// Bytes before a response's entry array: the fields that precede it
/// (throttle time; for Fetch v7+ also its error code and session id).
fn lead(key: ApiKey, version: i16) -> usize {
    match key {
        ApiKey::Produce => 0,
        ApiKey::Fetch if version >= 7 => 10,
        ApiKey::ListOffsets | ApiKey::OffsetForLeaderEpoch | ApiKey::CreateTopics if version < 2 => 0,
        ApiKey::DeleteTopics | ApiKey::DescribeGroups if version < 1 => 0,
        ApiKey::OffsetCommit if version < 3 => 0,
        _ => 4,
    }
}

/// The broker's response with `items` put in front of its entry array:
/// the fixed fields before the array are copied, its count raised, the
/// items encoded, and the rest copied as it came. Only the count is read.
pub fn prepend<E: Encodable>(
    resp: &[u8],
    key: ApiKey,
    version: i16,
    items: &[E],
) -> Result<BytesMut, String> {
    use crate::protocol::wire::{put_uvarint, Reader};
    let flex = key.response_header_version(version) >= 1;
    let off = crate::protocol::header::response_body_offset(resp, key as i16, version)
        .map_err(|e| e.to_string())?;
    let at = off + lead(key, version);
    let mut r = Reader::at(resp, at);
    let n = if flex {
        i64::from(r.uvarint().map_err(|e| e.to_string())?) - 1
    } else {
        i64::from(r.i32().map_err(|e| e.to_string())?)
    };
    let n = u32::try_from(n.max(0)).map_err(|_| "entry count out of range".to_string())?;
    let total = n
        .checked_add(u32::try_from(items.len()).map_err(|_| "too many entries".to_string())?)
        .filter(|t| *t < i32::MAX as u32)
        .ok_or("entry count out of range")?;
    let mut out = BytesMut::with_capacity(resp.len() + 64 * items.len());
    out.put_slice(&resp[..at]);
    if flex {
        put_uvarint(&mut out, total + 1);
    } else {
        out.put_i32(total as i32);
    }
    for e in items {
        e.encode(&mut out, version).map_err(|e| e.to_string())?;
    }
    out.put_slice(&resp[r.pos()..]);
    let len = i32::try_from(out.len() - 4).map_err(|_| "frame too large".to_string())?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Moves the elements `deny` picks out of `v`, keeping order in both.
pub fn take_denied<T>(v: &mut Vec<T>, mut deny: impl FnMut(&T) -> bool) -> Vec<T> {
    let mut kept = Vec::with_capacity(v.len());
    let mut out = Vec::new();
    for x in v.drain(..) {
        if deny(&x) {
            out.push(x);
        } else {
            kept.push(x);
        }
    }
    *v = kept;
    out
}
