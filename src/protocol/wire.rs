//! Bounds-checked primitives for reading and writing Kafka wire types.
//!
//! Every read checks the remaining length first and returns [`WireError`]
//! instead of panicking; counts read from the wire are never used to size an
//! allocation. This is the only place that touches raw offsets.

use bytes::{BufMut, BytesMut};

/// A malformed or truncated field, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct WireError {
    pub what: &'static str,
    pub offset: usize,
}

pub type WireResult<T> = Result<T, WireError>;

/// A cursor over a borrowed byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn err<T>(&self, what: &'static str) -> WireResult<T> {
        Err(WireError {
            what,
            offset: self.pos,
        })
    }

    /// Bytes between two positions already read past.
    pub fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        &self.buf[from.min(to)..to.min(self.buf.len())]
    }

    pub fn take(&mut self, n: usize) -> WireResult<&'a [u8]> {
        if n > self.remaining() {
            return self.err("truncated field");
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize) -> WireResult<()> {
        self.take(n).map(|_| ())
    }

    pub fn i8(&mut self) -> WireResult<i8> {
        Ok(self.take(1)?[0] as i8)
    }

    pub fn i16(&mut self) -> WireResult<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> WireResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn uvarint(&mut self) -> WireResult<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            if i == 4 && b > 0x0f {
                return self.err("unsigned varint overflows 32 bits");
            }
            value |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        self.err("unsigned varint longer than 5 bytes")
    }

    /// A classic (INT16-length) string; `None` for null.
    pub fn string(&mut self) -> WireResult<Option<&'a str>> {
        let len = self.i16()?;
        if len < 0 {
            if len != -1 {
                return self.err("negative string length");
            }
            return Ok(None);
        }
        self.utf8(len as usize).map(Some)
    }

    /// A compact (UNSIGNED_VARINT length + 1) string; `None` for null.
    pub fn compact_string(&mut self) -> WireResult<Option<&'a str>> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        self.utf8((n - 1) as usize).map(Some)
    }

    /// Reads a string in the compact or classic encoding.
    pub fn any_string(&mut self, compact: bool) -> WireResult<Option<&'a str>> {
        if compact {
            self.compact_string()
        } else {
            self.string()
        }
    }

    fn utf8(&mut self, n: usize) -> WireResult<&'a str> {
        let start = self.pos;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| WireError {
            what: "string is not UTF-8",
            offset: start,
        })
    }

    /// Array length in the compact or classic encoding; `None` for null.
    /// The count is checked against the bytes left, assuming each element
    /// takes at least `min_elem` bytes, so a lying count fails here.
    pub fn array_len(&mut self, compact: bool, min_elem: usize) -> WireResult<Option<usize>> {
        let n: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        if n < 0 {
            if n != -1 {
                return self.err("negative array length");
            }
            return Ok(None);
        }
        let n = n as usize;
        if n.saturating_mul(min_elem.max(1)) > self.remaining() {
            return self.err("array length exceeds the frame");
        }
        Ok(Some(n))
    }

    /// Skips compact or classic nullable bytes.
    pub fn skip_bytes(&mut self, compact: bool) -> WireResult<()> {
        let n: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        if n < -1 {
            return self.err("negative bytes length");
        }
        if n > 0 {
            self.skip(n as usize)?;
        }
        Ok(())
    }

    /// Skips a tagged-field section (flexible versions only).
    pub fn skip_tagged_fields(&mut self) -> WireResult<()> {
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.skip(size)?;
        }
        Ok(())
    }
}

pub fn put_uvarint(out: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

pub fn uvarint_len(mut v: u32) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Writes a non-null string in the compact or classic encoding.
pub fn put_string(out: &mut BytesMut, s: &str, compact: bool) {
    if compact {
        put_uvarint(out, s.len() as u32 + 1);
    } else {
        out.put_i16(s.len() as i16);
    }
    out.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_round_trip() {
        for v in [0u32, 1, 127, 128, 300, 16383, 16384, u32::MAX] {
            let mut b = BytesMut::new();
            put_uvarint(&mut b, v);
            assert_eq!(b.len(), uvarint_len(v));
            assert_eq!(Reader::new(&b).uvarint(), Ok(v));
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        assert!(Reader::new(&[0xff; 6]).uvarint().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f]).uvarint().is_err());
    }

    #[test]
    fn lying_array_length_is_refused_before_allocation() {
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff, 0, 0]);
        assert!(r.array_len(false, 4).is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.array_len(false, 4), Ok(None));
        let mut r = Reader::new(&[0xfe, 0xff, 0xff, 0xff]);
        assert!(r.array_len(false, 4).is_err());
    }

    #[test]
    fn truncated_and_bad_strings() {
        assert!(Reader::new(&[0, 5, b'a']).string().is_err());
        assert_eq!(Reader::new(&[0xff, 0xff]).string(), Ok(None));
        assert!(Reader::new(&[0xff, 0xfe]).string().is_err());
        assert!(Reader::new(&[3, 0xff, 0xfe]).compact_string().is_err());
        assert_eq!(Reader::new(&[3, b'h', b'i']).compact_string(), Ok(Some("hi")));
    }
}
