//! The guard in front of kafka-protocol: before a request body reaches its
//! decoder (whose arrays call `Vec::with_capacity` with the count from the
//! wire), its structure is walked here with the bounds-checked reader.
//! Every array count must fit the bytes left, and the request as a whole
//! may hold at most [`MAX_ELEMENTS`] array elements, so decoding allocates
//! no more than a small multiple of the frame.
//!
//! Each schema lists the fields that the Kafka 4.1 message definition
//! gives for each version; `tests` checks every one against
//! kafka-protocol's own encoding of every version.

use crate::protocol::wire::{Reader, WireError, WireResult};

/// Array elements one request may hold (topics + partitions + …).
pub const MAX_ELEMENTS: usize = 200_000;
/// Array elements one response may hold (a Metadata response of a large
/// cluster lists every partition's replicas).
pub const MAX_RESPONSE_ELEMENTS: usize = 5_000_000;

#[derive(Clone, Copy)]
pub enum T {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    /// A (nullable) string.
    Str,
    /// (Nullable) bytes, records included.
    Bytes,
    /// An array of structs.
    Arr(&'static [F]),
    ArrI32,
    ArrStr,
    /// One struct inline (a tagged field's value).
    Struct(&'static [F]),
    /// A nullable struct: an i8 (-1: null), then the struct.
    NullStruct(&'static [F]),
    /// The tagged fields kafka-protocol decodes by type in this struct
    /// (flexible versions). It reads their values from the buffer
    /// whatever size the tag declares, so each must have exactly its
    /// declared size, or its decode would run past what was walked here.
    Tags(&'static [(u32, T)]),
}

/// A field: its type and the versions (inclusive) that carry it.
#[derive(Clone, Copy)]
pub struct F(pub T, pub i16, pub i16);

const M: i16 = i16::MAX;

/// A request body: decodable versions, first flexible version, fields.
pub struct Schema {
    pub min: i16,
    pub max: i16,
    pub flex: i16,
    pub body: &'static [F],
}

/// Walks `body` (a request body, header excluded) per `s` at `version`.
/// Bytes after the last field are allowed, as Kafka allows them
/// (librdkafka 2.16 sends three zero bytes after a Metadata v12 body); a
/// replacement request drops them.
pub fn check(s: &Schema, version: i16, body: &[u8]) -> WireResult<()> {
    check_with(s, version, body, MAX_ELEMENTS)
}

/// [`check`] with an element budget of its own.
pub fn check_with(s: &Schema, version: i16, body: &[u8], mut budget: usize) -> WireResult<()> {
    let mut r = Reader::new(body);
    if version < s.min || version > s.max {
        return Err(WireError {
            what: "version kgate's policy cannot decode",
            offset: 0,
        });
    }
    walk(&mut r, s.body, version, version >= s.flex, &mut budget)
}

fn count(r: &mut Reader<'_>, flex: bool, min_elem: usize, budget: &mut usize) -> WireResult<usize> {
    let n = r.array_len(flex, min_elem)?.unwrap_or(0);
    if n > *budget {
        return Err(WireError {
            what: "request holds too many array elements",
            offset: r.pos(),
        });
    }
    *budget -= n;
    Ok(n)
}

fn walk(r: &mut Reader<'_>, fields: &[F], v: i16, flex: bool, budget: &mut usize) -> WireResult<()> {
    let mut known: &[(u32, T)] = &[];
    for &F(t, from, to) in fields {
        if v < from || v > to {
            continue;
        }
        match t {
            T::Tags(k) => known = k,
            t => one(r, t, v, flex, budget)?,
        }
    }
    if flex {
        tags(r, known, v, budget)?;
    }
    Ok(())
}

fn one(r: &mut Reader<'_>, t: T, v: i16, flex: bool, budget: &mut usize) -> WireResult<()> {
    match t {
        T::I8 => r.skip(1)?,
        T::I16 => r.skip(2)?,
        T::I32 => r.skip(4)?,
        T::I64 => r.skip(8)?,
        T::Uuid => r.skip(16)?,
        T::Str => {
            r.any_string(flex)?;
        }
        T::Bytes => r.skip_bytes(flex)?,
        T::ArrI32 => {
            let n = count(r, flex, 4, budget)?;
            r.skip(n * 4)?;
        }
        T::ArrStr => {
            for _ in 0..count(r, flex, 1, budget)? {
                r.any_string(flex)?;
            }
        }
        T::Arr(inner) => {
            for _ in 0..count(r, flex, 1, budget)? {
                walk(r, inner, v, flex, budget)?;
            }
        }
        T::Struct(inner) => walk(r, inner, v, flex, budget)?,
        T::NullStruct(inner) => {
            if r.i8()? >= 0 {
                walk(r, inner, v, flex, budget)?;
            }
        }
        T::Tags(_) => {}
    }
    Ok(())
}

/// A tagged-field section: unknown tags are skipped by their size; a
/// known tag's value must fill its size exactly.
fn tags(r: &mut Reader<'_>, known: &[(u32, T)], v: i16, budget: &mut usize) -> WireResult<()> {
    let n = r.uvarint()?;
    for _ in 0..n {
        let tag = r.uvarint()?;
        let size = r.uvarint()? as usize;
        let at = r.pos();
        let value = r.take(size)?;
        if let Some(&(_, t)) = known.iter().find(|(k, _)| *k == tag) {
            let mut sub = Reader::new(value);
            one(&mut sub, t, v, true, budget)?;
            if sub.remaining() != 0 {
                return Err(WireError {
                    what: "tagged field's size does not match its value",
                    offset: at,
                });
            }
        }
    }
    Ok(())
}

#[path = "schemas.rs"]
mod schemas;
pub use schemas::*;

#[cfg(test)]
#[path = "bounds_tests.rs"]
mod tests;
