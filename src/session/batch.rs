//! Frames queued for one vectored write: several pipelined frames leave in
//! one system call, and no frame is copied to be sent.

use bytes::Bytes;
use std::io::IoSlice;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Flush when this much is queued even if more work is ready.
pub const FLUSH_BYTES: usize = 1 << 20;
const MAX_SLICES: usize = 64;

#[derive(Default)]
pub struct Batch {
    frames: Vec<Bytes>,
    bytes: usize,
}

impl Batch {
    pub fn push(&mut self, f: Bytes) {
        self.bytes += f.len();
        self.frames.push(f);
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn full(&self) -> bool {
        self.bytes >= FLUSH_BYTES || self.frames.len() >= MAX_SLICES
    }

    /// Writes every queued frame, in order, and flushes the writer.
    pub async fn flush<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.frames.len() == 1 {
            w.write_all(&self.frames[0]).await?;
        } else if !self.frames.is_empty() {
            let (mut i, mut off) = (0, 0);
            while i < self.frames.len() {
                let mut slices = Vec::with_capacity((self.frames.len() - i).min(MAX_SLICES));
                slices.push(IoSlice::new(&self.frames[i][off..]));
                for f in self.frames[i + 1..].iter().take(MAX_SLICES - 1) {
                    slices.push(IoSlice::new(f));
                }
                let mut n = w.write_vectored(&slices).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                while n > 0 {
                    let left = self.frames[i].len() - off;
                    if n >= left {
                        n -= left;
                        i += 1;
                        off = 0;
                    } else {
                        off += n;
                        n = 0;
                    }
                }
            }
        }
        self.frames.clear();
        self.bytes = 0;
        // A TLS stream keeps encrypted bytes in its session buffer until
        // flushed; without this they could wait for the next write.
        w.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most 7 bytes per call, to exercise partial
    /// vectored writes.
    struct Trickle(Vec<u8>);
    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            b: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = b.len().min(7);
            self.0.extend_from_slice(&b[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_keep_every_byte_in_order() {
        let mut b = Batch::default();
        let mut want = Vec::new();
        for i in 0..100u8 {
            let f = Bytes::from(vec![i; (i as usize % 13) + 1]);
            want.extend_from_slice(&f);
            b.push(f);
        }
        let mut w = Trickle(Vec::new());
        b.flush(&mut w).await.unwrap();
        assert_eq!(w.0, want);
        assert!(b.is_empty());
    }
}
