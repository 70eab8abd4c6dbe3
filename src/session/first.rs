//! `AwaitingRequest`: before anything happens upstream, the client must
//! send one complete, valid request within a deadline. The bound is tight
//! (Kafka's own limit before authentication is 512 KiB) and nothing is
//! reserved beyond the bytes that actually arrived, so an empty connect,
//! a port scan or a slowloris costs the broker nothing and kgate little.

use super::error::SessionError;
use crate::metrics;
use crate::protocol::decision::{decide, RequestAction};
use crate::protocol::frame::{frame_len, sniff_foreign, FrameError, LEN_PREFIX};
use crate::protocol::header::peek_request_header;
use crate::protocol::wire::Reader;
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

/// Whether a whole first request (length prefix included) is one kgate
/// would forward or answer itself: a key and version of the decision table
/// (SASL and too-new ApiVersions are answered locally, so they pass), and a
/// client id whose length fits the frame. Anything else is
/// [`SessionError::BadFirstRequest`].
pub fn check(frame: &[u8]) -> Result<(), SessionError> {
    let bad = |why: String| SessionError::BadFirstRequest(why);
    let h = peek_request_header(frame).map_err(|e| bad(format!("header: {e}")))?;
    if let RequestAction::Reject(why) = decide(h.api_key, h.api_version) {
        return Err(bad(format!("api key {} v{}: {why}", h.api_key, h.api_version)));
    }
    // Every request header kgate accepts (v1 and v2) has a classic
    // nullable client id after the correlation id. Only its length is
    // checked: brokers accept any bytes in it.
    let mut r = Reader::at(frame, LEN_PREFIX + 8);
    let len = r
        .i16()
        .map_err(|_| bad("no client id length in the header".into()))?;
    if len < -1 || usize::try_from(len).is_ok_and(|n| n > r.remaining()) {
        return Err(bad(format!(
            "api key {} v{}: client id length {len} does not fit the {}-byte frame",
            h.api_key,
            h.api_version,
            frame.len()
        )));
    }
    Ok(())
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

    fn with_client_id(key: i16, version: i16, id_len: i16, id: &[u8]) -> Vec<u8> {
        let mut body = key.to_be_bytes().to_vec();
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&7i32.to_be_bytes());
        body.extend_from_slice(&id_len.to_be_bytes());
        body.extend_from_slice(id);
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn requests_kgate_serves_pass_the_check() {
        for (key, v) in [(18, 3), (18, 9), (3, 12), (0, 9), (17, 1), (36, 2)] {
            let f = with_client_id(key, v, 3, b"app");
            assert!(check(&f).is_ok(), "api key {key} v{v}: {:?}", check(&f));
        }
        assert!(check(&with_client_id(3, 12, -1, b"")).is_ok(), "null client id");
        assert!(check(&with_client_id(3, 12, 0, b"")).is_ok(), "empty client id");
        assert!(
            check(&with_client_id(3, 12, 2, &[0xff, 0xfe])).is_ok(),
            "any bytes"
        );
    }

    #[test]
    fn junk_that_frames_correctly_is_refused_with_its_cause() {
        let cases: [(Vec<u8>, &str); 6] = [
            (with_client_id(1000, 0, 3, b"app"), "allow-list"),
            (with_client_id(-1, 0, 3, b"app"), "allow-list"),
            (with_client_id(3, 99, 3, b"app"), "outside"),
            (with_client_id(4, 7, 3, b"app"), "allow-list"),
            (with_client_id(3, 12, 40, b"app"), "client id length 40"),
            (with_client_id(3, 12, -2, b"app"), "client id length -2"),
        ];
        for (f, why) in cases {
            match check(&f) {
                Err(SessionError::BadFirstRequest(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("expected a refusal naming {why:?}, got {other:?}"),
            }
        }
        let no_id = [0, 0, 0, 8, 0, 3, 0, 12, 0, 0, 0, 1];
        assert!(matches!(check(&no_id), Err(SessionError::BadFirstRequest(_))));
        let e = SessionError::BadFirstRequest("x".into());
        assert_eq!(e.protocol_kind(), Some("bad_first_request"));
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
