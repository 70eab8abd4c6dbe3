//! The SASL transport on a fresh upstream connection: kgate's own requests
//! straight on the stream, before any client byte is forwarded.

use super::{Transport, KGATE_CORRELATION_BASE};
use crate::protocol::frame::{frame_len, LEN_PREFIX};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// SASL responses are small; anything larger is a lie.
const MAX_SASL_FRAME: usize = 1024 * 1024;

pub struct Direct<'a, S> {
    stream: &'a mut S,
    next: i32,
}

impl<'a, S> Direct<'a, S> {
    pub fn new(stream: &'a mut S) -> Self {
        Direct {
            stream,
            next: KGATE_CORRELATION_BASE,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for Direct<'_, S> {
    async fn round_trip(&mut self, request: Bytes, _correlation_id: i32) -> Result<Bytes, String> {
        self.stream.write_all(&request).await.map_err(|e| e.to_string())?;
        // Over TLS the record may sit in the session's buffer until flushed.
        self.stream.flush().await.map_err(|e| e.to_string())?;
        let mut len = [0u8; LEN_PREFIX];
        self.stream
            .read_exact(&mut len)
            .await
            .map_err(|e| e.to_string())?;
        let total = frame_len(len, 4, MAX_SASL_FRAME).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; total];
        buf[..LEN_PREFIX].copy_from_slice(&len);
        self.stream
            .read_exact(&mut buf[LEN_PREFIX..])
            .await
            .map_err(|e| e.to_string())?;
        Ok(Bytes::from(buf))
    }

    fn next_correlation(&mut self) -> i32 {
        self.next = self.next.wrapping_add(1);
        self.next
    }
}
