//! `AwaitingRequest`: before anything happens upstream, the client must
//! send one complete, valid request within a deadline. The bound is tight
//! (Kafka's own limit before authentication is 512 KiB) and nothing is
//! reserved beyond the bytes that actually arrived, so an empty connect,
//! a port scan or a slowloris costs the broker nothing and kgate little.

use super::error::SessionError;
use crate::metrics;
use crate::protocol::frame::{frame_len, sniff_foreign, FrameError, LEN_PREFIX};
use bytes::BytesMut;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest first request kgate waits for.
pub const FIRST_REQUEST_MAX: usize = 512 * 1024;
/// Buffer growth per read: never much beyond what arrived.
const STEP: usize = 4 * 1024;

/// Reads until one whole request is buffered; returns the bytes (the
/// request, and anything the client sent behind it). `Ok(None)`: the client
/// left without sending anything.
pub async fn first_request<S: AsyncRead + Unpin>(
    s: &mut S,
    deadline: Duration,
) -> Result<Option<BytesMut>, SessionError> {
    match tokio::time::timeout(deadline, read(s)).await {
        Ok(r) => r,
        Err(_) => {
            metrics::get().first_request_timeouts.fetch_add(1, Relaxed);
            Err(SessionError::FirstRequestTimeout(deadline))
        }
    }
}

async fn read<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<BytesMut>, SessionError> {
    let mut buf = BytesMut::new();
    Ok((fill(s, &mut buf).await? > 0).then_some(buf))
}

/// Reads until `buf` starts with one whole request (at most
/// [`FIRST_REQUEST_MAX`]); returns its length. `Ok(0)`: the client left
/// between requests. Client authentication reads with it too.
pub async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Result<usize, SessionError> {
    let mut want = LEN_PREFIX;
    loop {
        if buf.len() >= LEN_PREFIX {
            if let Some(e) = sniff_foreign(&buf[..LEN_PREFIX]) {
                return Err(SessionError::ClientFrame(e));
            }
            let prefix = [buf[0], buf[1], buf[2], buf[3]];
            want = frame_len(prefix, 8, FIRST_REQUEST_MAX).map_err(|e| {
                SessionError::ClientFrame(match e {
                    FrameError::TooLarge { len, max } => FrameError::FirstTooLarge { len, max },
                    e => e,
                })
            })?;
            if buf.len() >= want {
                return Ok(want);
            }
        }
        if buf.capacity() == buf.len() {
            buf.reserve((want - buf.len()).clamp(LEN_PREFIX, STEP));
        }
        let n = s.read_buf(buf).await.or_else(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Ok(0),
            _ => Err(SessionError::ClientFrame(FrameError::Io(e))),
        })?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(0);
            }
            return Err(SessionError::ClientFrame(FrameError::Truncated {
                got: buf.len(),
                want,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: usize) -> Vec<u8> {
        let mut f = ((body + 8) as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1]);
        f.extend(std::iter::repeat_n(7u8, body));
        f
    }

    #[tokio::test]
    async fn a_whole_request_and_what_follows_it() {
        let mut data = request(100);
        data.extend_from_slice(&[0, 0]);
        let got = first_request(&mut &data[..], Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert!(
            got.len() >= 112 && data.starts_with(&got),
            "the whole request, in order"
        );
        assert!(first_request(&mut &[][..], Duration::from_secs(1))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn bounds_and_foreign_bytes_are_errors() {
        let big = ((FIRST_REQUEST_MAX + 1) as i32).to_be_bytes();
        let e = first_request(&mut &big[..], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SessionError::ClientFrame(FrameError::FirstTooLarge { .. })),
            "{e}"
        );
        let hello = [0x16, 0x03, 0x01, 0x00, 0x10];
        let e = first_request(&mut &hello[..], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, SessionError::ClientFrame(FrameError::TlsOnPlaintext)));
        let cut = &request(50)[..30];
        let e = first_request(&mut &cut[..], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            SessionError::ClientFrame(FrameError::Truncated { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_client_meets_the_deadline() {
        let (mut a, mut b) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        b.write_all(&[0, 0]).await.unwrap();
        let e = first_request(&mut a, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(e, SessionError::FirstRequestTimeout(_)));
    }
}
