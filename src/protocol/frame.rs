//! Length-prefixed framing: the size check happens before any allocation,
//! and a TLS ClientHello on a plaintext port is recognised as such.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the big-endian INT32 size that starts every Kafka frame.
pub const LEN_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("peer sent a TLS ClientHello to a plaintext listener (configure the client with security.protocol=PLAINTEXT, or enable TLS on this listener)")]
    TlsOnPlaintext,
    #[error("peer sent HTTP to a Kafka port")]
    HttpOnKafka,
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    #[error("frame length {len} exceeds the limit of {max} bytes (max_frame_bytes)")]
    TooLarge { len: usize, max: usize },
    #[error("first request of {len} bytes exceeds the {max}-byte bound that applies before kgate opens the upstream")]
    FirstTooLarge { len: usize, max: usize },
    #[error("frame of {0} bytes is too short for a Kafka header")]
    TooShort(usize),
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Checks the first bytes of a stream for things that are clearly not Kafka.
pub fn sniff_foreign(prefix: &[u8]) -> Option<FrameError> {
    if prefix.len() >= 3 && prefix[0] == 0x16 && prefix[1] == 0x03 && prefix[2] <= 0x04 {
        return Some(FrameError::TlsOnPlaintext);
    }
    for verb in [&b"GET "[..], b"POST", b"PUT ", b"HEAD", b"PRI "] {
        if prefix.starts_with(verb) {
            return Some(FrameError::HttpOnKafka);
        }
    }
    None
}

/// Validates a frame's size field; returns the whole frame's length
/// (prefix included).
pub fn frame_len(prefix: [u8; 4], min_body: usize, max: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(FrameError::NegativeLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len < min_body {
        return Err(FrameError::TooShort(len));
    }
    Ok(len + LEN_PREFIX)
}

/// Reads frames from one side of a connection. Small frames are taken
/// whole from a reused buffer; a large one can be streamed: its header
/// peeked, then its bytes copied on in bounded chunks ([`FrameReader::copy_to`]).
/// A frame's claimed size is checked, never reserved: the buffer grows
/// only with bytes that actually arrived.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame: usize,
    min_body: usize,
    sniff: bool,
    chunk: usize,
}

