//! KIP-951 `node_endpoints` (top-level tag 0) of Produce v10+ and Fetch
//! v16+. The response is walked without copying; record data is skipped by
//! its length. Only when tag 0 is present is a new frame built.

use super::{endpoint, BrokerMapper, RewriteError, Splice};
use crate::protocol::wire::{put_uvarint, Reader};
use bytes::{BufMut, BytesMut};

const NODE_ENDPOINTS_TAG: u32 = 0;

pub fn rewrite_produce(
    frame: &[u8],
    body: usize,
    version: i16,
    mapper: &dyn BrokerMapper,
) -> Result<Option<BytesMut>, RewriteError> {
    let mut r = Reader::at(frame, body);
    let topics = r.array_len(true, 3)?.unwrap_or(0);
    for _ in 0..topics {
        if version >= 13 {
            r.skip(16)?; // topic_id
        } else {
            r.compact_string()?;
        }
        let parts = r.array_len(true, 33)?.unwrap_or(0);
        for _ in 0..parts {
            r.skip(4 + 2 + 8 + 8 + 8)?;
            let errs = r.array_len(true, 6)?.unwrap_or(0);
            for _ in 0..errs {
                r.i32()?;
                r.compact_string()?;
                r.skip_tagged_fields()?;
            }
            r.compact_string()?;
            r.skip_tagged_fields()?;
        }
        r.skip_tagged_fields()?;
    }
    r.i32()?; // throttle_time_ms
    rewrite_top_level_tags(frame, r, mapper)
}

pub fn rewrite_fetch(
    frame: &[u8],
    body: usize,
    _version: i16,
    mapper: &dyn BrokerMapper,
) -> Result<Option<BytesMut>, RewriteError> {
    let mut r = Reader::at(frame, body);
    r.skip(4 + 2 + 4)?; // throttle_time_ms, error_code, session_id
    let topics = r.array_len(true, 18)?.unwrap_or(0);
    for _ in 0..topics {
        r.skip(16)?; // topic_id (v13+)
        let parts = r.array_len(true, 37)?.unwrap_or(0);
        for _ in 0..parts {
            r.skip(4 + 2 + 8 + 8 + 8)?;
            if let Some(aborted) = r.array_len(true, 17)? {
                for _ in 0..aborted {
                    r.skip(16)?;
                    r.skip_tagged_fields()?;
                }
            }
            r.i32()?; // preferred_read_replica
            r.skip_bytes(true)?; // records: never copied
            r.skip_tagged_fields()?;
        }
        r.skip_tagged_fields()?;
    }
    rewrite_top_level_tags(frame, r, mapper)
}

/// `r` stands at the top-level tagged-field section, which must end the
/// frame. Rewrites tag 0 if present.
fn rewrite_top_level_tags(
    frame: &[u8],
    mut r: Reader<'_>,
    mapper: &dyn BrokerMapper,
) -> Result<Option<BytesMut>, RewriteError> {
    let section = r.pos();
    let count = r.uvarint()?;
    let mut fields = Vec::with_capacity((count as usize).min(8));
    let mut has_endpoints = false;
    for _ in 0..count {
        let tag = r.uvarint()?;
        let size = r.uvarint()? as usize;
        let start = r.pos();
        r.skip(size)?;
        has_endpoints |= tag == NODE_ENDPOINTS_TAG;
        fields.push((tag, start, size));
    }
    if r.remaining() != 0 {
        return Err(crate::protocol::wire::WireError {
            what: "trailing bytes after the tagged fields",
            offset: r.pos(),
        }
        .into());
    }
    if !has_endpoints {
        return Ok(None);
    }
    let mut sp = Splice::new(frame, 128);
    sp.copy_until(section);
    put_uvarint(sp.out(), count);
    for (tag, start, size) in fields {
        let value = &frame[start..start + size];
        put_uvarint(sp.out(), tag);
        if tag == NODE_ENDPOINTS_TAG {
            let new = rewrite_endpoint_array(value, mapper)?;
            put_uvarint(sp.out(), new.len() as u32);
            sp.out().put_slice(&new);
        } else {
            put_uvarint(sp.out(), size as u32);
            sp.out().put_slice(value);
        }
    }
    sp.skip_to(frame.len());
    Ok(Some(sp.finish()))
}

/// A compact array of {node_id, host, port, rack, tags}.
fn rewrite_endpoint_array(value: &[u8], mapper: &dyn BrokerMapper) -> Result<BytesMut, RewriteError> {
    let mut r = Reader::new(value);
    let n = r.array_len(true, 11)?.unwrap_or(0);
    let mut sp = Splice::new(value, n * 24);
    for _ in 0..n {
        let node_id = r.i32()?;
        endpoint(&mut r, &mut sp, true, node_id, mapper)?;
        r.compact_string()?; // rack
        r.skip_tagged_fields()?;
    }
    if r.remaining() != 0 {
        return Err(crate::protocol::wire::WireError {
            what: "trailing bytes in node_endpoints",
            offset: r.pos(),
        }
        .into());
    }
    Ok(sp.finish_body())
}
