//! KIP-951 `node_endpoints` (top-level tag 0) of Produce v10+ and Fetch
//! v16+. The response is walked without copying; record data is skipped by
//! its length. Only when tag 0 is present is a new frame built.

use super::{broker_array, BrokerMapper, RewriteError, Splice};
use crate::protocol::fetch_scan::{FetchScan, Step};
use crate::protocol::frame::LEN_PREFIX;
use crate::protocol::wire::{put_uvarint, uvarint_len, Reader};
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

/// A whole Fetch v16+ response: walked with the same scanner that finds a
/// streamed response's tail (records skipped by their length), then the
/// top-level tagged fields are rewritten.
pub fn rewrite_fetch(
    frame: &[u8],
    _body: usize,
    _version: i16,
    mapper: &dyn BrokerMapper,
) -> Result<Option<BytesMut>, RewriteError> {
    let mut scan = FetchScan::new();
    // The scanner starts at the response header's tagged fields.
    let mut pos = LEN_PREFIX + 4;
    loop {
        let rest = frame.get(pos..).unwrap_or_default();
        match scan.step(rest, rest.len())? {
            Step::Pass { head, records } => pos += head + records,
            Step::Tail => return rewrite_top_level_tags(frame, Reader::at(frame, pos), mapper),
            // The whole frame is at hand: the scanner errs rather than asks.
            Step::NeedMore => {
                return Err(crate::protocol::wire::WireError {
                    what: "Fetch response ends inside a unit",
                    offset: pos,
                }
                .into())
            }
        }
    }
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
    let mut sp = Splice::new(value, 64);
    broker_array(&mut r, &mut sp, true, 11, mapper, |r| {
        r.compact_string()?; // rack
        r.skip_tagged_fields()
    })?;
    if r.remaining() != 0 {
        return Err(crate::protocol::wire::WireError {
            what: "trailing bytes in node_endpoints",
            offset: r.pos(),
        }
        .into());
    }
    Ok(sp.finish_body())
}

/// Tags of the filler fields that keep a streamed tail's length: far above
/// any tag Kafka defines, so clients skip them as unknown tagged fields.
const FILLER_TAGS: [u32; 2] = [16368, 16369];

/// The payload size of a filler field with `tag` that takes exactly
/// `total` bytes on the wire, if one exists.
fn filler_size(tag: u32, total: usize) -> Option<usize> {
    let rest = total.checked_sub(uvarint_len(tag))?;
    (1..=3).find_map(|k| rest.checked_sub(k).filter(|s| uvarint_len(*s as u32) == k))
}

/// Payload sizes of `n` filler fields (1 or 2) taking exactly `total`.
fn fillers(n: usize, total: usize) -> Option<Vec<usize>> {
    match n {
        0 => (total == 0).then(Vec::new),
        1 => filler_size(FILLER_TAGS[0], total).map(|s| vec![s]),
        _ => (3..total.saturating_sub(2)).find_map(|first| {
            let a = filler_size(FILLER_TAGS[0], first)?;
            let b = filler_size(FILLER_TAGS[1], total - first)?;
            Some(vec![a, b])
        }),
    }
}

/// Writes `fields` (ascending tags) plus filler so the section takes
/// exactly `len` bytes, or `None` if it cannot.
fn fixed_len_section(fields: &[(u32, &[u8])], len: usize) -> Option<BytesMut> {
    let body: usize = fields
        .iter()
        .map(|(t, v)| uvarint_len(*t) + uvarint_len(v.len() as u32) + v.len())
        .sum();
    if fields.last().is_some_and(|(t, _)| *t >= FILLER_TAGS[0]) {
        return None;
    }
    (0..=2).find_map(|n| {
        let count = (fields.len() + n) as u32;
        let sizes = fillers(n, len.checked_sub(uvarint_len(count) + body)?)?;
        let mut out = BytesMut::with_capacity(len);
        put_uvarint(&mut out, count);
        for (t, v) in fields {
            put_uvarint(&mut out, *t);
            put_uvarint(&mut out, v.len() as u32);
            out.put_slice(v);
        }
        for (i, s) in sizes.into_iter().enumerate() {
            put_uvarint(&mut out, FILLER_TAGS[i]);
            put_uvarint(&mut out, s as u32);
            out.put_bytes(0, s);
        }
        debug_assert_eq!(out.len(), len);
        Some(out)
    })
}

/// Rewrites the top-level tagged-field section that ends a streamed Fetch
/// response, keeping its length (the frame's size already went out). The
/// rewritten `node_endpoints` is padded with an unknown tagged field when
/// shorter; when it cannot fit, it is dropped (clients then refresh
/// Metadata, which is rewritten), so no upstream address ever passes.
/// `None`: there is no `node_endpoints`; the tail passes unchanged.
pub fn rewrite_fetch_tail(tail: &[u8], mapper: &dyn BrokerMapper) -> Result<Option<BytesMut>, RewriteError> {
    let mut r = Reader::new(tail);
    let count = r.uvarint()?;
    let mut fields: Vec<(u32, &[u8])> = Vec::with_capacity((count as usize).min(8));
    for _ in 0..count {
        let tag = r.uvarint()?;
        let size = r.uvarint()? as usize;
        let start = r.pos();
        r.skip(size)?;
        fields.push((tag, &tail[start..start + size]));
    }
    if r.remaining() != 0 {
        return Err(crate::protocol::wire::WireError {
            what: "trailing bytes after the tagged fields",
            offset: r.pos(),
        }
        .into());
    }
    let Some(at) = fields.iter().position(|(t, _)| *t == NODE_ENDPOINTS_TAG) else {
        return Ok(None);
    };
    let new = rewrite_endpoint_array(fields[at].1, mapper)?;
    let mut with = fields.clone();
    with[at].1 = &new;
    if let Some(out) = fixed_len_section(&with, tail.len()) {
        return Ok(Some(out));
    }
    fields.remove(at);
    tracing::debug!("node_endpoints does not fit the streamed Fetch tail; dropped");
    fixed_len_section(&fields, tail.len()).map(Some).ok_or_else(|| {
        crate::protocol::wire::WireError {
            what: "node_endpoints tail cannot be rewritten in place",
            offset: 0,
        }
        .into()
    })
}

#[cfg(test)]
pub fn fillers_for_tests(n: usize, total: usize) -> Option<Vec<usize>> {
    fillers(n, total)
}