/// Read buffers start small (idle connections stay cheap) and double, up
/// to `MAX_CHUNK`, while reads keep filling them.
const FIRST_CHUNK: usize = 2 * 1024;
pub const MAX_CHUNK: usize = 256 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `min_body` is the smallest legal frame body (8 for requests, 4 for
    /// responses). With `sniff`, the first bytes are checked for TLS/HTTP.
    pub fn new(io: R, max_frame: usize, min_body: usize, sniff: bool) -> Self {
        FrameReader {
            io,
            buf: BytesMut::new(),
            chunk: FIRST_CHUNK,
            max_frame,
            min_body,
            sniff,
        }
    }

    /// A reader whose first bytes were already read (and sniffed).
    pub fn with_buffered(io: R, buf: BytesMut, max_frame: usize, min_body: usize) -> Self {
        FrameReader {
            io,
            buf,
            chunk: FIRST_CHUNK,
            max_frame,
            min_body,
            sniff: false,
        }
    }

    /// True when bytes of a next frame are already buffered.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The stream being read.
    pub fn get_ref(&self) -> &R {
        &self.io
    }

    /// The bytes buffered so far (the current frame first).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The buffer's capacity (memory tests).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads more bytes; returns 0 at EOF. At most `MAX_CHUNK` is reserved
    /// at a time, whatever a frame claims.
    pub async fn fill(&mut self) -> Result<usize, FrameError> {
        if self.buf.capacity() - self.buf.len() < self.chunk / 2 {
            self.buf.reserve(self.chunk);
        }
        let spare = self.buf.capacity() - self.buf.len();
        match self.io.read_buf(&mut self.buf).await {
            Ok(n) => {
                if n == spare && self.chunk < MAX_CHUNK {
                    self.chunk *= 2;
                }
                Ok(n)
            }
            // Kafka clients close TLS without close_notify: a plain EOF.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives back memory after a large frame: a buffer that grew past
    /// `MAX_CHUNK` and now holds little is replaced by a small one.
    pub fn shrink(&mut self) {
        if self.buf.capacity() > 2 * MAX_CHUNK && self.buf.len() <= FIRST_CHUNK {
            let mut small = BytesMut::with_capacity(FIRST_CHUNK.max(self.buf.len()));
            small.extend_from_slice(&self.buf);
            self.buf = small;
            self.chunk = FIRST_CHUNK;
        }
    }

    fn check_prefix(&mut self) -> Result<Option<usize>, FrameError> {
        if self.sniff && self.buf.len() >= 4 {
            self.sniff = false;
            if let Some(e) = sniff_foreign(&self.buf[..4]) {
                return Err(e);
            }
        }
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let prefix = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        frame_len(prefix, self.min_body, self.max_frame).map(Some)
    }

    fn truncated(&self) -> FrameError {
        let want = match self.buf.len() >= LEN_PREFIX {
            true => {
                i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize + LEN_PREFIX
            }
            false => LEN_PREFIX,
        };
        FrameError::Truncated {
            got: self.buf.len(),
            want,
        }
    }

    /// The next frame's whole length (prefix included), checked; `None` at
    /// a clean EOF between frames.
    pub async fn next_len(&mut self) -> Result<Option<usize>, FrameError> {
        loop {
            if let Some(total) = self.check_prefix()? {
                return Ok(Some(total));
            }
            if self.fill().await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(self.truncated());
            }
        }
    }

    /// Buffers at least `n` bytes of the current frame (`n` must not exceed
    /// its length). EOF first is a truncation.
    /// Reads until `enough` (given the buffered prefix, it says how many
    /// bytes it needs, or `None` when it cannot tell yet) is satisfied, or
    /// `cap` bytes are buffered. Returns how many buffered bytes (at most
    /// `cap`) to look at.
    pub async fn ensure_until(
        &mut self,
        cap: usize,
        enough: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<usize, FrameError> {
        let mut want = cap.min(256);
        loop {
            self.ensure(want).await?;
            let have = self.buf.len().min(cap);
            let next = match enough(&self.buf[..have]) {
                Some(n) if n <= have => return Ok(have),
                Some(n) => n.min(cap),
                None => have.saturating_mul(4).min(cap),
            };
            if next <= have {
                return Ok(have);
            }
            want = next;
        }
    }

    pub async fn ensure(&mut self, n: usize) -> Result<(), FrameError> {
        while self.buf.len() < n {
            let want = (n - self.buf.len()).min(4 * MAX_CHUNK);
            if self.buf.capacity() - self.buf.len() < want {
                self.buf.reserve(want);
            }
            if self.io.read_buf(&mut self.buf).await.or_else(eof_is_zero)? == 0 {
                return Err(self.truncated());
            }
        }
        Ok(())
    }

    /// Takes the first `n` buffered bytes (a whole frame, or part of one).
    pub fn take(&mut self, n: usize) -> Bytes {
        self.buf.split_to(n).freeze()
    }

    /// Copies the next `n` bytes to `w` in bounded chunks, without
    /// assembling them, and flushes the writer at the end.
    pub async fn copy_to<W: AsyncWrite + Unpin>(&mut self, mut n: usize, w: &mut W) -> Result<(), CopyError> {
        while n > 0 {
            if self.buf.is_empty() {
                // Before waiting for more, what was written goes out (a TLS
                // writer may hold the last record until flushed).
                w.flush().await.map_err(CopyError::Write)?;
                if self.fill().await.map_err(CopyError::Read)? == 0 {
                    return Err(CopyError::Read(FrameError::Truncated { got: 0, want: n }));
                }
            }
            let k = n.min(self.buf.len());
            w.write_all(&self.buf[..k]).await.map_err(CopyError::Write)?;
            self.buf.advance(k);
            n -= k;
        }
        // The frame is out: a TLS writer must not keep its last record.
        w.flush().await.map_err(CopyError::Write)
    }

    /// The length of the next frame if all of it is already buffered.
    pub fn buffered_frame_len(&mut self) -> Result<Option<usize>, FrameError> {
        Ok(self.check_prefix()?.filter(|t| self.buf.len() >= *t))
    }

    /// A complete frame that is already buffered, without reading.
    pub fn buffered_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        match self.check_prefix()? {
            Some(total) if self.buf.len() >= total => Ok(Some(self.take(total))),
            _ => Ok(None),
        }
    }

    /// The next complete frame, prefix included; `None` at a clean EOF.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(total) = self.next_len().await? else {
            return Ok(None);
        };
        self.ensure(total).await?;
        Ok(Some(self.take(total)))
    }
}

fn eof_is_zero(e: std::io::Error) -> std::io::Result<usize> {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Ok(0),
        _ => Err(e),
    }
}

/// A streamed copy failed on one side or the other.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Read(FrameError),
    #[error("{0}")]
    Write(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_before_allocation() {
        assert!(matches!(
            frame_len((-1i32).to_be_bytes(), 8, 1024),
            Err(FrameError::NegativeLength(-1))
        ));
        assert!(matches!(
            frame_len((i32::MAX).to_be_bytes(), 8, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            frame_len(3i32.to_be_bytes(), 8, 1024),
            Err(FrameError::TooShort(3))
        ));
        assert_eq!(frame_len(8i32.to_be_bytes(), 8, 1024).unwrap(), 12);
    }

    #[test]
    fn client_hello_is_recognised() {
        assert!(matches!(
            sniff_foreign(&[0x16, 0x03, 0x01, 0x02]),
            Some(FrameError::TlsOnPlaintext)
        ));
        assert!(matches!(sniff_foreign(b"GET /"), Some(FrameError::HttpOnKafka)));
        assert!(sniff_foreign(&[0, 0, 0, 20]).is_none());
    }

    #[tokio::test]
    async fn reads_pipelined_frames_and_reports_truncation() {
        let mut data = Vec::new();
        for i in 0..3u8 {
            data.extend_from_slice(&8i32.to_be_bytes());
            data.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, i]);
        }
        data.extend_from_slice(&[0, 0, 0, 9, 1]);
        let mut r = FrameReader::new(&data[..], 1024, 8, true);
        for i in 0..3u8 {
            let f = r.next_frame().await.unwrap().unwrap();
            assert_eq!(f.len(), 12);
            assert_eq!(f[11], i);
        }
        assert!(matches!(
            r.next_frame().await,
            Err(FrameError::Truncated { got: 5, want: 13 })
        ));
    }
}
