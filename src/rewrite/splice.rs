//! Builds a rewritten frame by copying unchanged spans of the original and
//! inserting new bytes between them.

use crate::protocol::frame::LEN_PREFIX;
use bytes::{BufMut, BytesMut};

pub struct Splice<'a> {
    src: &'a [u8],
    out: BytesMut,
    from: usize,
}

impl<'a> Splice<'a> {
    pub fn new(src: &'a [u8], extra: usize) -> Self {
        Splice {
            src,
            out: BytesMut::with_capacity(src.len() + extra),
            from: 0,
        }
    }

    /// Copies the original bytes up to `pos`.
    pub fn copy_until(&mut self, pos: usize) {
        if pos > self.from {
            self.out.put_slice(&self.src[self.from..pos]);
            self.from = pos;
        }
    }

    /// Drops the original bytes up to `pos` (they were replaced).
    pub fn skip_to(&mut self, pos: usize) {
        self.from = pos;
    }

    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Copies the rest and fixes the frame's length prefix.
    pub fn finish(mut self) -> BytesMut {
        self.copy_until(self.src.len());
        let len = (self.out.len() - LEN_PREFIX) as i32;
        self.out[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
        self.out
    }
}

impl Splice<'_> {
    /// Copies the rest without touching any length prefix (for a value
    /// nested inside a frame).
    pub fn finish_body(mut self) -> BytesMut {
        self.copy_until(self.src.len());
        self.out
    }
}
